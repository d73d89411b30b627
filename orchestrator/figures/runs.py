"""LGR run directories: the model before refinement and after the last round, explained
again on a few training images and drawn side by side.

What a run directory stores does not allow the "after" half without computing: round
k explains the model *entering* it (the mask store holds those explanations, keyed by
that checkpoint's hash), so the last round's model is never explained on training
images, and its TensorBoard overlays are pictures of test images, not data. Both
models are therefore explained here with ``methods.lime`` and the run's own settings
(``lime_samples``, its seed, its ``explain_label``): the "before" half is then the
very explanation round 1 flagged from (LIME seeds each image's samples by its index),
and the two halves share segments and perturbations, so they differ only by the model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from methods.data import Dataset
from methods.lime import SPURIOUS_STRATEGIES, Explanation, LimeExplainer, LimeSettings
from methods.lime import flagged_mask as lime_flagged_mask
from methods.training.lgr import LGROptions
from orchestrator.checkpoints import read_checkpoint, restore_model
from orchestrator.config import TrainConfig
from orchestrator.figures.overlays import refinement_figure
from orchestrator.layout import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    PRETRAIN_DIR,
    ROUND_PATTERN,
    round_dir,
)

__all__ = ["LgrRun", "Refinement", "explain_refinement", "read_lgr_run", "refinement_plot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LgrRun:
    """An LGR run directory: its config, the model before refinement (the ERM pretrain
    or ``start_checkpoint``) and the last finished round's model."""

    path: Path
    config: TrainConfig
    before: Path
    after: Path
    rounds: int  # finished rounds (the last one's model is ``after``)

    @property
    def options(self) -> LGROptions:
        assert isinstance(self.config.options, LGROptions), self.config.method
        return self.config.options


def read_lgr_run(path: str | Path) -> LgrRun:
    """The run at ``path``; ``ValueError("run: ...")`` naming what is missing when it is
    not an LGR run directory (``limelight train --method lgr`` or an LGR sweep trial's
    ``runs/<trial>``) with a finished round."""
    path = Path(path)
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise ValueError(
            f"run: {path} is not a run directory (no {CONFIG_NAME}); give the folder "
            "limelight train --method lgr wrote (STORAGE/OUT) or a sweep's NAME/runs/<trial>"
        )
    try:
        values = json.loads(config_file.read_text())
        config = TrainConfig.from_dict(values)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"run: {config_file} is unreadable: {_one_line(error)}") from error
    if config.method != "lgr":
        raise ValueError(
            f"run: {path} is a {config.method!r} run; explanations need an lgr run "
            "(one with pretrain/ or a start checkpoint and round<k>/ folders)"
        )
    start = config.options.start_checkpoint
    before = Path(start) if start is not None else path / PRETRAIN_DIR / CHECKPOINT_NAME
    if not before.is_file():
        raise ValueError(f"run: the model before refinement is missing: {before}")
    rounds = sorted(
        int(match.group(1))
        for child in path.iterdir()
        if (match := ROUND_PATTERN.fullmatch(child.name)) and (child / CHECKPOINT_NAME).is_file()
    )
    if not rounds:
        raise ValueError(f"run: {path} has no finished round (no round<k>/{CHECKPOINT_NAME})")
    after = round_dir(path, rounds[-1]) / CHECKPOINT_NAME
    return LgrRun(path=path, config=config, before=before, after=after, rounds=rounds[-1])


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@dataclass(frozen=True)
class Refinement:
    """Training images (N, C, H, W), their labels and indices, each model's explanation,
    and the pixels round 1 flagged (N, H, W; None where the strategy cannot be redone
    from one explanation) with the strategies they show."""

    images: np.ndarray
    labels: list[int]
    indices: list[int]
    before: list[Explanation]
    after: list[Explanation]
    flags: np.ndarray | None
    flagged_by: tuple[str, ...]


def explain_refinement(
    run: LgrRun, dataset: Dataset, *, count: int = 4, num_samples: int | None = None
) -> Refinement:
    """Explain the first ``count`` training images (those every round explains) with
    the model before refinement and after the last round, using the run's LIME settings
    (``num_samples`` overrides its ``lime_samples``)."""
    options = run.options
    indices = list(range(min(count, len(dataset.train))))
    images, labels = dataset.train.tensors(torch.tensor(indices))
    settings = LimeSettings(
        num_samples=num_samples or options.lime_samples,
        seed=run.config.seed,
        sampler=options.lime_sampler,
    )
    settings = settings.resolved(min(dataset.input_shape[1:]))  # as explain_split does
    # "predicted": each model explains its own class, as in the rounds.
    targets = labels if options.explain_label == "true" else None
    explained = []
    for checkpoint in (run.before, run.after):
        model = restore_model(read_checkpoint(checkpoint)).eval()
        explained.append(LimeExplainer(model).explain(images, targets, settings, indices=indices))
    flags, flagged_by = _round_one_flags(run, dataset, indices, explained[0])
    return Refinement(
        images=images.numpy(),
        labels=[int(v) for v in labels],
        indices=indices,
        before=explained[0],
        after=explained[1],
        flags=flags,
        flagged_by=flagged_by,
    )


def _round_one_flags(
    run: LgrRun, dataset: Dataset, indices: list[int], before: list[Explanation]
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """What round 1 flagged on these images, where one explanation (or the data set's
    annotation) determines it: not ``unstable`` (needs re-explanations), ``gradient``
    or a ``global_mask_share`` (needs the whole explained set)."""
    options = run.options
    if options.global_mask_share is not None:
        log.info("flags not drawn: a global mask needs every explained image")
        return None, ()
    shown = tuple(s for s in options.spurious if s in (*SPURIOUS_STRATEGIES, "annotated"))
    if skipped := [s for s in options.spurious if s not in shown]:
        log.info("flags of %s not drawn: they need more than one explanation", skipped)
    if not shown:
        return None, ()
    height, width = dataset.input_shape[1:]
    flags = np.zeros((len(indices), height, width), dtype=bool)
    # Round 1 explained only the first explain_fraction of the training images.
    explained = max(1, round(options.explain_fraction * len(dataset.train)))
    for row, (index, explanation) in enumerate(zip(indices, before, strict=True)):
        for strategy in shown:
            if strategy == "annotated":
                if dataset.train.masks is not None:
                    flags[row] |= dataset.train.masks[index, 0].numpy().astype(bool)
            elif index < explained:
                flags[row] |= lime_flagged_mask(
                    explanation,
                    strategy,
                    options.mask_ratio,
                    threshold=options.irrelevant_threshold,
                )
    return flags, shown


def refinement_plot(run: LgrRun, refinement: Refinement) -> Figure:
    """The before/after figure of ``explain_refinement``'s result."""
    rounds = f"{run.rounds} round" + ("s" if run.rounds != 1 else "")
    true = run.options.explain_label == "true"
    target = "the true class" if true else "each model's predicted class"
    subtitle = f"{run.config.dataset} training images"
    if refinement.flags is not None:
        strategies = ", ".join(refinement.flagged_by)
        subtitle += f"; red: the pixels round 1 flagged ({strategies})"
    return refinement_figure(
        refinement.images,
        refinement.labels,
        refinement.before,
        refinement.after,
        flags=refinement.flags,
        after_title=f"after round {run.rounds}",
        title=f"{run.path.resolve().name}: LIME weights for {target}, before and after "
        f"{rounds} of LGR\n{subtitle}",
    )
