"""The one run path: ``run(config, settings, on_epoch=...) -> RunResult``.

``limelight train``, a ``ray job submit`` of it, a notebook, every Tune trial of a
sweep and every model of the shortcut benchmark call this, so they train exactly the same thing::

    from orchestrator.run import EvalConfig, RunSettings, TrainConfig, run

    config = TrainConfig.create(method="sgt", dataset="digits", mask_ratio=0.3, epochs=10)
    result = run(config, RunSettings(storage="/data/limelight"))
    print(result.evaluation.clean_acc, result.checkpoint)

Every check that can fail on bad input runs first (``preflight``), so bad input raises
``ConfigError`` (or ``DataNotFoundError``) before any Ray work starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from methods.data import ANNOTATED_DATASETS, Dataset, ImageSplit, load_dataset, split_validation
from methods.models import build_model
from orchestrator.checkpoints import CheckpointError, check_fits, read_checkpoint
from orchestrator.config import ConfigError, EvalConfig, RunSettings, TrainConfig
from orchestrator.run.job import train_job
from orchestrator.run.result import OnEpoch, RunResult
from orchestrator.run.resume import check_resumable

__all__ = ["EvalConfig", "Prepared", "RunResult", "RunSettings", "TrainConfig", "preflight", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A run that passed every input check: its resolved config, data and directory."""

    config: TrainConfig
    dataset: Dataset  # its training split is without the validation images, if any
    run_dir: Path
    validation: ImageSplit | None = None


def run(
    config: TrainConfig,
    settings: RunSettings | None = None,
    *,
    eval_config: EvalConfig | None = None,
    on_epoch: OnEpoch | None = None,
) -> RunResult:
    """Train ``config`` where ``settings`` say, then evaluate it on the test split.

    Args:
        config: what to train; per-method and per-data-set defaults are filled in
            before the run starts (``RunResult.config`` has them).
        settings: results root, run directory, device, Ray workers and actors, data
            location (default ``RunSettings()``: ./results or $LIMELIGHT_STORAGE).
        eval_config: the final evaluation (default ``EvalConfig()``; its seed is the
            run's seed).
        on_epoch: called in the calling thread with each finished epoch's metrics,
            also when the epochs run on Ray Train workers.

    Raises:
        ConfigError: bad input, naming the field (the CLI's exit code 2).
        DataNotFoundError: the data set's files are missing (exit code 2).
        NonFiniteLossError, RuntimeError: the run failed (exit code 1).
    """
    settings = settings or RunSettings()
    eval_config = eval_config or EvalConfig(seed=config.seed)
    prepared = preflight(config, settings)
    log.info("run directory %s", prepared.run_dir)
    method = prepared.config.method_class
    if method.needs_masks and not method.annotation_masks:
        # A method that makes its own masks runs in rounds (LGR: explain, flag,
        # refine); each round is a train_job with the same settings.
        from orchestrator.run.lgr import run_lgr

        return run_lgr(
            prepared.config,
            prepared.dataset,
            prepared.run_dir,
            settings,
            eval_config=eval_config,
            on_epoch=on_epoch,
            validation=prepared.validation,
        )
    return train_job(
        prepared.config,
        prepared.dataset,
        prepared.run_dir,
        settings,
        eval_config=eval_config,
        on_epoch=on_epoch,
        validation=prepared.validation,
        **_annotated_inputs(prepared),
    )


def _annotated_inputs(prepared: Prepared) -> dict[str, Any]:
    """What a method trained on the data set's annotations (RRR) gets beside the data:
    the training split's masks (they travel to Ray Train workers with the job) and the
    weights of its ``start_checkpoint``, if any (a run directory's own checkpoint still
    wins: the run resumes)."""
    config = prepared.config
    if not config.method_class.annotation_masks:
        return {}
    inputs: dict[str, Any] = {"masks": prepared.dataset.train.masks}
    start = getattr(config.options, "start_checkpoint", None)
    if start is not None:
        inputs["init_weights"] = read_checkpoint(start)["model"]
    return inputs


def preflight(config: TrainConfig, settings: RunSettings) -> Prepared:
    """Every check of the input, in the order a user would fix them; no Ray work."""
    settings.check_fits(config)  # the device was checked when settings were made
    run_dir = settings.run_dir(config)
    if config.method_class.annotation_masks:
        _check_annotated(config)
    elif config.method_class.needs_masks:
        _check_lgr(config)
    dataset = load_dataset(
        config.dataset, data_dir=settings.data_dir, download=settings.download, seed=config.seed
    )
    validation = None
    if config.val_fraction is not None:
        dataset, validation = split_validation(dataset, config.val_fraction)
    resolved = config.resolved(dataset.default_eps)
    _check_model_fits(resolved.model_name, dataset)
    check_resumable(run_dir, resolved)
    start = getattr(resolved.options, "start_checkpoint", None)
    if start is not None:
        try:
            check_fits(read_checkpoint(start)["meta"], dataset)
        except CheckpointError as error:
            raise ConfigError("start_checkpoint", str(error)) from error
    return Prepared(resolved, dataset, run_dir, validation)


def _check_annotated(config: TrainConfig) -> None:
    if config.dataset not in ANNOTATED_DATASETS:
        raise ConfigError(
            "dataset",
            f"--method {config.method} trains with the data set's annotation masks "
            f"({', '.join(ANNOTATED_DATASETS)} have them); {config.dataset} has none",
        )


def _check_lgr(config: TrainConfig) -> None:
    options = config.options
    if "annotated" in options.spurious and config.dataset not in ANNOTATED_DATASETS:
        raise ConfigError(
            "spurious",
            f"'annotated' needs a data set with ground-truth masks "
            f"({', '.join(ANNOTATED_DATASETS)}); {config.dataset} has none",
        )
    if options.start_checkpoint is not None:
        try:
            read_checkpoint(options.start_checkpoint)
        except CheckpointError as error:
            raise ConfigError("start_checkpoint", str(error)) from error


def _check_model_fits(name: str, dataset: Dataset) -> None:
    try:
        build_model(name, dataset.input_shape, dataset.num_classes, dataset.mean, dataset.std)
    except ValueError as error:
        raise ConfigError(
            "model", f"{error} ({dataset.name} is {'x'.join(map(str, dataset.input_shape))})"
        ) from error
