"""Resuming a run directory: only the same resolved config may continue it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.checkpoints import CheckpointError, read_checkpoint
from orchestrator.config import ConfigError, TrainConfig
from orchestrator.layout import CHECKPOINT_NAME, CONFIG_NAME

__all__ = ["check_resumable"]


def check_resumable(run_dir: Path, config: TrainConfig) -> None:
    """A run directory may be resumed only by the same resolved config (more epochs
    allowed). It records its config in ``config.json`` when it starts; older run
    directories only in the checkpoint."""
    recorded = _recorded_config(run_dir)
    if recorded is None:
        return
    try:
        saved = TrainConfig.from_dict(recorded)
    except ConfigError as error:
        raise ConfigError(
            "out", f"{run_dir} holds a run this version cannot read ({error}); choose another --out"
        ) from error
    differences = config.differences(saved)
    if differences:
        raise ConfigError(
            "out",
            f"{run_dir} holds a run with other settings ({'; '.join(sorted(differences))}); "
            "choose another --out to start a new run",
        )


def _recorded_config(run_dir: Path) -> dict[str, Any] | None:
    if (run_dir / CONFIG_NAME).exists():
        return json.loads((run_dir / CONFIG_NAME).read_text())
    if (run_dir / CHECKPOINT_NAME).exists():
        try:
            return read_checkpoint(run_dir / CHECKPOINT_NAME)["meta"]["config"]
        except CheckpointError as error:
            raise ConfigError("out", f"{error}; delete it or choose another --out") from error
    return None
