"""What a run produced (``RunResult``) and the callback type that watches it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from methods.loop import EpochMetrics
from methods.results import EvalResult
from orchestrator.config import TrainConfig

__all__ = ["OnEpoch", "RunResult"]

#: Called on the calling side with each finished epoch's metrics.
OnEpoch = Callable[[EpochMetrics], None]


@dataclass(frozen=True)
class RunResult:
    """What a run produced. ``config`` is resolved: every default it ran with filled in."""

    config: TrainConfig
    history: list[EpochMetrics]
    evaluation: EvalResult
    checkpoint: Path
    logdir: Path
    wall_s: float
    #: The same evaluation on the held-out validation split (``config.val_fraction``).
    validation: EvalResult | None = None
    #: Seconds of ``wall_s`` spent evaluating (test and validation splits, eval.json).
    eval_s: float = 0.0

    @property
    def train_s(self) -> float:
        """Seconds of ``wall_s`` before the evaluation: training (or resuming it)."""
        return self.wall_s - self.eval_s

    @property
    def run_dir(self) -> Path:
        return self.checkpoint.parent
