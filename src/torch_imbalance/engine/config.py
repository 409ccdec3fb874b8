"""The one configuration object of a run: built by the command line (defaults, then a YAML
file, then flags), saved as ``config.yaml`` in the run folder, read by the engine."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

#: ``--task`` names (each is a task object in ``engine/tasks.py``, checked by a test).
TASKS = ("classification", "segmentation")
#: An on/off setting whose default depends on the machine.
SWITCH = ("auto", "on", "off")
#: Most loader processes by default (more rarely help one GPU).
MAX_DEFAULT_WORKERS = 8
#: The model a run gets without --model, per task (a timm name; an smp architecture).
DEFAULT_MODELS = {"classification": "resnet18", "segmentation": "Unet"}
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "step", "none")
#: Training-set samplers (``data/samplers.py``, checked by a test).
SAMPLERS = ("none", "oversample", "undersample")
#: Named recipes applied before the user's own settings.
PRESETS: dict[str, dict[str, Any]] = {
    # The LMF authors' recipe (github.com/Adnan-Sadi/LMFLOSS, config.ini and train.py): Adam,
    # lr 1e-4 with coupled L2 5e-4, StepLR every 30 epochs ×0.1, 100 epochs, batch 32, 224²,
    # Resize + ToTensor only (no augmentation, no normalisation), and the LDAM margins as the
    # class weights of their LDAM and focal baselines. Their backbones are ImageNet-pretrained.
    "lmf-paper": {
        "optimizer": "adam",
        "lr": 1e-4,
        "weight_decay": 5e-4,
        "scheduler": "step",
        "step_size": 30,
        "step_gamma": 0.1,
        "epochs": 100,
        "batch_size": 32,
        "image_size": 224,
        "augment": False,
        "normalize": False,
        "margin_weights": True,
        "pretrained": True,
    },
}


class ConfigError(ValueError):
    """A setting that is unknown or out of range."""


def setting(
    default: Any = None,
    help: str = "",
    *,
    choices: tuple | None = None,
    minimum: float | None = None,
    positive: bool = False,
    flag: str | None = None,
    metavar: str | None = None,
    command_line: bool = True,
) -> Any:
    """A :class:`RunConfig` field with what the command line and :meth:`RunConfig.validate`
    need: its help, its choices, its range, and its flag when not ``--<name-with-dashes>``
    (``--no-<name>`` for a setting that is on by default)."""
    metadata = {
        "help": help,
        "choices": choices,
        "minimum": minimum,
        "positive": positive,
        "flag": flag,
        "metavar": metavar,
        "command_line": command_line,
    }
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


#: The command line's option groups, by the first setting of each.
GROUPS = {
    "task": "data",
    "model": "model",
    "preset": "optimisation",
    "accelerator": "scaling (passed to Lightning)",
    "out": "run folder",
}


@dataclass
class RunConfig:
    """Every setting of a training run (see ``torch-imbalance train --help``). Each field
    declares its help, choices and range once; the command line's flags are generated from
    them (``cli/options.py``) and :meth:`validate` checks them."""

    # data
    task: str = setting("classification", "what to learn", choices=TASKS)
    dataset: str = setting("digits-lt", "built-in name or format")
    root: str | None = setting(None, "dataset folder (for the formats)")
    channels: int | None = setting(None, "input channels (default: the dataset's)", choices=(1, 3))
    image_size: int = setting(64, "side of the square network input", minimum=1)
    val_fraction: float | None = setting(None, "share of the data held out for validation")
    test_fraction: float | None = setting(None, "share of the data held out for testing")
    imbalance_ratio: float | None = setting(None, "long-tail ratio of br35h-lt / digits-lt")
    label_mode: str | None = setting(
        None,
        "odir5k: all patients multi-label, or the single-label subset",
        choices=("multilabel", "single"),
    )
    train_fraction: float | None = setting(
        None, "keep this stratified fraction of the training split"
    )
    max_per_class: int | None = setting(None, "keep at most N training images per class", minimum=1)
    val_keep_fraction: float | None = setting(
        None,
        "keep this stratified fraction of the validation split (with --train-fraction: a "
        "validation split scaled down with the training split)",
    )
    sampler: str = setting("none", "training-set sampling by class", choices=SAMPLERS)
    augment: bool = setting(True, "light augmentation in training (flips, small rotations)")
    normalize: bool = setting(
        True,
        "normalise the inputs (with --mean/--std: the pretrained model's own, else 0.5 / 0.5); "
        "off: [0, 1] pixels, as the LMF authors' ToTensor only",
    )
    # Filled in by `train` from the pretrained model's configuration (timm) when not given, and
    # recorded in the run's config and checkpoint, which evaluate, predict and gradcam reuse.
    mean: list[float] | None = setting(  # noqa: RUF009
        None,
        "input normalisation mean per channel (YAML; default: see --normalize)",
        command_line=False,
    )
    std: list[float] | None = setting(  # noqa: RUF009
        None,
        "input normalisation std per channel (YAML; default: see --normalize)",
        command_line=False,
    )
    interpolation: str | None = setting(
        None,
        "resize interpolation (default: the pretrained model's, else bilinear)",
        choices=("bilinear", "bicubic", "nearest"),
    )
    num_workers: int | None = setting(
        None,
        "data-loading processes (default: on a GPU the CPU cores less one, at most 8; on the "
        "CPU 0)",
        minimum=0,
    )
    cache: bool = setting(
        True,
        "decode each image file once into a memory-mapped cache that the loader's workers and "
        "later runs share (--no-cache: read the files every epoch)",
    )
    cache_dir: str | None = setting(
        None,
        "decoded-image cache folder (default $TORCH_IMBALANCE_CACHE or ~/.cache/torch-imbalance)",
    )
    reduced_decode: bool = setting(
        True,
        "decode a large JPEG at a reduced size (1/2, 1/4, 1/8) still at least --image-size, "
        "several times faster (--no-reduced-decode: every pixel; classification)",
    )
    pin_memory: str = setting(
        "auto", "page-locked batches for the copy to the GPU (auto: on CUDA)", choices=SWITCH
    )
    channels_last: str = setting(
        "auto",
        "channels-last memory format for convolutional networks (auto: on CUDA)",
        choices=SWITCH,
    )
    folds: int | None = setting(
        None,
        "segmentation built-ins: rotating folds by position; seed k tests fold k (mod folds) "
        "and validates on the next fold, so the seeds together test the whole image",
        minimum=3,
    )
    # segmentation data
    num_classes: int | None = setting(
        None, "segfolder: number of classes (default: largest mask value + 1)", minimum=1
    )
    ignore_index: int | None = setting(
        None, "segfolder: mask value of unlabelled pixels (default 255)"
    )
    # model
    model: str | None = setting(
        None,
        "classification: any timm name (default resnet18); segmentation: an smp architecture "
        "(default Unet)",
    )
    encoder: str = setting("resnet18", "segmentation: smp encoder name")
    head: str | None = setting(
        None, "default: cosine for LDAM, linear otherwise", choices=("linear", "cosine")
    )
    pretrained: bool = setting(
        False,
        "ImageNet weights: offline for efficientnet_lite0/1/2 (classifier, or smp encoder "
        "tu-efficientnet_lite0/1/2), from the network for other timm names",
    )
    weights: str | None = setting(None, "local backbone weights file")
    # loss
    loss: str = setting("ce", "registry name")
    # `setting` builds a default_factory field for a dict default (a fresh dict per config).
    loss_params: dict[str, Any] = setting(  # noqa: RUF009
        {}, "loss override, repeatable", flag="--loss-param", metavar="KEY=VALUE"
    )
    label_smoothing: float = setting(
        0.0,
        "ε of F.cross_entropy's label smoothing, in the loss's cross-entropy (multi-class; "
        "not Dual Focal, Poly-1, Dice+CE)",
        minimum=0,
    )
    margin_weights: bool = setting(
        False, "weight the focal and ldam baselines by the LDAM margins (the LMF authors' code)"
    )
    # optimisation
    preset: str | None = setting(
        None,
        "lmf-paper: the LMF authors' recipe (Adam 1e-4, L2 5e-4, StepLR 30 ×0.1, 100 epochs, "
        "batch 32, 224², no augmentation or normalisation, margin-weighted baselines, "
        "pretrained); flags given override it",
        choices=tuple(PRESETS),
    )
    epochs: int = setting(10, "training epochs", minimum=1)
    batch_size: int = setting(32, "images per batch", minimum=1)
    lr: float = setting(1e-3, "learning rate", positive=True)
    gamma_lr: float | None = setting(
        None,
        "learning rate of the loss's own parameters (a learnable γ), without weight decay "
        "(default: --lr)",
        positive=True,
    )
    weight_decay: float = setting(1e-4, "weight decay (AdamW) or L2 (Adam, SGD)", minimum=0)
    optimizer: str = setting("adamw", "optimiser", choices=OPTIMIZERS)
    scheduler: str = setting("cosine", "learning-rate schedule", choices=SCHEDULERS)
    step_size: int = setting(10, "StepLR period in epochs", minimum=1)
    step_gamma: float = setting(0.1, "StepLR factor", positive=True)
    precision: str = setting("32-true", "Lightning precision, e.g. 16-mixed")
    seed: int = setting(0, "seed of the splits, the initialisation and the augmentation")
    deterministic: bool = setting(
        False,
        "deterministic algorithms only (Lightning's deterministic=True): same seed, same "
        "result; on a GPU slower, and an op without a deterministic kernel is an error",
    )
    # scaling (passed to Lightning)
    accelerator: str = setting("auto", "cpu, gpu, ...")
    devices: str = setting("auto", "a count or comma-separated device ids")
    num_nodes: int = setting(1, "machines", minimum=1)
    strategy: str = setting("auto", "e.g. ddp")
    # run folder
    out: str = setting("runs/run", "run folder")
    resume: bool = setting(False, "continue a killed run in --out", command_line=False)
    overwrite: bool = setting(False, "replace an existing run folder")
    progress: bool = setting(True, "progress bars")

    def validate(self) -> RunConfig:
        """Check every setting against its declared choices and range; returns self."""
        for spec in fields(self):
            value = getattr(self, spec.name)
            meta = spec.metadata
            if value is None:
                continue
            numeric = meta.get("minimum") is not None or meta.get("positive")
            if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ConfigError(f"{spec.name} must be a number, got {value!r}")
            if meta.get("choices") is not None and value not in meta["choices"]:
                raise ConfigError(f"{spec.name} must be one of {meta['choices']}, got {value!r}")
            if meta.get("minimum") is not None and value < meta["minimum"]:
                raise ConfigError(f"{spec.name} must be at least {meta['minimum']}, got {value}")
            if meta.get("positive") and not value > 0:
                raise ConfigError(f"{spec.name} must be positive, got {value}")
        if self.model is None:
            self.model = DEFAULT_MODELS[self.task]
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite exclude each other")
        if self.label_smoothing:
            self._check_label_smoothing()
        return self

    def _check_label_smoothing(self) -> None:
        from torch_imbalance.registry import smoothing_losses  # torch: not for --help

        if self.label_smoothing > 1:
            raise ConfigError(f"label_smoothing must be at most 1, got {self.label_smoothing}")
        if self.loss not in smoothing_losses():
            raise ConfigError(
                f"--label-smoothing: loss {self.loss!r} does not define label smoothing; "
                f"it is defined for {', '.join(smoothing_losses())}"
            )
        if self.label_mode == "multilabel":
            raise ConfigError(
                "--label-smoothing applies to single-label data (a softmax over the classes), "
                "not --label-mode multilabel"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def input_normalization(self, channels: int) -> tuple[list[float], list[float]] | None:
        """The per-channel ``(mean, std)`` the inputs are normalised with, or None (``normalize``
        off). Unset (a run from before they were recorded, or from scratch): 0.5 / 0.5. Three
        values for one channel are averaged (timm sums a grey input's first-layer weights)."""
        if not self.normalize:
            return None
        return (
            _per_channel("mean", self.mean or [0.5], channels),
            _per_channel("std", self.std or [0.5], channels),
        )

    def resize_interpolation(self) -> str:
        return self.interpolation or "bilinear"

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> RunConfig:
        """Build from a mapping (a YAML file); unknown keys are an error naming ``source``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def _per_channel(name: str, values: list[float], channels: int) -> list[float]:
    if len(values) == channels:
        return [float(v) for v in values]
    if len(values) == 1:
        return [float(values[0])] * channels
    if channels == 1:
        return [sum(values) / len(values)]
    raise ConfigError(f"{name} has {len(values)} values for {channels} input channels")


def resolve_config(explicit: dict[str, Any], source: str = "settings") -> RunConfig:
    """Defaults, then the preset named in ``explicit`` (if any), then ``explicit`` itself."""
    values: dict[str, Any] = {}
    preset = explicit.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; available: {sorted(PRESETS)}")
        values.update(PRESETS[preset])
    values.update(explicit)
    return RunConfig.from_dict(values, source).validate()


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of config keys (``loss_params`` as a nested mapping)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot parse {path}: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    return values


def save_yaml(config: RunConfig, path: Path) -> None:
    import yaml

    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def on_cuda(config: RunConfig) -> bool:
    """Whether the run trains on CUDA (``--accelerator`` auto, gpu or cuda with a GPU here)."""
    import torch

    return config.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def resolve_switch(value: str, config: RunConfig) -> bool:
    """An ``auto``/``on``/``off`` setting: ``auto`` is on exactly on CUDA."""
    return on_cuda(config) if value == "auto" else value == "on"


def loader_workers(config: RunConfig) -> int:
    """``--num-workers``, or by default on CUDA the cores this process may use less one (the
    main process feeds the GPU), at most :data:`MAX_DEFAULT_WORKERS`; on the CPU 0 (the model
    needs the cores)."""
    if config.num_workers is not None:
        return config.num_workers
    if not on_cuda(config):
        return 0
    from torch_imbalance.data.cache import usable_cores

    return min(MAX_DEFAULT_WORKERS, usable_cores() - 1)


def with_loader_defaults(config: RunConfig) -> RunConfig:
    """``config`` with the machine-dependent loading settings resolved (recorded in the run's
    config: workers, pinned memory, channels-last)."""
    return replace(
        config,
        num_workers=loader_workers(config),
        pin_memory="on" if resolve_switch(config.pin_memory, config) else "off",
        channels_last="on" if resolve_switch(config.channels_last, config) else "off",
    )
