"""The final evaluation of a trained model, as every verb and run evaluates it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from methods.data import Dataset, ImageSplit
from methods.evaluate import DEFAULT_PROBES, evaluate
from methods.lime import LimeSettings
from methods.loop import resolve_device
from methods.results import EvalResult
from orchestrator.config import EvalConfig

__all__ = ["eval_grid", "evaluate_split", "lime_settings", "write_json"]


def eval_grid(dataset: Dataset, attack_eps: float, requested: tuple[float, ...] | None) -> tuple:
    """The data set's eps grid plus the training eps, sorted (or exactly what was asked)."""
    if requested is not None:
        return tuple(requested)
    return tuple(sorted({*dataset.eval_eps, attack_eps} - {0.0}))


def lime_settings(config: Mapping[str, Any]) -> LimeSettings | None:
    """For an LGR run (``config``: its flat ``TrainConfig.to_dict()``), LIME as LGR
    explained: its sample count, the run's seed. The evaluation then adds the
    masked-accuracy curve in LIME's order. None for every other method."""
    if config.get("method") != "lgr":
        return None
    # A config from before the sampler option explained with i.i.d. masks.
    sampler = str(config.get("lime_sampler", "iid"))
    return LimeSettings(
        num_samples=int(config["lime_samples"]), seed=int(config["seed"]), sampler=sampler
    )


def evaluate_split(
    model: torch.nn.Module,
    dataset: Dataset,
    eval_config: EvalConfig,
    attack_eps: float | None,
    device: str,
    split: ImageSplit | None = None,
    *,
    lime: LimeSettings | None = None,
) -> EvalResult:
    """Evaluate on the test split (and CIFAR-10-C when the data set carries it), or on
    ``split`` (a validation split: no corruptions). ``lime``: also the masked-accuracy
    curve in LIME's order (``lime_settings``)."""
    held_out = split
    split = dataset.test if split is None else split
    split = split if eval_config.limit is None else split.subset(eval_config.limit)
    images, labels = split.tensors()
    grid = eval_grid(
        dataset, attack_eps if attack_eps is not None else dataset.default_eps, eval_config.eps
    )
    return evaluate(
        model,
        images,
        labels,
        eps_grid=grid,
        attacks=eval_config.attacks,
        eval_mode=eval_config.eval_mode,
        pgd_steps=eval_config.pgd_steps,
        pgd_restarts=eval_config.pgd_restarts,
        probes=DEFAULT_PROBES if eval_config.audit_probes else None,
        probe_eps=eval_config.probe_eps,
        fast_eps=eval_config.fast_eps,
        faithfulness=eval_config.faithfulness,
        lime=lime,
        batch_size=eval_config.batch_size,
        device=resolve_device(device),
        seed=eval_config.seed,
        corruption_root=dataset.corruption_root if held_out is None else None,
        corruption_limit=eval_config.limit,
    )


def write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable))
    tmp.replace(path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
