"""Checkpoints as the orchestrator sees them: what produced them, and the model back.

A checkpoint's ``meta`` records the data set's shape and statistics and the run's
config, so a model can be rebuilt without the caller repeating how it was made,
and a checkpoint is refused for a data set of another shape.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from methods.data import Dataset
from methods.loop import load_checkpoint
from methods.models import build_model
from methods.options import InputError

__all__ = ["CheckpointError", "checkpoint_meta", "git_sha", "restore_model"]


class CheckpointError(InputError):
    """A checkpoint is missing, unreadable, or does not fit the data set."""


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the code that is running, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def checkpoint_meta(dataset: Dataset, model_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint records about how it was produced."""
    return {
        "dataset": dataset.name,
        "model": model_name,
        "method": config.get("method"),
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "mean": list(dataset.mean),
        "std": list(dataset.std),
        "config": config,
        "git_sha": git_sha(),
    }


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's state, or ``CheckpointError`` with a one-line reason."""
    try:
        state = load_checkpoint(path)
    except (FileNotFoundError, ValueError) as error:
        raise CheckpointError(str(error)) from error
    if "model" not in state or "dataset" not in state.get("meta", {}):
        raise CheckpointError(f"{path} lacks the model weights or its meta record")
    return state


def _shape(meta: dict[str, Any]) -> str:
    c, h, w = meta["input_shape"]
    return f"{c}x{h}x{w}, {meta['num_classes']} classes"


def check_fits(meta: dict[str, Any], dataset: Dataset) -> None:
    """Refuse a checkpoint whose input shape or class count differ from the data set's."""
    if list(meta["input_shape"]) != list(dataset.input_shape) or meta["num_classes"] != (
        dataset.num_classes
    ):
        c, h, w = dataset.input_shape
        raise CheckpointError(
            f"checkpoint was trained on {meta['dataset']} ({_shape(meta)}); "
            f"{dataset.name} is {c}x{h}x{w}, {dataset.num_classes} classes"
        )


def restore_model(state: dict[str, Any]) -> nn.Module:
    """Rebuild the model a checkpoint was trained as and load its weights (on the CPU)."""
    meta = state["meta"]
    model = build_model(
        meta["model"], tuple(meta["input_shape"]), meta["num_classes"], meta["mean"], meta["std"]
    )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"weights do not fit model {meta['model']!r}: {first}") from error
    return model.to(torch.device("cpu"))
