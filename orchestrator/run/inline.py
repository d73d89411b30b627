"""The inline fit: the shared loop in the calling process (one worker, no Ray).

One CPU worker needs no Ray Train overhead: a TorchTrainer inside a Tune trial costs
~20-40 s to start on 2 CPUs (docs/architecture.md, "Measured"), so inline is the
default.
"""

from __future__ import annotations

from pathlib import Path

import torch

from methods.data import Dataset, ImageSplit
from methods.loop import EpochMetrics, fit
from orchestrator.checkpoints import checkpoint_meta
from orchestrator.config import TrainConfig
from orchestrator.layout import CHECKPOINT_NAME, TENSORBOARD_DIR
from orchestrator.run.result import OnEpoch
from orchestrator.run.setup import (
    build_method,
    chain,
    initial_model,
    loop_config,
    saliency_logger,
    with_masks,
)

__all__ = ["fit_inline"]


def fit_inline(
    config: TrainConfig,
    dataset: Dataset,
    run_dir: Path,
    device: str,
    on_epoch: OnEpoch | None,
    masks: torch.Tensor | None,
    init_weights: dict[str, torch.Tensor] | None,
    validation: ImageSplit | None,
) -> tuple[torch.nn.Module, list[EpochMetrics]]:
    model = initial_model(config, dataset, init_weights)
    method = build_method(config)
    logdir = run_dir / TENSORBOARD_DIR
    history = fit(
        model,
        method,
        with_masks(dataset.train, masks),
        config=loop_config(config),
        test=dataset.test if validation is None else validation,
        monitor_name="test" if validation is None else "val",
        device=device,
        logdir=logdir,
        checkpoint=run_dir / CHECKPOINT_NAME,
        meta=checkpoint_meta(dataset, config.model_name, config.to_dict()),
        on_epoch_end=chain(
            saliency_logger(method, model, dataset, logdir, config.epochs), on_epoch
        ),
    )
    return model, history
