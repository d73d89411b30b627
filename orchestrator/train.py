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
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from methods.attacks import model_mode
from methods.data import Dataset, ImageSplit, load_dataset, split_validation
from methods.evaluate import DEFAULT_PROBES, EvalResult, evaluate
from methods.lime import LimeSettings
from methods.loop import EpochMetrics, LoopConfig, fit, resolve_device
from methods.models import build_model
from methods.training import TrainingMethod
from orchestrator.checkpoints import (
    CheckpointError,
    checkpoint_meta,
    read_checkpoint,
    restore_model,
)
from orchestrator.config import ConfigError, EvalConfig, RunSettings, TrainConfig

__all__ = [
    "RunResult",
    "check_resumable",
    "eval_grid",
    "evaluate_split",
    "train_job",
    "train_worker",
]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
CONFIG_NAME = "config.json"

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

    @property
    def run_dir(self) -> Path:
        return self.checkpoint.parent


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


def eval_grid(dataset: Dataset, attack_eps: float, requested: tuple[float, ...] | None) -> tuple:
    """The data set's eps grid plus the training eps, sorted (or exactly what was asked)."""
    if requested is not None:
        return tuple(requested)
    return tuple(sorted({*dataset.eval_eps, attack_eps} - {0.0}))


def train_job(
    config: TrainConfig,
    dataset: Dataset,
    run_dir: Path,
    settings: RunSettings,
    *,
    eval_config: EvalConfig,
    on_epoch: OnEpoch | None = None,
    masks: torch.Tensor | None = None,
    init_weights: dict[str, torch.Tensor] | None = None,
    validation: ImageSplit | None = None,
) -> RunResult:
    """Train the resolved ``config`` on ``dataset`` in ``run_dir``, then evaluate.

    ``run_dir`` receives ``checkpoint.pt`` (resumed if present), ``tensorboard/``,
    ``config.json`` and ``eval.json``. One worker without GPUs trains inline (no Ray);
    otherwise a ``TorchTrainer`` with ``settings.workers`` DDP workers trains (its Ray
    Train storage is ``run_dir/ray``) and the driver evaluates the final checkpoint.

    Args:
        masks: (N, 1, H, W) bool flagged pixels of the training images (LGR); they
            travel to the workers with the job.
        init_weights: a model state dict to start from (an LGR round refines the
            previous round's model) when ``run_dir`` holds no checkpoint to resume.
        validation: the held-out split (``config.val_fraction``; ``dataset.train`` is
            then the rest): the per-epoch metrics are on it, and it is evaluated too.

    Raises:
        RuntimeError: the distributed run failed (one line naming the first error).
    """
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG_NAME, config.to_dict())
    checkpoint = run_dir / CHECKPOINT_NAME
    if settings.distributed:
        _fit_distributed(config, dataset, run_dir, settings, on_epoch, masks, init_weights)
        state = read_checkpoint(checkpoint)
        model = restore_model(state)
        history = [EpochMetrics(**m) for m in state["history"]]
    else:
        model, history = _fit_inline(
            config, dataset, run_dir, settings.device, on_epoch, masks, init_weights, validation
        )
    return evaluated_result(
        model,
        dataset,
        config,
        checkpoint,
        history,
        eval_config,
        settings.device,
        started,
        validation=validation,
    )


def evaluated_result(
    model: torch.nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    checkpoint: Path,
    history: list[EpochMetrics],
    eval_config: EvalConfig,
    device: str,
    started: float,
    *,
    validation: ImageSplit | None = None,
) -> RunResult:
    """Evaluate the trained model (on the test split, and on ``validation`` when
    given), write ``eval.json`` beside its checkpoint, and return the run's result
    (``started``: its ``time.perf_counter()`` at the start)."""
    train_eps = config.attack_eps or config.monitor_eps
    lime = lime_settings(config.to_dict())
    evaluation = evaluate_split(model, dataset, eval_config, train_eps, device, lime=lime)
    on_validation = None
    record = {"checkpoint": str(checkpoint), **evaluation.to_dict()}
    if validation is not None:
        # The validation split steers the search: its objective reads the first eps (a
        # sweep's eval_eps) alone. The audit and the rest of the curve are about the test
        # numbers; on mnist5k the whole grid on validation cost 60% of the test's time.
        headline = None if eval_config.eps is None else eval_config.eps[:1]
        on_validation = evaluate_split(
            model,
            dataset,
            dataclasses.replace(eval_config, eps=headline, audit_probes=False, faithfulness=False),
            train_eps,
            device,
            split=validation,
        )
        record["validation"] = on_validation.to_dict()
    write_json(checkpoint.parent / "eval.json", record)
    return RunResult(
        config=config,
        history=history,
        evaluation=evaluation,
        checkpoint=checkpoint,
        logdir=checkpoint.parent / "tensorboard",
        wall_s=time.perf_counter() - started,
        validation=on_validation,
    )


def _build(config: TrainConfig) -> TrainingMethod:
    return config.method_class.from_options(config.options)


def _loop_config(config: TrainConfig) -> LoopConfig:
    return LoopConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=config.optimizer,  # type: ignore[arg-type]
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        schedule=config.schedule,  # type: ignore[arg-type]
        seed=config.seed,
        monitor_eps=config.monitor_eps,
        monitor_every=config.monitor_every,
    )


def _chain(*callbacks: OnEpoch | None) -> OnEpoch | None:
    present = [c for c in callbacks if c is not None]
    if not present:
        return None

    def call_all(metrics: EpochMetrics) -> None:
        for callback in present:
            callback(metrics)

    return call_all


def _fit_inline(
    config: TrainConfig,
    dataset: Dataset,
    run_dir: Path,
    device: str,
    on_epoch: OnEpoch | None,
    masks: torch.Tensor | None,
    init_weights: dict[str, torch.Tensor] | None,
    validation: ImageSplit | None,
) -> tuple[torch.nn.Module, list[EpochMetrics]]:
    model = _initial_model(config, dataset, init_weights)
    method = _build(config)
    logdir = run_dir / "tensorboard"
    history = fit(
        model,
        method,
        _with_masks(dataset.train, masks),
        config=_loop_config(config),
        test=dataset.test if validation is None else validation,
        monitor_name="test" if validation is None else "val",
        device=device,
        logdir=logdir,
        checkpoint=run_dir / CHECKPOINT_NAME,
        meta=checkpoint_meta(dataset, config.model_name, config.to_dict()),
        on_epoch_end=_chain(
            saliency_logger(method, model, dataset, logdir, config.epochs), on_epoch
        ),
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
    if not method.draws_saliency:
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
        storage_path=str(run_dir.resolve() / "ray"),
        failure_config=FailureConfig(max_failures=MAX_FAILURES),
        checkpoint_config=CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
        callbacks=callbacks,
    )


def _fit_distributed(
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

    from orchestrator.ray_setup import connect

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
        "logdir": str(run_dir.resolve() / "tensorboard"),
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
    model = _initial_model(config, dataset, params["init_weights"])
    method = _build(config)
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
            config=_loop_config(config),
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


def lime_settings(config: Mapping[str, Any]) -> LimeSettings | None:
    """For an LGR run (``config``: its flat ``TrainConfig.to_dict()``), LIME as LGR
    explained: its sample count, the run's seed. The evaluation then adds the
    masked-accuracy curve in LIME's order. None for every other method."""
    if config.get("method") != "lgr":
        return None
    return LimeSettings(num_samples=int(config["lime_samples"]), seed=int(config["seed"]))


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
