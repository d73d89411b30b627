"""Run configuration: CLI flags (and, later, spec files) -> frozen, validated dataclasses.

Raw dicts stop here. A bad value raises ``ConfigError`` naming the field and what is
allowed, before any data is read or any Ray work starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from methods.attacks import ATTACKS
from methods.data import ANNOTATED_DATASETS, DATASETS
from methods.loop import LoopConfig
from methods.models import MODELS, default_model
from methods.training import METHODS

__all__ = ["ConfigError", "EvalConfig", "TrainConfig"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "onecycle", "constant")
TRAINING_ATTACKS = ("pgd", "fgsm_rs")
SPURIOUS = ("low_relevance", "high_relevance", "annotated")


class ConfigError(ValueError):
    """A configuration value is not allowed. ``field`` names it (snake_case)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _choice(field: str, value: str, valid: Any) -> None:
    if value not in valid:
        raise ConfigError(field, f"unknown value {value!r}; valid: {', '.join(valid)}")


def _at_least(field: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(field, f"must be >= {low:g}, got {value:g}")


def _eps(field: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(
            field, f"must lie in [0, 1] (L-inf on the [0,1] pixel scale), got {value:g}"
        )


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``model`` and ``attack_eps`` default per data set when None."""

    method: str = "erm"
    dataset: str = "digits"
    model: str | None = None
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    attack_eps: float | None = None
    training_attack: str = "pgd"
    attack_steps: int = 10
    seed: int = 0
    # SGT / ASGT: fraction of pixels masked; LGR: fraction of superpixels flagged.
    mask_ratio: float | None = None  # None: the method's default (SGT/ASGT 0.5, LGR 0.2)
    reg_weight: float | None = None  # None: the method's default (1.0)
    # LGR only
    rounds: int = 2
    spurious: str = "low_relevance"
    explain_fraction: float = 1.0  # share of the training set explained each round
    lime_samples: int = 1000
    start_checkpoint: str | None = None  # None: pretrain with ERM first
    pretrain_epochs: int | None = None  # None: same as epochs

    def __post_init__(self) -> None:
        _choice("method", self.method, METHODS)
        _choice("dataset", self.dataset, DATASETS)
        if self.model is not None:
            _choice("model", self.model, MODELS)
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if not self.lr > 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr:g}")
        _at_least("weight_decay", self.weight_decay, 0)
        _choice("schedule", self.schedule, SCHEDULES)
        if self.attack_eps is not None:
            _eps("attack_eps", self.attack_eps)
        _choice("training_attack", self.training_attack, TRAINING_ATTACKS)
        _at_least("attack_steps", self.attack_steps, 1)
        _at_least("seed", self.seed, 0)
        if self.mask_ratio is not None and not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError("mask_ratio", f"must lie in (0, 1), got {self.mask_ratio:g}")
        if self.reg_weight is not None:
            _at_least("reg_weight", self.reg_weight, 0)
        _at_least("rounds", self.rounds, 1)
        _choice("spurious", self.spurious, SPURIOUS)
        if not 0.0 < self.explain_fraction <= 1.0:
            raise ConfigError(
                "explain_fraction", f"must lie in (0, 1], got {self.explain_fraction:g}"
            )
        _at_least("lime_samples", self.lime_samples, 2)
        if self.pretrain_epochs is not None:
            _at_least("pretrain_epochs", self.pretrain_epochs, 0)
        if self.method == "lgr":
            self._check_lgr()

    def _check_lgr(self) -> None:
        if self.spurious == "annotated" and self.dataset not in ANNOTATED_DATASETS:
            raise ConfigError(
                "spurious",
                f"'annotated' needs a data set with ground-truth masks "
                f"({', '.join(ANNOTATED_DATASETS)}); {self.dataset} has none",
            )
        if self.start_checkpoint is None and self.pretrain_epochs == 0:
            raise ConfigError(
                "start_checkpoint",
                "lgr needs a starting model: give --start-checkpoint, or --pretrain-epochs >= 1",
            )

    @property
    def model_name(self) -> str:
        return self.model or default_model(self.dataset)

    def resolved(self, default_eps: float) -> TrainConfig:
        """This config with the per-data-set defaults filled in."""
        eps = default_eps if self.attack_eps is None else self.attack_eps
        return dataclasses.replace(self, model=self.model_name, attack_eps=eps)

    def loop_config(self, monitor_eps: float | None) -> LoopConfig:
        return LoopConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.lr,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            seed=self.seed,
            monitor_eps=monitor_eps,
        )

    def method_options(self) -> dict[str, Any]:
        return {
            "attack_eps": self.attack_eps,
            "training_attack": self.training_attack,
            "attack_steps": self.attack_steps,
            "mask_ratio": self.mask_ratio,
            "reg_weight": self.reg_weight,
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def differences(self, other: TrainConfig, ignore: tuple[str, ...] = ("epochs",)) -> list[str]:
        """Fields that differ, as ``name: this != other`` (for resume checks)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{k}: {mine[k]!r} != {theirs[k]!r}"
            for k in mine
            if k not in ignore and mine[k] != theirs[k]
        ]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Strict: an unknown key is an error, like a typo in a spec file."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown key; valid: {', '.join(sorted(known))}")
        return cls(**values)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings: attacks at each eps of the grid."""

    eps: tuple[float, ...] | None = None  # None: the data set's grid
    attacks: tuple[str, ...] = ("fgsm", "pgd")
    pgd_steps: int = 20
    pgd_restarts: int = 1
    limit: int | None = None
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for value in self.eps or ():
            _eps("eps", value)
        if not self.attacks:
            raise ConfigError("attacks", f"name at least one; valid: {', '.join(ATTACKS)}")
        for name in self.attacks:
            _choice("attacks", name, ATTACKS)
        _at_least("pgd_steps", self.pgd_steps, 1)
        _at_least("pgd_restarts", self.pgd_restarts, 1)
        if self.limit is not None:
            _at_least("limit", self.limit, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("seed", self.seed, 0)
