"""The ``torch-imbalance`` command: train, evaluate, predict, compare, gradcam, datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from torch_imbalance.cli.options import add_run_options


def explicit_settings(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """YAML file values, then the flags given."""
    from torch_imbalance.engine.config import load_yaml

    values: dict[str, Any] = load_yaml(args.config) if getattr(args, "config", None) else {}
    flags = {
        k: v for k, v in vars(args).items() if k not in ("config", "command", "handler", *skip)
    }
    if "loss_params" in flags:
        flags["loss_params"] = {**values.get("loss_params", {}), **dict(flags["loss_params"])}
    values.update(flags)
    return values


# ------------------------------------------------------------------------------- commands
def command_train(args: argparse.Namespace) -> int:
    from torch_imbalance.engine.config import load_yaml, resolve_config
    from torch_imbalance.engine.run import train

    explicit = explicit_settings(args, skip=("resume",))
    if args.resume:
        if "out" not in explicit:
            raise SystemExit("error: --resume needs --out RUN_FOLDER")
        saved = Path(explicit["out"]) / "config.yaml"
        # The run's own settings, with any flags given now (e.g. more --epochs) on top.
        explicit = {**(load_yaml(saved) if saved.is_file() else {}), **explicit, "resume": True}
    config = resolve_config(explicit)
    metrics = train(config)
    print_run_summary(Path(config.out), metrics)
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    from torch_imbalance.engine.evaluate import evaluate

    metrics = evaluate(Path(args.checkpoint), args.split, Path(args.out), args.overwrite)
    print_run_summary(Path(args.out), {args.split: metrics[args.split]})
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from rich.console import Console

    from torch_imbalance.engine.predict import predict

    console = Console(stderr=True)
    summary = predict(
        Path(args.checkpoint),
        args.inputs,
        Path(args.out),
        output_format=args.format,
        overlays=args.overlays,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        progress=args.progress,
        report=lambda line: console.print(line, soft_wrap=True, highlight=False),
    )
    skipped = len(summary.skipped)
    print(
        f"predicted {summary.images} image(s) -> {summary.out}"
        + (f"; skipped {skipped} unreadable file(s)" if skipped else "")
    )
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from torch_imbalance.engine.compare import compare

    base = explicit_settings(
        args, skip=("losses", "seeds", "models", "race", "max_seeds", "time_budget", "keep")
    )
    out = Path(base.pop("out", "runs/compare"))
    compare(
        base,
        losses=split_losses(args.losses),
        seeds=[int(v) for v in args.seeds.split(",") if v],
        models=[v for v in args.models.split(",") if v] if args.models else None,
        out=out,
        keep=Path(args.keep) if args.keep else None,
        race=args.race,
        max_seeds=args.max_seeds,
        time_budget=None if args.time_budget is None else 60 * args.time_budget,
    )
    return 0


def split_losses(text: str) -> list[str]:
    """``--losses``: split at the commas outside brackets, so that an arm's list value stays
    whole (``ce,head=ce:weight=[1,0.1]`` -> ``["ce", "head=ce:weight=[1,0.1]"]``)."""
    parts, depth, current = [], 0, ""
    for character in text:
        depth += {"[": 1, "]": -1}.get(character, 0)
        if character == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += character
    return [part.strip() for part in [*parts, current] if part.strip()]


def command_gradcam(args: argparse.Namespace) -> int:
    from torch_imbalance.engine.evaluate import load_module
    from torch_imbalance.engine.run import RunFolderError, load_run_data
    from torch_imbalance.explain.gradcam import choose_images, gradcam_figure

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise RunFolderError(f"{out} already exists; pass --overwrite to replace it")
    modules = []
    for path in args.checkpoints:
        module = load_module(Path(path))
        modules.append((f"{module.config.loss} ({Path(path).parent.parent.name})", module))
    config = modules[0][1].config
    others = {m.config.dataset for _, m in modules} - {config.dataset}
    if others:
        raise RunFolderError(
            f"the checkpoints were trained on different datasets: {config.dataset}, {others}"
        )
    bundle = load_run_data(config)
    from torch_imbalance.data import DatasetBundle

    if not isinstance(bundle, DatasetBundle):
        raise RunFolderError(
            f"gradcam explains classifiers; {config.dataset} is a segmentation dataset"
        )
    part = getattr(bundle, args.split)
    indices = (
        [int(v) for v in args.images.split(",") if v]
        if args.images
        else choose_images(part.labels, args.count)
    )
    channels = config.channels or bundle.channels
    gradcam_figure(
        modules,
        bundle,
        args.split,
        indices,
        channels,
        config.image_size,
        out,
        normalization=config.input_normalization(channels),
        interpolation=config.resize_interpolation(),
        decode_size=modules[0][1].task_spec.decode_size(config),
    )
    print(f"Grad-CAM figure: {out}")
    return 0


def command_datasets(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from torch_imbalance.data import BUILTIN, PACKAGES, is_installed, load_dataset

    table = Table(title="built-in datasets (formats you bring: imagefolder)")
    for column in ("name", "installed", "package", "content", "train counts (seed 0)"):
        table.add_column(column)
    for name in sorted(BUILTIN):
        _, requirement, content = PACKAGES[name]
        installed = is_installed(name)
        counts = "–"
        if installed and args.counts:
            bundle = load_dataset(name, seed=0)
            counts = ", ".join(f"{k}: {v}" for k, v in bundle.summary()["train"].items())
        table.add_row(name, "yes" if installed else "no", requirement, content, counts)
    Console().print(table)
    return 0


def print_run_summary(run_dir: Path, metrics: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"results: {run_dir}")
    table.add_column("metric")
    splits = [s for s in ("val", "test") if s in metrics]
    for split in splits:
        table.add_column(split, justify="right")
    names = [k for k, v in metrics[splits[-1]].items() if isinstance(v, float)]
    for name in names:
        table.add_row(name, *(f"{metrics[s].get(name, float('nan')):.4f}" for s in splits))
    console = Console()
    console.print(table)
    console.print(f"report: {run_dir / 'report.md'}")


def quiet_libraries() -> None:
    """Keep Lightning's banners and tips off the terminal (warnings still show)."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*litlogger.*")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torch-imbalance",
        description="Train and compare imbalance-aware losses on image classification data.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train one model with one loss",
        description="Train one model with one loss; writes a run folder.",
    )
    add_run_options(train)
    train.add_argument("--resume", action="store_true", help="continue a killed run in --out")
    train.set_defaults(handler=command_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a split",
        description="Evaluate a checkpoint on its dataset's split.",
    )
    evaluate.add_argument("checkpoint", help="a .ckpt written by train")
    evaluate.add_argument("--split", choices=["val", "test"], default="test")
    evaluate.add_argument("--out", required=True, help="folder for metrics.json and report.md")
    evaluate.add_argument("--overwrite", action="store_true")
    evaluate.set_defaults(handler=command_evaluate)

    predict = commands.add_parser(
        "predict",
        help="run a checkpoint on new images",
        description="Predict images (files, or folders searched recursively) with a checkpoint, "
        "preprocessed as its evaluation was. Classification: a CSV with the predicted class and "
        "every class's probability per image (multi-label: per-label probabilities and 0/1 "
        "labels at 0.5), or a challenge submission file (--format). Segmentation: OUT is a "
        "folder of mask PNGs (class indices, each input's size). Unreadable files are skipped "
        "with one line each.",
    )
    predict.add_argument("checkpoint", help="a .ckpt written by train (best.ckpt)")
    predict.add_argument("inputs", nargs="+", help="image files or folders")
    predict.add_argument(
        "--out", required=True, help="the CSV to write (segmentation: the folder of masks)"
    )
    predict.add_argument(
        "--format",
        choices=["csv", "isic2019", "odir5k"],
        default="csv",
        help="isic2019: image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK (ids without extension; "
        "classes the model lacks are 0); odir5k: ID,N,D,G,C,A,H,M,O, one row per patient from "
        "<patient>_left/_right images (a disease: the larger eye's probability; N: the smaller)",
    )
    predict.add_argument(
        "--overlays", action="store_true", help="segmentation: also write overlays/<name>.png"
    )
    predict.add_argument(
        "--batch-size", dest="batch_size", type=int, default=None, help="default: the run's"
    )
    predict.add_argument("--overwrite", action="store_true")
    predict.add_argument("--no-progress", dest="progress", action="store_false")
    predict.set_defaults(handler=command_predict)

    compare = commands.add_parser(
        "compare",
        help="a grid of losses × seeds (× models), then a summary",
        description="Train every loss × seed (× model), seed by seed (finished runs are skipped, "
        "so a killed comparison resumes), then compare each loss with ce and with the leader "
        "(per-seed differences, seed-aware intervals, Holm) and answer which loss to use: "
        "results.csv, summary.md, summary.json and summary.png.",
    )
    compare.add_argument(
        "--losses",
        default="ce,focal,ldam_drw,lmf",
        help="comma-separated registry names; LABEL=LOSS:KEY=VALUE:... for a loss with "
        "overrides under its own label (e.g. strong=focal:gamma=3)",
    )
    compare.add_argument("--seeds", default="0", help="comma-separated seeds")
    compare.add_argument("--models", default=None, help="comma-separated timm names")
    compare.add_argument(
        "--race",
        action="store_true",
        help="after --seeds, add a seed at a time only to the losses still in contention (a "
        "loss significantly behind the leader, Holm-adjusted, stops), until one is left, "
        "--max-seeds or --time-budget",
    )
    compare.add_argument(
        "--max-seeds", type=int, default=None, help="the race's most seeds (default: 5 more)"
    )
    compare.add_argument(
        "--time-budget", type=float, default=None, help="the race's minutes (no new round after)"
    )
    compare.add_argument(
        "--keep",
        default=None,
        help="also copy each run's small results (no checkpoints) to KEEP/<loss>/seed-<k>; "
        "runs kept there count as done",
    )
    add_run_options(compare, exclude=("loss", "seed"))
    compare.set_defaults(handler=command_compare)

    gradcam = commands.add_parser(
        "gradcam",
        help="Grad-CAM overlays from one or more checkpoints",
        description="Grad-CAM attention maps of test images under each checkpoint, side by "
        "side in one PNG (the checkpoints must share a dataset).",
    )
    gradcam.add_argument("checkpoints", nargs="+", help=".ckpt files written by train")
    gradcam.add_argument("--out", required=True, help="the PNG to write")
    gradcam.add_argument("--split", choices=["val", "test"], default="test")
    gradcam.add_argument("--images", default=None, help="comma-separated indices in the split")
    gradcam.add_argument(
        "--count", type=int, default=4, help="without --images: this many, classes in turn"
    )
    gradcam.add_argument("--overwrite", action="store_true")
    gradcam.set_defaults(handler=command_gradcam)

    datasets = commands.add_parser(
        "datasets",
        help="list the built-in datasets",
        description="List the built-in datasets and their counts.",
    )
    datasets.add_argument(
        "--no-counts",
        dest="counts",
        action="store_false",
        help="skip loading each dataset to count its classes",
    )
    datasets.set_defaults(handler=command_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --help ends here, before any heavy import
    from torch_imbalance.data import DatasetError
    from torch_imbalance.engine.config import ConfigError
    from torch_imbalance.engine.run import RunFolderError
    from torch_imbalance.models.classifier import ModelError

    quiet_libraries()
    try:
        return args.handler(args)
    except (DatasetError, ConfigError, RunFolderError, ModelError) as error:
        print(f"torch-imbalance {args.command}: error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # e.g. an unknown loss name or a bad loss parameter
        print(f"torch-imbalance {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
