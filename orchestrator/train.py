"""A training job: the shared loop run inline in the calling process.

One CPU worker needs no Ray Train overhead (a TorchTrainer inside a Tune trial costs
~20-40 s to start on 2 CPUs, ARCHITECTURE.md), so inline is the default; the
distributed TorchTrainer path runs the same ``methods.loop.fit``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from methods.data import Dataset
from methods.evaluate import EvalResult, evaluate
from methods.loop import EpochMetrics, fit, resolve_device
from methods.models import build_model
from methods.training import build_method
from orchestrator.checkpoints import CheckpointError, checkpoint_meta, read_checkpoint
from orchestrator.config import ConfigError, EvalConfig, TrainConfig

__all__ = ["TrainOutcome", "check_resumable", "default_out_dir", "eval_grid", "run_training"]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class TrainOutcome:
    config: TrainConfig  # resolved: model and attack_eps filled in
    checkpoint: Path
    history: list[EpochMetrics]
    evaluation: EvalResult
    wall_s: float


def default_out_dir(config: TrainConfig) -> Path:
    return Path("results") / "train" / f"{config.dataset}-{config.method}-seed{config.seed}"


def check_resumable(out_dir: Path, config: TrainConfig) -> None:
    """A run directory may be resumed only by the same config (more epochs allowed).

    Called before any data is loaded, so a clash exits at once with the field named.
    """
    checkpoint = out_dir / CHECKPOINT_NAME
    if not checkpoint.exists():
        return
    try:
        state = read_checkpoint(checkpoint)
    except CheckpointError as error:
        raise ConfigError("out", f"{error}; delete it or choose another --out") from error
    saved = TrainConfig.from_dict(state["meta"]["config"])
    # Unset defaults (model, attack_eps) match whatever the saved run resolved them to.
    eps = saved.attack_eps if config.attack_eps is None else config.attack_eps
    ours = dataclasses.replace(config, model=config.model_name, attack_eps=eps)
    differences = ours.differences(saved)
    if differences:
        raise ConfigError(
            "out",
            f"{out_dir} holds a run with other settings ({'; '.join(differences)}); "
            "choose another --out to start a new run",
        )


def eval_grid(dataset: Dataset, attack_eps: float, requested: tuple[float, ...] | None) -> tuple:
    """The data set's eps grid plus the training eps, sorted (or exactly what was asked)."""
    if requested is not None:
        return tuple(requested)
    return tuple(sorted({*dataset.eval_eps, attack_eps}))


def run_training(
    config: TrainConfig,
    dataset: Dataset,
    *,
    out_dir: Path,
    device: str = "auto",
    eval_config: EvalConfig | None = None,
) -> TrainOutcome:
    """Train ``config`` on ``dataset`` inline, checkpointing to ``out_dir``, then evaluate.

    ``out_dir`` receives ``checkpoint.pt`` (resumed if present), ``tensorboard/``,
    ``config.json`` and ``eval.json``.
    """
    started = time.perf_counter()
    config = config.resolved(dataset.default_eps)
    eval_config = eval_config or EvalConfig()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    torch.manual_seed(config.seed)
    model = build_model(
        config.model_name, dataset.input_shape, dataset.num_classes, dataset.mean, dataset.std
    )
    method = build_method(config.method, **config.method_options())
    checkpoint = out_dir / CHECKPOINT_NAME
    history = fit(
        model,
        method,
        dataset.train,
        config=config.loop_config(monitor_eps=config.attack_eps),
        test=dataset.test,
        device=device,
        logdir=out_dir / "tensorboard",
        checkpoint=checkpoint,
        meta=checkpoint_meta(dataset, config.model_name, config.to_dict()),
    )
    evaluation = evaluate_split(model, dataset, eval_config, config.attack_eps, device)
    write_json(out_dir / "eval.json", {"checkpoint": str(checkpoint), **evaluation.to_dict()})
    return TrainOutcome(config, checkpoint, history, evaluation, time.perf_counter() - started)


def evaluate_split(
    model: torch.nn.Module,
    dataset: Dataset,
    eval_config: EvalConfig,
    attack_eps: float | None,
    device: str,
) -> EvalResult:
    """Evaluate on the test split (and CIFAR-10-C when the data set carries it)."""
    split = dataset.test if eval_config.limit is None else dataset.test.subset(eval_config.limit)
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
        pgd_steps=eval_config.pgd_steps,
        pgd_restarts=eval_config.pgd_restarts,
        batch_size=eval_config.batch_size,
        device=resolve_device(device),
        seed=eval_config.seed,
        corruption_root=dataset.corruption_root,
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
