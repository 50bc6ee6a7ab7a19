"""Every hyperparameter in one place, with its default; the whole object is saved in the manifest.

Defaults come from measurements on data/sp500_daily.csv (see docs/training.md): a small LSTM over a
month of daily log returns, stopped early on the validation loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from closecast.features import FEATURES, parse_names
from closecast.hparams import OneOf, Span, check_fields, hp

LossName = Literal["mse", "huber", "mae"]
DeviceName = Literal["auto", "cpu", "cuda"]

# Each field is one hyperparameter, declared once with ``hp`` (closecast/hparams.py): default, help, bounds,
# search range. Its check, its CLI flag, its `/train` param and its Optuna dimension are all made from it;
# ``cli=False`` / ``api=False`` keep a field off the command line / out of `/train`.


@dataclass(frozen=True)
class DataConfig:
    """How a CSV becomes training windows."""

    column: str = hp("Close", "column holding the closes", api=False)
    date_column: str | None = hp(
        "Date", "column holding the dates, used when the file has it, else file order", api=False
    )
    id_column: str | None = hp(
        None, "long format: column naming each row's series (e.g. symbol); one series per value", api=False
    )
    # closes per input: 20 daily returns, about a trading month
    window: int = hp(21, "closes per input window", ge=3, le=1000, unit="closes", search=Span(11, 121))
    train_frac: float = hp(0.7, "chronological training share (with val_frac at most 0.98)", ge=0.3, le=0.95)
    val_frac: float = hp(0.1, "validation share (the test part is the rest)", ge=0.02, le=0.5)
    features: tuple[str, ...] = hp(
        (), "OHLCV columns read besides the closes, in order, matched case-insensitively", items=FEATURES
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", parse_names(self.features))  # a list from JSON, a CLI string
        check_fields(self)
        if self.train_frac + self.val_frac > 0.98:
            raise ValueError(
                f"train_frac {self.train_frac} + val_frac {self.val_frac} leaves under 2% for the test part; "
                "keep their sum at most 0.98"
            )


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network (see training/model.py)."""

    hidden_size: int = hp(32, "LSTM hidden units", ge=1, le=1024, search=Span(16, 128, log=True))
    num_layers: int = hp(1, "LSTM layers", ge=1, le=8, search=Span(1, 3))
    # torch ignores dropout with one layer: searched only for a stack
    dropout: float = hp(
        0.0, "dropout between LSTM layers", ge=0, lt=1, search=Span(0.0, 0.3, above=("num_layers", 1))
    )
    bidirectional: bool = hp(
        False, "read each window both ways, with twice the LSTM weights", search=OneOf((False, True))
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class TrainConfig:
    """The fit loop: Adam, mini-batches, early stopping, ReduceLROnPlateau, gradient clipping."""

    epochs: int = hp(60, "maximum epochs", ge=1, le=100_000)
    batch_size: int = hp(64, "mini-batch size", ge=1, le=1_000_000, search=OneOf((32, 64, 128)))
    lr: float = hp(1e-3, "Adam learning rate", gt=0, lt=1, search=Span(1e-4, 1e-2, log=True))
    weight_decay: float = hp(0.0, "Adam weight decay", ge=0, cli=False, api=False)
    loss: LossName = hp("huber", "training loss", search=OneOf(("huber", "mse", "mae")))
    patience: int = hp(10, "early-stopping patience: epochs without improvement", ge=1, le=100_000)
    min_delta: float = hp(1e-5, "smallest validation improvement that counts", ge=0, cli=False, api=False)
    lr_patience: int = hp(4, "epochs on a plateau before the rate is cut", ge=0, cli=False, api=False)
    lr_factor: float = hp(0.5, "factor the rate is cut by on a plateau", gt=0, lt=1, cli=False, api=False)
    grad_clip: float = hp(1.0, "gradient norm clip", gt=0, cli=False, api=False)
    seed: int = hp(0, "random seed", ge=0, le=2**32 - 1)
    # more is ~100x slower for small LSTMs on a 2-core VM; a /train job gets the service's setting
    threads: int = hp(1, "torch threads", ge=1, api=False)
    device: DeviceName = hp(
        "auto",
        "where to train: auto = CUDA when torch sees a GPU, else cpu; evaluation and export always run on "
        "the CPU",
        api=False,
    )

    def __post_init__(self) -> None:
        check_fields(self)


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
SECTIONS: tuple[type, ...] = tuple(_SECTIONS.values())  # where the CLI, /train and tune find every field
