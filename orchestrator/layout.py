"""Names of what a run directory and a sweep folder hold: written here once.

A run directory (``limelight train``'s ``STORAGE/OUT``, a sweep trial's
``STORAGE/SWEEP/runs/<trial_id>``) holds::

    config.json     the resolved config, written when the run starts
    checkpoint.pt   the last epoch (``torch.load(weights_only=True)``)
    eval.json       the final evaluation
    objective.json  a sweep trial's objective on the validation split (written before
                    its row: a resumed sweep skips a trial that has both)
    tensorboard/    event files
    ray/            Ray Train's storage (distributed runs)
    pretrain/, round<k>/   an LGR run's pretraining and refinement rounds
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = [
    "CHECKPOINT_NAME",
    "CONFIG_NAME",
    "EVAL_NAME",
    "OBJECTIVE_NAME",
    "PRETRAIN_DIR",
    "RAY_DIR",
    "ROUND_PATTERN",
    "RUNS_DIR",
    "TENSORBOARD_DIR",
    "round_dir",
    "trial_run_dir",
]

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"
EVAL_NAME = "eval.json"
OBJECTIVE_NAME = "objective.json"
TENSORBOARD_DIR = "tensorboard"
RAY_DIR = "ray"
PRETRAIN_DIR = "pretrain"
#: A sweep's folder keeps each trial's run directory under this name.
RUNS_DIR = "runs"
ROUND_PATTERN = re.compile(r"round(\d+)")


def round_dir(run_dir: Path, round_: int) -> Path:
    """An LGR run's directory for refinement round ``round_`` (0-based)."""
    return run_dir / f"round{round_}"


def trial_run_dir(root: str | Path, sweep: str, trial_id: str) -> Path:
    """The run directory of one trial of a sweep under the results root."""
    return Path(root) / sweep / RUNS_DIR / trial_id
