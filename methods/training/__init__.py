"""Training methods, one per file; each is a loss run by ``methods.loop``.

``build_method(name, **options)`` builds one by registry name.
"""

from __future__ import annotations

from methods.training.adversarial import AdversarialTraining
from methods.training.asgt import ASGT
from methods.training.base import StepOutput, TrainingMethod
from methods.training.erm import ERM
from methods.training.lgr import LGR
from methods.training.sgt import SGT

__all__ = ["ERM", "METHODS", "AdversarialTraining", "StepOutput", "TrainingMethod", "build_method"]

METHODS: dict[str, type[TrainingMethod]] = {
    ERM.name: ERM,
    AdversarialTraining.name: AdversarialTraining,
    SGT.name: SGT,
    ASGT.name: ASGT,
    LGR.name: LGR,
}


def build_method(name: str, **options: object) -> TrainingMethod:
    """A method by registry name from a run's flat options; unknown names raise
    ``ValueError`` listing the valid ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return METHODS[name].from_options(**options)
