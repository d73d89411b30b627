"""A training job: the shared loop run inline in the calling process, or on Ray Train.

One CPU worker needs no Ray Train overhead (a TorchTrainer inside a Tune trial costs
~20-40 s to start on 2 CPUs, ARCHITECTURE.md), so inline is the default; the
distributed path runs the same ``methods.loop.fit`` in every worker of a
``TorchTrainer`` (DDP), each rank on its shard of the same seeded global batches, so
N workers take the steps one process takes. A dead worker restarts the group from the
last reported checkpoint (``FailureConfig(max_failures=MAX_FAILURES)``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from methods.attacks import model_mode
from methods.data import Dataset, ImageSplit, load_dataset
from methods.evaluate import EvalResult, evaluate
from methods.loop import EpochMetrics, fit, resolve_device
from methods.models import build_model
from methods.training import TrainingMethod, build_method
from orchestrator.checkpoints import (
    CheckpointError,
    checkpoint_meta,
    read_checkpoint,
    restore_model,
)
from orchestrator.config import ConfigError, EvalConfig, TrainConfig

__all__ = [
    "TrainOutcome",
    "check_resumable",
    "default_out_dir",
    "eval_grid",
    "run_training",
    "train_worker",
]

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
    return tuple(sorted({*dataset.eval_eps, attack_eps} - {0.0}))


def run_training(
    config: TrainConfig,
    dataset: Dataset,
    *,
    out_dir: Path,
    device: str = "auto",
    eval_config: EvalConfig | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0,
    storage: str | None = None,
    address: str | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    masks: torch.Tensor | None = None,
    init_weights: dict[str, torch.Tensor] | None = None,
) -> TrainOutcome:
    """Train ``config`` on ``dataset``, checkpointing to ``out_dir``, then evaluate.

    ``out_dir`` receives ``checkpoint.pt`` (resumed if present), ``tensorboard/``,
    ``config.json`` and ``eval.json``. One worker without GPUs trains inline (no Ray);
    otherwise a ``TorchTrainer`` with ``workers`` DDP workers trains and the driver
    evaluates the final checkpoint.

    Args:
        device: where the inline run trains and the final evaluation runs.
        workers: Train workers (DDP ranks); ``config.batch_size`` must divide evenly.
        gpus_per_worker: GPUs per worker (fractions pack workers onto one GPU).
        storage: Ray Train storage (a folder or a pyarrow URI such as ``s3://``);
            default ``out_dir/ray``. A rerun with the same ``out_dir`` resumes there.
        address: Ray cluster to join (``orchestrator.ray_setup.connect``).
        data_dir, download: how workers load ``dataset.name`` (with ``seed=config.seed``,
            as the CLI does), since only this plain description travels to them.
        masks: (N, 1, H, W) bool flagged pixels of the training images (LGR); they
            travel to the workers with the job.
        init_weights: a model state dict to start from (an LGR round refines the
            previous round's model) when ``out_dir`` holds no checkpoint to resume.

    Raises:
        ValueError: ``workers`` or ``gpus_per_worker`` out of range, or a batch size
            that the workers cannot split evenly.
        RuntimeError: the distributed run failed (one line naming the first error).
    """
    started = time.perf_counter()
    config = config.resolved(dataset.default_eps)
    eval_config = eval_config or EvalConfig()
    _check_scaling(config, workers, gpus_per_worker)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    checkpoint = out_dir / CHECKPOINT_NAME
    if workers == 1 and not gpus_per_worker:
        model, history = _fit_inline(config, dataset, out_dir, device, masks, init_weights)
    else:
        _fit_distributed(
            config,
            dataset,
            out_dir,
            workers=workers,
            gpus_per_worker=gpus_per_worker,
            storage=storage,
            address=address,
            data_dir=data_dir,
            download=download,
            masks=masks,
            init_weights=init_weights,
        )
        state = read_checkpoint(checkpoint)
        model = restore_model(state)
        history = [EpochMetrics(**m) for m in state["history"]]
    evaluation = evaluate_split(model, dataset, eval_config, config.attack_eps, device)
    write_json(out_dir / "eval.json", {"checkpoint": str(checkpoint), **evaluation.to_dict()})
    return TrainOutcome(config, checkpoint, history, evaluation, time.perf_counter() - started)


def _fit_inline(
    config: TrainConfig,
    dataset: Dataset,
    out_dir: Path,
    device: str,
    masks: torch.Tensor | None,
    init_weights: dict[str, torch.Tensor] | None,
) -> tuple[torch.nn.Module, list[EpochMetrics]]:
    model = _initial_model(config, dataset, init_weights)
    method = build_method(config.method, **config.method_options())
    logdir = out_dir / "tensorboard"
    history = fit(
        model,
        method,
        _with_masks(dataset.train, masks),
        config=config.loop_config(monitor_eps=config.attack_eps),
        test=dataset.test,
        device=device,
        logdir=logdir,
        checkpoint=out_dir / CHECKPOINT_NAME,
        meta=checkpoint_meta(dataset, config.model_name, config.to_dict()),
        on_epoch_end=saliency_logger(method, model, dataset, logdir, config.epochs),
    )
    return model, history


#: Fixed test images whose saliency maps go to TensorBoard each epoch (SGT, ASGT).
SALIENCY_IMAGES = 8


def saliency_logger(
    method: TrainingMethod,
    model: torch.nn.Module,
    dataset: Dataset,
    logdir: Path,
    epochs: int,
) -> Callable[[EpochMetrics], None] | None:
    """An ``on_epoch_end`` that draws what a saliency-guided method masks by on fixed
    test images, as a TensorBoard figure; None for methods without saliency."""
    if not hasattr(method, "saliency"):
        return None
    from torch.utils.tensorboard import SummaryWriter

    from orchestrator.plots import saliency_figure

    images, labels = dataset.test.tensors(slice(0, SALIENCY_IMAGES))
    writer = SummaryWriter(str(logdir))

    def log_saliency(metrics: EpochMetrics) -> None:
        device = next(model.parameters()).device
        with model_mode(model, "eval"):
            saliency = method.saliency(model, images.to(device), labels.to(device)).cpu()
        figure = saliency_figure(images.numpy(), saliency.numpy(), f"epoch {metrics.epoch}")
        writer.add_figure("saliency/test_images", figure, global_step=metrics.epoch)
        writer.flush()
        if metrics.epoch == epochs:
            writer.close()

    return log_saliency


def _initial_model(
    config: TrainConfig, dataset: Dataset, init_weights: dict[str, torch.Tensor] | None
) -> torch.nn.Module:
    torch.manual_seed(config.seed)  # every rank (and a rerun) builds the same weights
    model = build_model(
        config.model_name, dataset.input_shape, dataset.num_classes, dataset.mean, dataset.std
    )
    if init_weights is not None:  # a checkpoint to resume from still wins: fit loads it
        model.load_state_dict(init_weights)
    return model


def _with_masks(split: ImageSplit, masks: torch.Tensor | None) -> ImageSplit:
    return split if masks is None else ImageSplit(split.images, split.labels, masks)


# ----------------------------------------------------------------------------- Ray Train

#: Worker-group restarts before a run fails; each resumes from the last reported epoch.
MAX_FAILURES = 2
#: Reported checkpoints kept in storage (else one per epoch, ~90 MB each for ResNet-18).
KEEP_CHECKPOINTS = 2


def _check_scaling(config: TrainConfig, workers: int, gpus_per_worker: float) -> None:
    # Checked on the driver: inside a worker the same error would be retried MAX_FAILURES
    # times, each after a worker-group start.
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if gpus_per_worker < 0:
        raise ValueError(f"gpus_per_worker must be >= 0, got {gpus_per_worker:g}")
    if config.batch_size % workers:
        raise ValueError(
            f"batch_size {config.batch_size} must be a multiple of workers ({workers}): "
            "every worker takes an equal shard of each global batch"
        )


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


def _run_config(out_dir: Path, storage: str | None) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    out = out_dir.resolve()
    if storage is None:
        storage_path, name = str(out / "ray"), "train"
    else:
        storage_path = storage if "://" in storage else str(Path(storage).resolve())
        # One name per out_dir: Train V2 restores a run by (storage, name), so a rerun
        # resumes, and two out_dirs that share a storage never restore each other.
        name = f"{out.name}-{hashlib.sha1(str(out).encode()).hexdigest()[:8]}"
    return RunConfig(
        name=name,
        storage_path=storage_path,
        failure_config=FailureConfig(max_failures=MAX_FAILURES),
        checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
    )


def _fit_distributed(
    config: TrainConfig,
    dataset: Dataset,
    out_dir: Path,
    *,
    workers: int,
    gpus_per_worker: float,
    storage: str | None,
    address: str | None,
    data_dir: str | Path | None,
    download: bool,
    masks: torch.Tensor | None,
    init_weights: dict[str, torch.Tensor] | None,
) -> None:
    """Train on a ``TorchTrainer`` and copy its last checkpoint to ``out_dir``."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from orchestrator.ray_setup import connect

    connect(address)
    checkpoint = out_dir / CHECKPOINT_NAME
    params = {
        "config": config.to_dict(),
        "dataset": dataset.name,
        "data_dir": None if data_dir is None else str(data_dir),
        "download": download,
        "meta": checkpoint_meta(dataset, config.model_name, config.to_dict()),
        # Workers write events and read a checkpoint to resume from at these driver
        # paths: right on one machine or a shared file system. On a cluster without
        # one, events land on rank 0's node and resuming relies on Ray's storage.
        "logdir": str(out_dir.resolve() / "tensorboard"),
        "resume": str(checkpoint.resolve()) if checkpoint.exists() else None,
        # Sent with the job (Ray's object store), so workers need no shared disk for them.
        "masks": masks,
        "init_weights": init_weights,
    }
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=params,
        torch_config=TorchConfig(backend=_backend(gpus_per_worker)),
        scaling_config=_scaling(workers, gpus_per_worker),
        run_config=_run_config(out_dir, storage),
    )
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as error:
        raise RuntimeError(f"distributed training failed: {_one_line(error)}") from error
    if result.error is not None:  # fit() raises it today; the Result still carries it
        raise RuntimeError(f"distributed training failed: {_one_line(result.error)}")
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as directory:
            tmp = checkpoint.with_name(checkpoint.name + ".tmp")
            shutil.copyfile(Path(directory) / CHECKPOINT_NAME, tmp)
            tmp.replace(checkpoint)
    elif not checkpoint.exists():
        raise RuntimeError("distributed training reported no checkpoint")


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
    model = _initial_model(config, dataset, params["init_weights"])
    method = build_method(config.method, **config.method_options())
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
            _with_masks(dataset.train, params["masks"]),
            config=config.loop_config(monitor_eps=config.attack_eps),
            test=dataset.test,
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
