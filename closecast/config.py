"""Every hyperparameter in one place, with its default; the whole object is saved in the manifest.

Defaults come from measurements on data/sp500_daily.csv (see docs/training.md): a small LSTM over a
month of daily log returns, stopped early on the validation loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from closecast.features import parse_names

LossName = Literal["mse", "huber", "mae"]
DeviceName = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class DataConfig:
    """How a CSV becomes training windows."""

    column: str = "Close"
    date_column: str | None = "Date"
    id_column: str | None = None  # long format: the column naming each row's series (e.g. "symbol")
    window: int = 21  # closes per input: 20 daily returns, about a trading month
    train_frac: float = 0.7
    val_frac: float = 0.1  # the test part is what remains (0.2 by default)
    features: tuple[str, ...] = ()  # OHLCV columns read besides the closes, in order (closecast/features.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", parse_names(self.features))  # a list from JSON, a CLI string
        if not 3 <= self.window <= 1000:
            raise ValueError(f"window is {self.window}; it must be in [3, 1000] closes")
        if not 0.3 <= self.train_frac <= 0.95:
            raise ValueError(f"train_frac is {self.train_frac}; it must be in [0.3, 0.95]")
        if not 0.02 <= self.val_frac <= 0.5:
            raise ValueError(f"val_frac is {self.val_frac}; it must be in [0.02, 0.5]")
        if self.train_frac + self.val_frac > 0.98:
            raise ValueError(
                f"train_frac {self.train_frac} + val_frac {self.val_frac} leaves under 2% for the test part; "
                "keep their sum at most 0.98"
            )


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network (see training/model.py)."""

    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0  # between LSTM layers; ignored by torch when num_layers == 1
    bidirectional: bool = False  # read each window both ways (twice the LSTM weights)

    def __post_init__(self) -> None:
        if not 1 <= self.hidden_size <= 1024:
            raise ValueError(f"hidden_size is {self.hidden_size}; it must be in [1, 1024]")
        if not 1 <= self.num_layers <= 8:
            raise ValueError(f"num_layers is {self.num_layers}; it must be in [1, 8]")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout is {self.dropout}; it must be in [0, 1)")
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"bidirectional is {self.bidirectional!r}; it must be true or false")


@dataclass(frozen=True)
class TrainConfig:
    """The fit loop: Adam, mini-batches, early stopping, ReduceLROnPlateau, gradient clipping."""

    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: LossName = "huber"
    patience: int = 10  # epochs without validation improvement before stopping
    min_delta: float = 1e-5
    lr_patience: int = 4
    lr_factor: float = 0.5
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 1  # torch threads; more is ~100x slower for small LSTMs on a 2-core VM
    device: DeviceName = "auto"  # where the fit loop runs: auto = CUDA when torch sees one, else the CPU

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs is {self.epochs}; it must be >= 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size is {self.batch_size}; it must be >= 1")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr is {self.lr}; it must be in (0, 1)")
        if self.loss not in ("mse", "huber", "mae"):
            raise ValueError(f"loss is {self.loss!r}; choose 'mse', 'huber' or 'mae'")
        if self.threads < 1:
            raise ValueError(f"threads is {self.threads}; it must be >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device is {self.device!r}; choose 'auto', 'cpu' or 'cuda'")


@dataclass(frozen=True)
class Config:
    """The whole configuration, saved as ``manifest["config"]`` so a bundle can be rebuilt from itself."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        return cls(
            data=DataConfig(**data.get("data", {})),
            model=ModelConfig(**data.get("model", {})),
            train=TrainConfig(**data.get("train", {})),
        )

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> Config:
        """Build from a flat ``{"window": 30, "epochs": 5, ...}`` mapping (CLI flags, ``/train`` params).

        Unknown names are refused, quoting them, rather than silently ignored.
        """
        sections: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
        owners = {f.name: name for name, klass in _SECTIONS.items() for f in fields(klass)}
        for key, value in overrides.items():
            if value is None:
                continue
            if key not in owners:
                raise ValueError(f"unknown parameter {key!r}; known: {', '.join(sorted(owners))}")
            sections[owners[key]][key] = value
        return cls(
            data=DataConfig(**sections["data"]),
            model=ModelConfig(**sections["model"]),
            train=TrainConfig(**sections["train"]),
        )


_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
