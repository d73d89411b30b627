"""The distributed fit: the shared loop in every worker of a Ray Train ``TorchTrainer``.

Each rank runs the same ``methods.loop.fit`` (DDP) on its shard of the same seeded
global batches, so N workers take the steps one process takes. A dead worker restarts
the group from the last reported checkpoint (``FailureConfig(max_failures=MAX_FAILURES)``).
Ray is imported inside the functions: importing this module does not import Ray.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from methods.data import Dataset, load_dataset, split_validation
from methods.loop import EpochMetrics, fit
from orchestrator.checkpoints import checkpoint_meta, read_checkpoint
from orchestrator.config import RunSettings, TrainConfig
from orchestrator.layout import CHECKPOINT_NAME, RAY_DIR, TENSORBOARD_DIR
from orchestrator.run.result import OnEpoch
from orchestrator.run.setup import (
    build_method,
    initial_model,
    loop_config,
    saliency_logger,
    with_masks,
)

__all__ = ["fit_distributed", "train_worker"]

log = logging.getLogger(__name__)

#: Worker-group restarts before a run fails; each resumes from the last reported epoch.
MAX_FAILURES = 2


#: Reported checkpoints kept in storage (else one per epoch, ~90 MB each for ResNet-18).
KEEP_CHECKPOINTS = 2


def _scaling(workers: int, gpus_per_worker: float) -> Any:
    from ray.train import ScalingConfig

    return ScalingConfig(
        num_workers=workers,
        use_gpu=gpus_per_worker > 0,
        resources_per_worker={"CPU": 1, "GPU": gpus_per_worker} if gpus_per_worker else None,
    )


def _backend(gpus_per_worker: float) -> str:
    # NCCL refuses two ranks on one GPU ("Duplicate GPU detected", ray-project/ray#48012),
    # which fractional GPUs give; gloo reduces CUDA tensors too, only slower.
    return "nccl" if gpus_per_worker >= 1 else "gloo"


def _run_config(run_dir: Path, callbacks: list[Any]) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    # Train V2 restores a run by (storage, name): a rerun in the same run directory
    # resumes, and two run directories never restore each other.
    return RunConfig(
        name="train",
        storage_path=str(run_dir.resolve() / RAY_DIR),
        failure_config=FailureConfig(max_failures=MAX_FAILURES),
        checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
        callbacks=callbacks,
    )


def fit_distributed(
    config: TrainConfig,
    dataset: Dataset,
    run_dir: Path,
    settings: RunSettings,
    on_epoch: OnEpoch | None,
    masks: torch.Tensor | None,
    init_weights: dict[str, torch.Tensor] | None,
) -> None:
    """Train on a ``TorchTrainer`` and copy its last checkpoint to ``run_dir``."""
    from ray.train.torch import TorchConfig, TorchTrainer

    from orchestrator.cluster import connect

    connect(settings.address)
    checkpoint = run_dir / CHECKPOINT_NAME
    params = {
        "config": config.to_dict(),
        "dataset": dataset.name,
        "data_dir": settings.data_dir,
        "download": settings.download,
        "meta": checkpoint_meta(dataset, config.model_name, config.to_dict()),
        # Workers write events and read a checkpoint to resume from at these driver
        # paths: right on one machine or a shared file system. On a cluster without
        # one, events land on rank 0's node and resuming relies on Ray's storage.
        "logdir": str(run_dir.resolve() / TENSORBOARD_DIR),
        "resume": str(checkpoint.resolve()) if checkpoint.exists() else None,
        # Sent with the job (Ray's object store), so workers need no shared disk for them.
        "masks": masks,
        "init_weights": init_weights,
    }
    relay = _EpochRelay.start() if on_epoch is not None else None
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=params,
        torch_config=TorchConfig(backend=_backend(settings.gpus_per_worker)),
        scaling_config=_scaling(settings.workers, settings.gpus_per_worker),
        run_config=_run_config(run_dir, [relay.callback] if relay else []),
    )
    result = _fit_relaying(trainer, relay, on_epoch)
    if result.error is not None:  # fit() raises it today; the Result still carries it
        raise RuntimeError(f"distributed training failed: {_one_line(result.error)}")
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as directory:
            tmp = checkpoint.with_name(checkpoint.name + ".tmp")
            shutil.copyfile(Path(directory) / CHECKPOINT_NAME, tmp)
            tmp.replace(checkpoint)
    elif not checkpoint.exists():
        raise RuntimeError("distributed training reported no checkpoint")


def _fit_relaying(trainer: Any, relay: _EpochRelay | None, on_epoch: OnEpoch | None) -> Any:
    """``trainer.fit()``, with each epoch rank 0 reports handed to ``on_epoch`` in the
    calling thread (where a Tune trial's ``tune.report`` must run) while it trains."""
    import ray.train

    with ThreadPoolExecutor(1, thread_name_prefix="limelight-fit") as pool:
        future = pool.submit(trainer.fit)
        try:
            while relay is not None and not future.done():
                relay.deliver(on_epoch, timeout=0.5)
            if relay is not None:
                relay.deliver(on_epoch, timeout=0)  # what arrived with the last report
            return future.result()
        except ray.train.TrainingFailedError as error:
            raise RuntimeError(f"distributed training failed: {_one_line(error)}") from error
        finally:
            if relay is not None:
                relay.close()


class _EpochRelay:
    """Carries rank 0's reported epochs from Train's controller (where Train V2 runs its
    ``UserCallback``s: another process) to the driver, through a Ray queue actor."""

    def __init__(self, queue: Any, callback: Any) -> None:
        self.queue, self.callback = queue, callback

    @classmethod
    def start(cls) -> _EpochRelay:
        from ray.util.queue import Queue

        # No CPU of its own: inside a Tune trial every child actor must fit in the
        # trial's placement group, which reserves only what the trial itself needs.
        queue = Queue(actor_options={"num_cpus": 0})
        return cls(queue, _report_forwarder(queue))

    def deliver(self, on_epoch: OnEpoch | None, timeout: float) -> None:
        from ray.util.queue import Empty

        while True:
            try:
                values = self.queue.get(block=timeout > 0, timeout=timeout or None)
            except Empty:
                return
            if on_epoch is not None:
                on_epoch(_metrics_from_report(values))
            timeout = 0

    def close(self) -> None:
        self.queue.shutdown()


def _report_forwarder(queue: Any) -> Any:
    """A Train V2 ``UserCallback`` that puts rank 0's metrics of every report on the
    queue (built here so that importing this module does not import Ray)."""
    from ray.train import UserCallback

    class ReportForwarder(UserCallback):
        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any):
            if metrics:
                queue.put(metrics[0])

    return ReportForwarder()


def _metrics_from_report(values: dict[str, Any]) -> EpochMetrics:
    names = {f.name for f in dataclasses.fields(EpochMetrics)} - {"terms"}
    terms = {k.removeprefix("terms/"): v for k, v in values.items() if k.startswith("terms/")}
    return EpochMetrics(**{k: values[k] for k in names}, terms=terms)


def train_worker(params: dict[str, Any]) -> None:
    """One Ray Train worker: the inline path's data, model and method, run by ``fit``
    under DDP. Rank 0 reports each epoch's checkpoint; a restarted worker group resumes
    from the last one Train registered (the controller collects reports every ~2 s, so
    a worker killed within that window loses its last report and repeats the epoch)."""
    config = TrainConfig.from_dict(params["config"])
    import ray.train
    import ray.train.torch

    dataset = load_dataset(
        params["dataset"],
        data_dir=params["data_dir"],
        download=params["download"],
        seed=config.seed,
    )
    validation = None
    if config.val_fraction is not None:  # the driver's split: it is seeded by a constant
        dataset, validation = split_validation(dataset, config.val_fraction)
    model = initial_model(config, dataset, params["init_weights"])
    method = build_method(config)
    rank = ray.train.get_context().get_world_rank()
    draw = None
    if rank == 0:
        draw = saliency_logger(method, model, dataset, Path(params["logdir"]), config.epochs)
    with tempfile.TemporaryDirectory(prefix="limelight-train-") as local:
        checkpoint = Path(local) / "checkpoint" / CHECKPOINT_NAME
        resumed_from = _fetch_checkpoint(checkpoint, params["resume"])
        fit(
            model,
            method,
            with_masks(dataset.train, params["masks"]),
            config=loop_config(config),
            test=dataset.test if validation is None else validation,
            monitor_name="test" if validation is None else "val",
            device=ray.train.torch.get_device(),
            logdir=params["logdir"],  # fit writes events on rank 0 only
            checkpoint=checkpoint,
            meta=params["meta"],
            on_epoch_end=_reporter(checkpoint, resumed_from, draw),
            wrap_model=ray.train.torch.prepare_model,
        )


def _fetch_checkpoint(local: Path, resume: str | None) -> int:
    """Put the checkpoint to resume from at ``local`` (Ray's latest reported one, else the
    run directory's); return its epoch, 0 for a fresh start. Every rank fetches the same
    file, so all resume at the same epoch."""
    import ray.train

    local.parent.mkdir(parents=True, exist_ok=True)
    reported = ray.train.get_checkpoint()
    if reported is not None:
        with reported.as_directory() as directory:
            shutil.copyfile(Path(directory) / CHECKPOINT_NAME, local)
    elif resume is not None and Path(resume).exists():
        shutil.copyfile(resume, local)
    else:
        return 0
    epoch = int(read_checkpoint(local)["epoch"])
    log.info("rank %d resumes at epoch %d", ray.train.get_context().get_world_rank(), epoch)
    return epoch


def _reporter(
    checkpoint: Path, resumed_from: int, draw: Callable[[EpochMetrics], None] | None
) -> Callable[[EpochMetrics], None]:
    """``fit``'s ``on_epoch_end``: report the epoch, with the checkpoint ``fit`` has just
    written on rank 0. Every rank must report (``ray.train.report`` is a barrier)."""
    import ray.train

    rank = ray.train.get_context().get_world_rank()

    def report(metrics: EpochMetrics) -> None:
        if draw is not None:
            draw(metrics)
        values = {k: v for k, v in asdict(metrics).items() if k != "terms"}
        values.update({f"terms/{k}": v for k, v in metrics.terms.items()})
        values["resumed_from_epoch"] = resumed_from
        if rank == 0:
            reported = ray.train.Checkpoint.from_directory(checkpoint.parent)
            ray.train.report(values, checkpoint=reported)
        else:
            ray.train.report(values)

    return report


def _one_line(error: BaseException) -> str:
    # Train's errors put a header first and the worker's traceback after it; the last
    # line names the exception that ended the run.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
