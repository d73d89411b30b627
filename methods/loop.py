"""The one training loop every method runs in.

A method supplies the loss (``methods.training``); this loop owns everything else:
seeded shuffling, optimizer and schedule, device placement, per-epoch metrics,
TensorBoard scalars, checkpoints that resume an interrupted run, a progress bar,
and a stop with a clear message when the loss stops being finite.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from methods.attacks import PGD
from methods.data import ImageSplit
from methods.evaluate import correct_under
from methods.training import TrainingMethod

__all__ = [
    "EpochMetrics",
    "LoopConfig",
    "NonFiniteLossError",
    "fit",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "limelight-checkpoint/1"


@dataclass(frozen=True)
class LoopConfig:
    """Optimization settings shared by all methods."""

    epochs: int = 30
    batch_size: int = 128
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # SGD only (Nesterov)
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"  # stepped per batch
    seed: int = 0
    #: eps of the per-epoch robust accuracy on the test split (PGD-10); None skips it.
    monitor_eps: float | None = None
    #: test images used for the per-epoch metrics (the final evaluation uses all).
    monitor_samples: int = 512
    #: robust accuracy every this many epochs (and at the last); None: ~10 points a run.
    #: On digits a PGD-10 pass costs as much as an ERM epoch, so every epoch would
    #: double ERM's time.
    monitor_every: int | None = None


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # 1-based, epochs completed
    loss: float  # mean training loss over the epoch
    train_acc: float  # on the inputs the loss trains on (adversarial ones for AT)
    test_acc: float | None
    test_robust_acc: float | None  # PGD-10 at monitor_eps
    seconds: float  # wall time of the training part of the epoch
    terms: dict[str, float] = field(default_factory=dict)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} requested but CUDA is not available; use 'cpu' or 'auto'"
        )
    return torch.device(name)


def _optimizer(model: nn.Module, config: LoopConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=True,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adam":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; valid: sgd, adam")


def _scheduler(
    optimizer: torch.optim.Optimizer, config: LoopConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.25
        )
    if config.schedule == "constant":
        return None
    raise ValueError(f"unknown schedule {config.schedule!r}; valid: cosine, onecycle, constant")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write atomically (temp file, then rename): an interrupted save never leaves a
    truncated checkpoint where a good one stood."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a limelight checkpoint with ``weights_only=True`` (no code is unpickled).

    Raises ``FileNotFoundError`` when missing, ``ValueError`` when unreadable or not ours.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a corrupt file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path} is not a readable checkpoint ({reason})") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a limelight checkpoint (no '{CHECKPOINT_FORMAT}' tag)")
    return state


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardedBatchSampler(Sampler[list[int]]):
    """Seeded global batches of ``batch_size``, each split evenly across ranks.

    Every rank draws the same permutation and takes its slice of each global batch, so
    N DDP workers take exactly the steps one process takes on whole batches (the mean
    of equal-sized shard means is the batch mean), which is what lets the inline and
    the distributed path reach the same weights on the same seed.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        generator: torch.Generator | None = None,
        drop_last: bool = True,
    ) -> None:
        self.n, self.batch_size = n, batch_size
        self.rank, self.world_size = rank, world_size
        self.generator = generator
        self.drop_last = drop_last

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator)
        for b in range(len(self)):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield batch.tensor_split(self.world_size)[self.rank].tolist()


def _epoch_seed(seed: int, epoch: int) -> int:
    # Each epoch reseeds from (seed, epoch), so a resumed run draws the same shuffles,
    # dropout masks and attack starts as an uninterrupted one.
    return seed * 1_000_003 + epoch


def _monitor(
    model: nn.Module, test: ImageSplit, config: LoopConfig, device: torch.device, epoch: int
) -> tuple[float, float | None]:
    images, labels = test.tensors(slice(0, config.monitor_samples))
    kw = {"device": device, "seed": config.seed, "batch_size": 256}
    clean = correct_under(model, images, labels, None, **kw).float().mean().item()
    robust = None
    every = config.monitor_every or max(1, config.epochs // 10)
    if config.monitor_eps and (epoch % every == 0 or epoch == config.epochs):
        attack = PGD(config.monitor_eps, steps=10)
        robust = correct_under(model, images, labels, attack, **kw).float().mean().item()
    return clean, robust


def fit(
    model: nn.Module,
    method: TrainingMethod,
    train: ImageSplit,
    *,
    config: LoopConfig,
    test: ImageSplit | None = None,
    device: str | torch.device = "auto",
    logdir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    on_epoch_end: Callable[[EpochMetrics], None] | None = None,
    wrap_model: Callable[[nn.Module], nn.Module] | None = None,
    monitor_name: str = "test",
) -> list[EpochMetrics]:
    """Train ``model`` with ``method``'s loss on ``train``.

    Under ``torch.distributed`` (e.g. a Ray Train worker) every rank takes its shard of
    the same seeded global batches, epoch metrics are summed over ranks, and only rank
    0 writes checkpoints and TensorBoard events.

    Args:
        config: optimization settings (``LoopConfig``).
        test: split for the per-epoch clean and robust accuracy; None skips them.
        monitor_name: what ``test`` is (``"val"`` for a held-out validation split), in
            log lines and TensorBoard tags (``accuracy/val_clean``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        logdir: TensorBoard event files go here when given.
        checkpoint: written after every epoch (model, optimizer, schedule, epoch,
            history, ``meta``); if it already exists the run resumes from it.
        meta: JSON-like description saved in the checkpoint (data set, model, config).
        on_epoch_end: called with each epoch's metrics (for reporting to Ray).
        wrap_model: wraps the model for the training forward passes (e.g. DDP via
            ``ray.train.torch.prepare_model``); checkpoints hold the unwrapped weights.

    Returns:
        The metrics of every epoch, resumed ones included.

    Raises:
        NonFiniteLossError: the loss became NaN or inf (message names epoch and step).
    """
    device = resolve_device(device)
    model.to(device)
    if method.needs_masks and not train.has_masks:
        raise ValueError(f"method {method.name!r} needs per-image masks; this split has none")
    rank, world_size = _rank_and_world()
    if world_size > 1 and len(train) < config.batch_size:
        raise ValueError(
            f"{len(train)} training images are fewer than one batch of {config.batch_size}: "
            "the workers' shards would differ in size"
        )
    if config.batch_size % world_size:
        raise ValueError(
            f"batch_size {config.batch_size} must be a multiple of the {world_size} workers"
        )
    loader_generator = torch.Generator()
    loader = DataLoader(
        train,
        batch_sampler=ShardedBatchSampler(
            len(train),
            config.batch_size,
            rank=rank,
            world_size=world_size,
            generator=loader_generator,
            # BatchNorm cannot train on a final batch of one; dropping the ragged tail
            # of a reshuffled epoch loses nothing over a run.
            drop_last=len(train) >= config.batch_size,
        ),
        pin_memory=device.type == "cuda",
    )
    net = wrap_model(model) if wrap_model is not None else model
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config, total_steps=config.epochs * len(loader))
    history: list[EpochMetrics] = []
    start_epoch = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = [EpochMetrics(**m) for m in state.get("history", [])]
        start_epoch = int(state["epoch"])
        _restore_schedule(scheduler, state, config.epochs * len(loader), start_epoch * len(loader))
        log.info("resuming from %s at epoch %d of %d", checkpoint, start_epoch, config.epochs)

    writer = None
    if logdir is not None and rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a crashed run wrote after its last checkpoint.
        writer = SummaryWriter(str(logdir), purge_step=start_epoch + 1 if start_epoch else None)
    bar = tqdm(
        total=config.epochs * len(loader),
        initial=start_epoch * len(loader),
        desc=f"train {method.name}",
        unit="step",
        disable=None if rank == 0 else True,
        dynamic_ncols=True,
    )
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            torch.manual_seed(_epoch_seed(config.seed, epoch))
            loader_generator.manual_seed(_epoch_seed(config.seed, epoch))
            metrics = _train_epoch(net, method, loader, optimizer, scheduler, device, epoch, bar)
            if test is not None and rank == 0:  # the same numbers on every rank: once
                clean, robust = _monitor(model, test, config, device, epoch)
                metrics = replace(metrics, test_acc=clean, test_robust_acc=robust)
            history.append(metrics)
            _log_epoch(metrics, writer, optimizer, monitor_name)
            if checkpoint is not None and rank == 0:
                save_checkpoint(
                    checkpoint,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": None if scheduler is None else scheduler.state_dict(),
                        "total_steps": config.epochs * len(loader),
                        "epoch": epoch,
                        "history": [asdict(m) for m in history],
                        "meta": meta or {},
                    },
                )
            if on_epoch_end is not None:
                on_epoch_end(metrics)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return history


def _finite_everywhere(loss_value: float, device: torch.device) -> bool:
    """Whether the loss is finite on every rank: all ranks must stop together, or the
    others wait forever in the next gradient all-reduce."""
    finite = math.isfinite(loss_value)
    if _rank_and_world()[1] == 1:
        return finite
    flag = torch.tensor(0.0 if finite else 1.0, device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return flag.item() == 0.0


def _restore_schedule(
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    state: dict[str, Any],
    total_steps: int,
    done_steps: int,
) -> None:
    """Resume the learning-rate schedule. A run extended to more epochs gets the
    schedule of its new length, advanced to where the run stands (the saved one would
    end early: OneCycleLR raises past its total, cosine climbs back up)."""
    if scheduler is None or state.get("scheduler") is None:
        return
    if state.get("total_steps") == total_steps:
        scheduler.load_state_dict(state["scheduler"])
        return
    # The optimizer's lr was restored to where the old schedule ended (0 for cosine),
    # and CosineAnnealingLR's chainable form scales the current lr, so replaying from
    # there kept it at 0. Replay from the lr a fresh schedule starts at instead.
    for group, base_lr in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base_lr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "step() before optimizer.step()": intended here
        for _ in range(done_steps):
            scheduler.step()


def _train_epoch(
    model: nn.Module,
    method: TrainingMethod,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    epoch: int,
    bar: tqdm,
) -> EpochMetrics:
    model.train()
    started = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    term_sums: dict[str, torch.Tensor] = {}
    seen = 0
    for step, batch in enumerate(loader, start=1):
        images, labels = (
            batch[0].to(device, non_blocking=True),
            batch[1].to(device, non_blocking=True),
        )
        masks = batch[2].to(device, non_blocking=True) if len(batch) > 2 else None
        out = method.loss(model, images, labels, masks)
        loss_value = out.loss.item()  # one sync per step; needed to stop on NaN at once
        if not _finite_everywhere(loss_value, device):
            raise NonFiniteLossError(
                f"{method.name} loss became {loss_value} at epoch {epoch}, step {step}; "
                "lower the learning rate or the regularization weight"
            )
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = len(labels)
        seen += n
        loss_sum += out.loss.detach() * n
        correct += (out.logits.detach().argmax(1) == labels).sum()
        for name, value in out.terms.items():
            term_sums[name] = term_sums.get(name, torch.zeros((), device=device)) + value * n
        bar.update(1)
        bar.set_postfix(epoch=epoch, loss=f"{loss_value:.3f}", refresh=False)
    names = sorted(term_sums)
    totals = torch.stack(
        [loss_sum, correct, torch.tensor(float(seen), device=device)]
        + [term_sums[name] for name in names]
    )
    if _rank_and_world()[1] > 1:
        torch.distributed.all_reduce(totals)  # metrics of the whole global batch
    loss_total, correct_total, seen_total, *term_totals = totals.tolist()
    return EpochMetrics(
        epoch=epoch,
        loss=loss_total / seen_total,
        train_acc=correct_total / seen_total,
        test_acc=None,
        test_robust_acc=None,
        seconds=time.perf_counter() - started,
        terms={name: value / seen_total for name, value in zip(names, term_totals, strict=True)},
    )


def _log_epoch(
    metrics: EpochMetrics, writer: Any, optimizer: torch.optim.Optimizer, split: str
) -> None:
    log.info(
        "epoch %d: loss %.4f, train acc %.4f, %s acc %s, %s PGD acc %s (%.2fs)",
        metrics.epoch,
        metrics.loss,
        metrics.train_acc,
        split,
        _fmt(metrics.test_acc),
        split,
        _fmt(metrics.test_robust_acc),
        metrics.seconds,
    )
    if writer is None:
        return
    step = metrics.epoch
    writer.add_scalar("loss/train", metrics.loss, step)
    writer.add_scalar("accuracy/train", metrics.train_acc, step)
    if metrics.test_acc is not None:
        writer.add_scalar(f"accuracy/{split}_clean", metrics.test_acc, step)
    if metrics.test_robust_acc is not None:
        writer.add_scalar(f"accuracy/{split}_pgd", metrics.test_robust_acc, step)
    for name, value in metrics.terms.items():
        writer.add_scalar(f"loss_terms/{name}", value, step)
    writer.add_scalar("lr", optimizer.param_groups[0]["lr"], step)
    writer.add_scalar("time/epoch_seconds", metrics.seconds, step)
    writer.flush()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
