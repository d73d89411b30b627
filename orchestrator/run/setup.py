"""What the inline and the distributed fit share: the seeded model, the method, the
loop's config, the masks travelling with the data, and the saliency drawn each epoch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from methods.attacks import model_mode
from methods.data import Dataset, ImageSplit
from methods.loop import EpochMetrics, LoopConfig
from methods.models import build_model
from methods.training import TrainingMethod
from orchestrator.config import TrainConfig
from orchestrator.run.result import OnEpoch

__all__ = ["build_method", "chain", "initial_model", "loop_config", "saliency_logger", "with_masks"]


def build_method(config: TrainConfig) -> TrainingMethod:
    return config.method_class.from_options(config.options)


def loop_config(config: TrainConfig) -> LoopConfig:
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


def chain(*callbacks: OnEpoch | None) -> OnEpoch | None:
    present = [c for c in callbacks if c is not None]
    if not present:
        return None

    def call_all(metrics: EpochMetrics) -> None:
        for callback in present:
            callback(metrics)

    return call_all


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

    from orchestrator.figures.overlays import saliency_figure

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


def initial_model(
    config: TrainConfig, dataset: Dataset, init_weights: dict[str, torch.Tensor] | None
) -> torch.nn.Module:
    torch.manual_seed(config.seed)  # every rank (and a rerun) builds the same weights
    model = build_model(
        config.model_name, dataset.input_shape, dataset.num_classes, dataset.mean, dataset.std
    )
    if init_weights is not None:  # a checkpoint to resume from still wins: fit loads it
        model.load_state_dict(init_weights)
    return model


def with_masks(split: ImageSplit, masks: torch.Tensor | None) -> ImageSplit:
    return split if masks is None else ImageSplit(split.images, split.labels, masks)
