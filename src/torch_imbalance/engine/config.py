"""The one configuration object of a run: built by the command line (defaults, then a YAML
file, then flags), saved as ``config.yaml`` in the run folder, read by the engine."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

TASKS = ("classification", "segmentation")
DEFAULT_MODELS = {"classification": "resnet18", "segmentation": "Unet"}
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "step", "none")
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


@dataclass
class RunConfig:
    """Every setting of a training run (see ``torch-imbalance train --help``)."""

    # data
    task: str = "classification"
    dataset: str = "digits-lt"
    root: str | None = None
    channels: int | None = None
    image_size: int = 64
    val_fraction: float | None = None
    test_fraction: float | None = None
    imbalance_ratio: float | None = None
    label_mode: str | None = None
    train_fraction: float | None = None
    max_per_class: int | None = None
    sampler: str = "none"
    augment: bool = True
    #: Inputs to mean 0.5 / std 0.5 (False: [0, 1], as the LMF authors' ``ToTensor`` only).
    normalize: bool = True
    num_workers: int = 0
    # segmentation data
    num_classes: int | None = None
    ignore_index: int | None = None
    # model (default: resnet18 for classification, Unet for segmentation)
    model: str | None = None
    encoder: str = "resnet18"
    head: str | None = None
    pretrained: bool = False
    weights: str | None = None
    # loss
    loss: str = "ce"
    loss_params: dict[str, Any] = field(default_factory=dict)
    #: Weight the ``focal`` and ``ldam`` baselines by the LDAM margins (the LMF authors' code).
    margin_weights: bool = False
    # optimisation
    preset: str | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    step_size: int = 10
    step_gamma: float = 0.1
    precision: str = "32-true"
    seed: int = 0
    # scaling (passed to Lightning)
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    # run folder
    out: str = "runs/run"
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def validate(self) -> RunConfig:
        """Check ranges and names; returns self."""
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.model is None:
            self.model = DEFAULT_MODELS[self.task]
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        for name in ("epochs", "batch_size", "image_size", "num_nodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite exclude each other")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> RunConfig:
        """Build from a mapping (a YAML file); unknown keys are an error naming ``source``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


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
