"""Training methods, one per file; each is a loss run by ``methods.loop``.

``build_method(name, **options)`` builds one by registry name; ``register_method``
adds one (its file and that call are all a new method needs).
"""

from __future__ import annotations

from typing import Any

from methods.options import ConfigError
from methods.training.adversarial import AdversarialTraining
from methods.training.asgt import ASGT
from methods.training.base import StepOutput, TrainingMethod
from methods.training.erm import ERM
from methods.training.lgr import LGR
from methods.training.rrr import RRR
from methods.training.sgt import SGT

__all__ = [
    "ERM",
    "METHODS",
    "RRR",
    "AdversarialTraining",
    "StepOutput",
    "TrainingMethod",
    "build_method",
    "register_method",
]

METHODS: dict[str, type[TrainingMethod]] = {}


def register_method(cls: type[TrainingMethod]) -> type[TrainingMethod]:
    """Add a method to the registry (usable as a class decorator)."""
    METHODS[cls.name] = cls
    return cls


for _method in (ERM, AdversarialTraining, SGT, ASGT, LGR, RRR):
    register_method(_method)


def method_class(name: str) -> type[TrainingMethod]:
    """The registered class; an unknown name raises ``ValueError`` listing the valid ones."""
    if name not in METHODS:
        raise ConfigError("method", f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name]


def build_method(name: str, **options: Any) -> TrainingMethod:
    """A method by registry name from its own options (an option it does not have is an
    error, like a typo). Options left out take the method's defaults; ``attack_eps``
    has none here (the data set's default is filled in by the orchestrator)."""
    return method_class(name)(**options)
