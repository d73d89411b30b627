"""LIME-guided refinement: the rounds around the LGR loss.

Start from a trained checkpoint (or pretrain with ERM), then for each round: explain
the training images with distributed LIME (the mask store caches them), flag the
superpixels the ``spurious`` strategy picks, refine with ``methods.training.LGR``
on (image, label, mask), and explain again with the refined model.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch

from methods.data import Dataset, ImageSplit
from methods.lime import (
    SPURIOUS_STRATEGIES,
    Explanation,
    LimeExplainer,
    LimeSettings,
    flagged_segments,
    segment_means,
    top_segments,
    unstable_segments,
)
from methods.loop import EpochMetrics, save_checkpoint
from methods.saliency import input_saliency
from methods.training.lgr import LGROptions
from orchestrator.checkpoints import checkpoint_meta, read_checkpoint, restore_model
from orchestrator.config import EvalConfig, RunSettings, TrainConfig
from orchestrator.explain.store import MaskStore
from orchestrator.layout import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    PRETRAIN_DIR,
    TENSORBOARD_DIR,
    round_dir,
)
from orchestrator.run.evaluation import write_json
from orchestrator.run.job import evaluated_result, train_job
from orchestrator.run.result import OnEpoch, RunResult

__all__ = ["flag_masks", "run_lgr"]

log = logging.getLogger(__name__)

#: Refinement rounds run at this fraction of --lr (see _round_config). It does not by
#: itself keep a round from collapsing: the penalty's scale does (LGROptions'
#: penalty_reduction, docs/methods.md "LGR: the penalty's scale"); at the full rate even
#: the flagged-pixel penalty collapsed a fine-tune (digits_shortcut annotated, seed 2).
REFINE_LR_SCALE = 0.2
#: The light evaluation after each round (the full one runs after the last). Without
#: the masked-accuracy curves: with them every round explained its 512 test images with
#: LIME again, 53 of the 94 s of a two-round digits_shortcut run.
ROUND_EVAL = EvalConfig(
    attacks=("pgd",),
    eval_mode="pgd",
    audit_probes=False,
    pgd_steps=10,
    limit=512,
    faithfulness=False,
)
#: Test images whose LIME overlays go to TensorBoard each round.
OVERLAY_IMAGES = 4


def _lgr(config: TrainConfig) -> LGROptions:
    assert isinstance(config.options, LGROptions), config.method
    return config.options


def flag_masks(
    config: TrainConfig, dataset: Dataset, checkpoint: Path, *, storage: str, actors: int
) -> torch.Tensor:
    """(N, 1, H, W) bool masks of the flagged pixels of every training image.

    Each ``spurious`` strategy flags its own share; a union flags what any member
    flags. ``annotated`` takes the data set's ground truth; the others explain the first
    ``explain_fraction`` of the training set through the actors and the mask store
    (``unstable`` ``reexplanations`` times, each with its own seed; a rerun reads them
    back) and flag from the weights or, for ``gradient``, from the model's input
    gradients per superpixel. Images left unexplained get an empty mask (no penalty,
    no masking). With ``global_mask_share`` every image gets one global mask instead:
    the pixels flagged in more than that share of the flagged images.
    """
    options = _lgr(config)
    train = dataset.train
    masks = torch.zeros(len(train), 1, *dataset.input_shape[1:], dtype=torch.bool)
    if "annotated" in options.spurious:
        masks |= train.masks.bool()
    limit = len(train)
    if options.uses_lime:
        limit = max(1, round(options.explain_fraction * len(train)))
        runs = _explanations(config, dataset, checkpoint, storage, actors, limit)
        gradients = None
        if "gradient" in options.spurious:
            gradients = _segment_gradients(checkpoint, dataset, runs[0], config.seed)
        for index, explanation in runs[0].items():
            flagged = _flagged_segments(options, index, runs, gradients)
            masks[index, 0] |= torch.from_numpy(np.isin(explanation.segments, flagged))
    if options.global_mask_share is not None:
        share = masks[:limit].float().mean(dim=0)
        masks[:] = share > options.global_mask_share
    return masks


def _explanations(
    config: TrainConfig, dataset: Dataset, checkpoint: Path, storage: str, actors: int, limit: int
) -> list[dict[int, Explanation]]:
    """LIME explanations of the first ``limit`` training images: one run, or one per
    re-explanation seed for ``unstable`` (each its own key in the mask store)."""
    from orchestrator.explain.actors import explain_split

    options = _lgr(config)
    count = options.reexplanations if "unstable" in options.spurious else 1
    runs = []
    for run_ in range(count):
        # Seeds far apart: image i's masks are drawn from (seed, i).
        settings = LimeSettings(
            num_samples=options.lime_samples,
            seed=config.seed + 7919 * run_,
            sampler=options.lime_sampler,
        )
        report = explain_split(
            str(checkpoint),
            dataset,
            split="train",
            settings=settings,
            limit=limit,
            actors=actors,
            storage=storage,
            explain_label=options.explain_label,
        )
        log.info(
            "explained %d training images (%d from the store), %.1f images/s",
            report.requested,
            report.reused,
            report.images_per_s,
        )
        stored = MaskStore(storage, report.key).explanations()
        runs.append({i: e for i, e in stored.items() if i < limit})
    return runs


def _flagged_segments(
    options: LGROptions,
    index: int,
    runs: list[dict[int, Explanation]],
    gradients: dict[int, np.ndarray] | None,
) -> np.ndarray:
    explanation = runs[0][index]
    flagged = []
    for strategy in options.spurious:
        if strategy in SPURIOUS_STRATEGIES:
            flagged.append(
                flagged_segments(
                    explanation.weights,
                    strategy,
                    options.mask_ratio,
                    threshold=options.irrelevant_threshold,
                )
            )
        elif strategy == "unstable":
            weights = np.stack([run[index].weights for run in runs])
            flagged.append(unstable_segments(weights, options.mask_ratio))
        elif strategy == "gradient":
            flagged.append(top_segments(gradients[index], options.mask_ratio))
    return np.concatenate(flagged) if flagged else np.array([], dtype=np.int64)


def _segment_gradients(
    checkpoint: Path, dataset: Dataset, explanations: dict[int, Explanation], seed: int
) -> dict[int, np.ndarray]:
    """Image index -> mean |d log p_y / dx| (averaged over channels) of each superpixel."""
    model = restore_model(read_checkpoint(checkpoint)).eval()
    indices = sorted(explanations)
    scores = {}
    for start in range(0, len(indices), 256):
        batch = indices[start : start + 256]
        images, labels = dataset.train.tensors(torch.tensor(batch))
        saliency = input_saliency(model, images, labels, absolute=True, target="log_prob")
        for i, index in enumerate(batch):
            segments = explanations[index].segments
            scores[index] = segment_means(saliency[i].numpy(), segments)
    return scores


def _starting_checkpoint(
    config: TrainConfig,
    dataset: Dataset,
    run_dir: Path,
    settings: RunSettings,
    validation: ImageSplit | None,
) -> Path:
    options = _lgr(config)
    if options.start_checkpoint is not None:
        return Path(options.start_checkpoint)
    pretrain = dataclasses.replace(
        config, method="erm", epochs=options.pretrain_epochs, options=None
    ).resolved(dataset.default_eps)
    result = train_job(
        pretrain,
        dataset,
        run_dir / PRETRAIN_DIR,
        settings,
        eval_config=ROUND_EVAL,
        validation=validation,
    )
    return result.checkpoint


def _write_flags(writer, dataset: Dataset, masks: torch.Tensor, config, round_: int) -> None:
    from orchestrator.figures.overlays import flags_figure

    flagged = torch.nonzero(masks.flatten(1).any(1)).flatten()[:OVERLAY_IMAGES]
    if len(flagged) == 0:
        return
    images, _ = dataset.train.tensors(flagged)
    strategies = ",".join(_lgr(config).spurious)
    figure = flags_figure(
        images.numpy(), masks[flagged, 0].numpy(), title=f"round {round_}: {strategies}"
    )
    writer.add_figure("lgr/flagged_training_images", figure, global_step=round_)


def _write_overlays(writer, model, dataset: Dataset, config: TrainConfig, round_: int) -> None:
    from orchestrator.figures.overlays import explanation_figure

    images, labels = dataset.test.tensors(slice(0, OVERLAY_IMAGES))
    options = _lgr(config)
    settings = LimeSettings(
        num_samples=options.lime_samples, seed=config.seed, sampler=options.lime_sampler
    )
    explanations = LimeExplainer(model).explain(images, labels, settings)
    for i, explanation in enumerate(explanations):
        figure = explanation_figure(images[i].numpy(), explanation, title=f"round {round_}")
        writer.add_figure(f"lime/test_image_{i}", figure, global_step=round_)


def run_lgr(
    config: TrainConfig,
    dataset: Dataset,
    run_dir: Path,
    settings: RunSettings,
    *,
    eval_config: EvalConfig,
    on_epoch: OnEpoch | None = None,
    validation: ImageSplit | None = None,
) -> RunResult:
    """Run the rounds of LIME-guided refinement for the resolved ``config``.

    Each round is one training job (``train_job`` with the same ``settings``: inline,
    or a TorchTrainer with ``settings.workers``) that starts from the previous round's
    weights with the round's masks. ``run_dir`` gets ``pretrain/`` (when no start
    checkpoint), ``round<k>/`` per round, ``checkpoint.pt`` (the last round's model,
    recorded with this LGR config), ``tensorboard/`` (per-round metrics and LIME
    overlays of fixed test images) and ``config.json`` / ``eval.json``. Run again, a
    finished run reports its results again and an interrupted one continues from its
    last finished epoch. ``on_epoch`` sees every refinement epoch, numbered across rounds.
    """
    from torch.utils.tensorboard import SummaryWriter

    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG_NAME, config.to_dict())
    if _lgr(config).uses_lime:  # only LIME needs Ray
        from orchestrator.cluster import connect

        connect(settings.address)
    current = _starting_checkpoint(config, dataset, run_dir, settings, validation)
    history: list[EpochMetrics] = []
    with SummaryWriter(str(run_dir / TENSORBOARD_DIR)) as writer:
        for round_ in range(1, _lgr(config).rounds + 1):
            masks = flag_masks(
                config, dataset, current, storage=settings.storage, actors=settings.actors
            )
            result = train_job(
                _round_config(config),
                dataset,
                round_dir(run_dir, round_),
                settings,
                eval_config=ROUND_EVAL,
                on_epoch=_numbered(on_epoch, offset=len(history)),
                masks=masks,
                init_weights=read_checkpoint(current)["model"],
                validation=validation,
            )
            history += [
                dataclasses.replace(m, epoch=len(history) + i)
                for i, m in enumerate(result.history, start=1)
            ]
            current = result.checkpoint
            _log_round(writer, result.history[-1], masks.float().mean().item(), round_)
            _write_flags(writer, dataset, masks, config, round_)
            model = restore_model(read_checkpoint(current))
            _write_overlays(writer, model, dataset, config, round_)
    final = run_dir / CHECKPOINT_NAME
    _save_as_lgr(current, final, config, dataset)
    return evaluated_result(
        model,
        dataset,
        config,
        final,
        history,
        eval_config,
        settings.device,
        started,
        validation=validation,
    )


def _numbered(on_epoch: OnEpoch | None, offset: int) -> OnEpoch | None:
    if on_epoch is None:
        return None
    return lambda metrics: on_epoch(dataclasses.replace(metrics, epoch=offset + metrics.epoch))


def _save_as_lgr(round_checkpoint: Path, final: Path, config: TrainConfig, dataset) -> None:
    """The last round's model, recorded with the LGR config that produced it (the round
    records its own lowered lr), so ``limelight evaluate`` and resume checks see the run
    the user asked for."""
    state = read_checkpoint(round_checkpoint)
    state["meta"] = checkpoint_meta(dataset, config.model_name, config.to_dict())
    save_checkpoint(final, {k: v for k, v in state.items() if k != "format"})


def _round_config(config: TrainConfig) -> TrainConfig:
    # A round fine-tunes a trained model: at the full learning rate the first steps on
    # feature-masked inputs wreck it (digits_shortcut, lr 0.05: test accuracy 46% ->
    # 15% after one epoch; at 0.01 it rises to 60-71% as the shortcut is unlearned).
    # A lower rate still (x0.05) kept the old sum penalty from collapsing but left it
    # barely trained; a warm-up only softened the collapse (docs/methods.md).
    return dataclasses.replace(config, lr=config.lr * REFINE_LR_SCALE)


def _log_round(writer, metrics, flagged: float, round_: int) -> None:
    log.info(
        "LGR round %d: loss %.4f, test acc %s, test PGD acc %s, %.1f%% pixels flagged",
        round_,
        metrics.loss,
        metrics.test_acc,
        metrics.test_robust_acc,
        100 * flagged,
    )
    writer.add_scalar("lgr/flagged_pixel_share", flagged, round_)
    writer.add_scalar("lgr/train_loss", metrics.loss, round_)
    if metrics.test_acc is not None:
        writer.add_scalar("lgr/test_clean", metrics.test_acc, round_)
    if metrics.test_robust_acc is not None:
        writer.add_scalar("lgr/test_pgd", metrics.test_robust_acc, round_)
