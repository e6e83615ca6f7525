"""The training recipe: one flat dataclass shared by the YAML configs and the CLI flags.

A YAML file under ``configs/`` uses exactly these keys; ``pixelwise train`` flags of the same
name (``--batch-size`` for ``batch_size``) override the file. Modules never read this class:
the builders in :mod:`pixelwise.engine.builders` turn it into plain constructor arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml



OPTIMIZERS = ("sgd", "adamw", "rmsprop")
SCHEDULES = ("poly", "exp")


class ConfigError(ValueError):
    """A recipe with unknown keys or values out of their allowed set."""


@dataclass
class TrainConfig:
    # what to train
    model: str = "unet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    crf_rnn: bool = False  # append a CRF-as-RNN layer (Zheng et al. 2015), trained end to end
    crf_rnn_kwargs: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None  # a checkpoint whose matching weights start the run (staged training)
    dataset: str = "synthetic"
    data_root: str | None = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    # schedule
    epochs: int = 10
    batch_size: int = 8
    optimizer: str = "adamw"  # sgd | adamw | rmsprop
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 0
    schedule: str = "poly"  # poly (over the whole run) | exp (lr_gamma per epoch)
    poly_power: float = 0.9
    lr_gamma: float = 0.995  # the exp schedule's factor per epoch
    grad_clip: float | None = None
    amp: bool = False  # bf16 autocast on CPU, fp16 with a grad scaler on CUDA
    loss: str = "ce"
    class_weights: list[float] | None = None
    # data pipeline
    crop: int | tuple[int, int] = 128  # square side, or [height, width]
    scale: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    color: float = 0.0
    elastic: bool = False
    num_workers: int = 0
    # bookkeeping
    eval_every: int = 1
    figures: int = 4  # val samples in RUN/figures.png (image | ground truth | prediction | errors); 0: none
    # A CRF parameter file (configs/crf/) that `pixelwise evaluate` applies to this run's checkpoints
    # unless told otherwise (--no-crf): DeepLab v1/v2 are scored after the dense CRF. Training-time
    # validation runs without it.
    eval_crf: str | None = None
    log_every: int = 10
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    out: str = "runs/train"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("epochs", "batch_size", "eval_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        self.crop = _crop_size(self.crop)
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers!r}")
        self.scale = tuple(float(s) for s in self.scale)  # YAML gives lists

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a mapping, rejecting unknown keys with the close valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [key for key in values if key not in known]
        if unknown:
            hints = [f"{key!r} (did you mean {difflib.get_close_matches(key, known, 1)})" for key in unknown]
            raise ConfigError(f"{source}: unknown keys {', '.join(hints)}; valid keys: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(load_yaml(path), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["scale"] = list(self.scale)
        if isinstance(self.crop, tuple):
            values["crop"] = list(self.crop)
        return values

    def replace(self, **changes: Any) -> TrainConfig:
        return self.from_dict({**self.to_dict(), **changes})


def _crop_size(value: Any) -> int | tuple[int, int]:
    """``crop``: one positive int (a square) or two (``[height, width]``, from YAML or the CLI)."""
    sizes = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(sizes) not in (1, 2) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes):
        raise ConfigError(f"crop must be a size >= 1 or [height, width], got {value!r}")
    return sizes[0] if len(sizes) == 1 else (sizes[0], sizes[1])


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    with path.open() as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(values).__name__}")
    return values
