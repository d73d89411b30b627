"""Training and scoring each planned model: one run and one leaderboard row per model,
resuming from the rows already there (``run_shortcut``)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from methods.loop import NonFiniteLossError
from orchestrator.config import ConfigError, RunSettings
from orchestrator.layout import CHECKPOINT_NAME, round_dir
from orchestrator.leaderboard import (
    LeaderboardRow,
    append_row,
    maintain,
    read_leaderboard,
    read_trial_row,
)
from orchestrator.sweeps.shortcut.plan import (
    DATASET,
    PlannedModel,
    ShortcutPlan,
    erm_model,
    erm_trial,
    oracle_trial,
    plan_models,
)
from orchestrator.sweeps.shortcut.summary import oracle_share, percent, summarize

if TYPE_CHECKING:
    from methods.data import Dataset
    from orchestrator.run.result import RunResult

__all__ = ["ShortcutReport", "finished_trials", "run_shortcut"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- resuming


def _recorded(rows: pd.DataFrame) -> dict[str, tuple[str, dict[str, Any]]]:
    """trial_id -> (status, recorded config) of the benchmark's rows."""
    return {
        str(r["trial_id"]): (str(r["status"]), json.loads(r["config"]))
        for r in rows.to_dict("records")
    }


def _differences(model: PlannedModel, recorded: Mapping[str, Any]) -> list[str]:
    """Planned values a recorded row disagrees with (None in the plan: resolved later;
    the start checkpoint is a path under the root, which may have moved)."""
    planned = json.loads(json.dumps({**model.config.to_dict(), **model.marker()}, default=str))
    return [
        f"{key}: {recorded.get(key)!r} != {value!r}"
        for key, value in planned.items()
        if value is not None and key != "start_checkpoint" and recorded.get(key) != value
    ]


def finished_trials(plan: ShortcutPlan, models: Sequence[PlannedModel]) -> set[str]:
    """Trial ids whose row is already in the leaderboard with status ok.

    Raises ``ConfigError`` (before any work) when a row of this benchmark name was
    trained with other settings: mixing them would average different experiments.
    """
    recorded = _recorded(read_leaderboard(plan.root, plan.name))
    done = set()
    for model in models:
        if model.trial_id not in recorded:
            continue
        status, config = recorded[model.trial_id]
        differences = _differences(model, config)
        if differences:
            raise ConfigError(
                "name",
                f"benchmark {plan.name!r} under {plan.root} holds {model.trial_id} trained with "
                f"other settings ({'; '.join(sorted(differences))}); choose another --name",
            )
        if status == "ok":
            done.add(model.trial_id)
    return done


# ----------------------------------------------------------------------------- one model


def _load(dataset: str, seed: int, share: float) -> Dataset:
    """The benchmark's data set with label-coded features in ``share`` of the training
    images (``plan.DATASETS``: each loader takes a ``train_share``)."""
    if dataset == "mnist5k_decoy":
        from methods.data.mnist5k_decoy import load_mnist5k_decoy

        return load_mnist5k_decoy(seed=seed, train_share=share)
    from methods.data.digits import load_digits_shortcut

    return load_digits_shortcut(seed=seed, train_share=share)


@contextlib.contextmanager
def _train_share(share: float, dataset: str = DATASET) -> Iterator[None]:
    """While open, ``load_dataset(dataset, seed=s)`` (what ``run()`` loads) plants
    label-coded features in ``share`` of the training images.

    ``run()`` names its data set by registry name and seed only, and the registry's
    loaders always use the data set's own share (digits_shortcut 0.97, mnist5k_decoy
    1); the control (and --train-share) need another. Safe here because every run is
    inline in this process (one worker: no Ray Train worker reloads the data by name;
    LIME actors get the images).
    """
    from methods.data import registry

    original = registry._LOADERS[dataset]

    def loader(data_dir: Any, download: bool, seed: int):
        return _load(dataset, seed, share)

    registry._LOADERS[dataset] = loader
    try:
        yield
    finally:
        registry._LOADERS[dataset] = original


def _train(plan: ShortcutPlan, model: PlannedModel) -> RunResult:
    from orchestrator.run import run

    settings = RunSettings(
        storage=plan.root,
        out=str(plan.run_dir(model.trial_id).relative_to(plan.root)),
        device=plan.settings.device,
        workers=1,
        actors=plan.settings.actors,
        address=plan.settings.address,
    )
    with _train_share(model.train_share, plan.dataset):
        return run(model.config, settings, eval_config=plan.eval_config(model.seed))


def _final_flags_checkpoint(result: RunResult) -> Path:
    """The checkpoint the last round's flags were made from (``orchestrator.run.lgr``'s
    run directory: one ``round_dir`` per round; round 1 starts from ``start_checkpoint``)."""
    options = result.config.options
    if options.rounds == 1:
        return Path(options.start_checkpoint)
    return round_dir(result.run_dir, options.rounds - 1) / CHECKPOINT_NAME


def _flag_scores(
    plan: ShortcutPlan, result: RunResult, dataset: Dataset
) -> tuple[float | None, float | None]:
    """Precision and recall of the last round's flags over the images it explained.

    ``flag_masks`` reads the explanations back from the mask store (the run wrote
    them; nothing is explained again) and flags them as the round did.
    """
    from methods.shortcut import flag_precision_recall
    from orchestrator.run.lgr import flag_masks

    config = result.config
    masks = flag_masks(
        config,
        dataset,
        _final_flags_checkpoint(result),
        storage=plan.root,
        actors=plan.settings.actors,
    )
    explained = len(masks)
    if config.options.uses_lime:  # the rest carry empty masks: not a miss of the flags
        explained = max(1, round(config.options.explain_fraction * len(masks)))
    return flag_precision_recall(masks[:explained], dataset.train.masks[:explained])


def _score(plan: ShortcutPlan, model: PlannedModel, result: RunResult) -> dict[str, Any]:
    from methods.data import planted_class
    from methods.shortcut import shortcut_scores
    from orchestrator.checkpoints import read_checkpoint, restore_model

    dataset = _load(plan.dataset, model.seed, model.train_share)
    images, labels = dataset.test.tensors()
    trained = restore_model(read_checkpoint(result.checkpoint))
    scores = shortcut_scores(trained, images, labels, planted_class(dataset.test))
    values: dict[str, Any] = {
        "shortcut_follow_rate": scores.follow_rate,
        "shortcut_acc": scores.accuracy,
    }
    if model.config.method == "lgr":
        values["flag_precision"], values["flag_recall"] = _flag_scores(plan, result, dataset)
    values.update(_oracle_shares(plan, model, values))
    return values


def _oracle_shares(
    plan: ShortcutPlan, model: PlannedModel, values: Mapping[str, Any]
) -> dict[str, float | None]:
    """The row's share of its seed's oracle gain over ERM (``summary.oracle_share``),
    from the ERM and oracle rows already written (``plan_models`` trains them first);
    nothing for ERM, the control, the oracle itself, or without both rows."""
    if model.label in ("erm", "control") or model.trial_id == oracle_trial(model.seed):
        return {}
    # Two rows (the scan skips other files by their statistics), not the whole
    # benchmark's: this runs once per model.
    erm, oracle = (
        read_trial_row(plan.root, plan.name, trial)
        for trial in (erm_trial(model.seed), oracle_trial(model.seed))
    )
    if erm is None or oracle is None or erm["status"] != "ok" or oracle["status"] != "ok":
        return {}
    shares = {}
    for metric, column in (("follow", "shortcut_follow_rate"), ("acc", "shortcut_acc")):
        reference = (erm[column], oracle[column])
        shares[f"oracle_{metric}_share"] = oracle_share(*reference, values[column])
    return shares


def _row(
    plan: ShortcutPlan,
    model: PlannedModel,
    config: Mapping[str, Any],
    *,
    status: str,
    wall_s: float,
    result: RunResult | None = None,
    scores: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> LeaderboardRow:
    """The model's leaderboard row: a sweep trial's columns plus the shortcut scores."""
    from orchestrator.sweeps.rows import config_id, result_row

    return result_row(
        sweep=plan.name,
        trial_id=model.trial_id,
        config_id=config_id(model.label, model.marker()),
        method=model.config.method,
        dataset=plan.dataset,
        config={**config, **model.marker()},
        eval_eps=plan.eval_eps,
        status=status,
        wall_s=wall_s,
        evaluation=None if result is None else result.evaluation,
        history=None if result is None else result.history,
        error=error,
        checkpoint=None if result is None else str(result.checkpoint),
        logdir=None if result is None else str(result.logdir),
        **dict(scores or {}),
    )


def _describe(values: Mapping[str, Any]) -> str:
    text = (
        f"follows {100 * values['shortcut_follow_rate']:.1f}%, "
        f"acc {100 * values['shortcut_acc']:.1f}%"
    )
    if values.get("flag_recall") is not None or values.get("flag_precision") is not None:
        text += f", flags P {percent(values.get('flag_precision'))} R " + percent(
            values.get("flag_recall")
        )
    if values.get("oracle_follow_share") is not None:
        text += f", {percent(values['oracle_follow_share'])} of the oracle's follow-rate gain"
    return text


# ----------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class ShortcutReport:
    summary: pd.DataFrame  # one row per model label (``summarize``)
    trained: int
    skipped: int
    failed: int
    wall_s: float


def run_shortcut(
    plan: ShortcutPlan, *, progress: Callable[[str], None] = log.info
) -> ShortcutReport:
    """Train and score every planned model without a finished row, one row each.

    ``progress`` gets one line per model. A model whose run fails (a non-finite loss,
    a failed run) gets a row with status ``error`` and the benchmark goes on; a rerun
    tries it again. Bad input raises ``ConfigError`` before any training.
    """
    started = time.perf_counter()
    models = plan_models(plan)
    done = finished_trials(plan, models)
    trained = failed = 0
    for index, model in enumerate(models, start=1):
        prefix = f"[{index}/{len(models)}] {model.label} seed {model.seed}"
        if model.trial_id in done:
            progress(f"{prefix}: in the leaderboard, skipped")
            continue
        if model.config.method == "lgr":
            _ensure_start(plan, model, progress)
        began = time.perf_counter()
        try:
            result = _train(plan, model)
            scores = _score(plan, model, result)
        except (NonFiniteLossError, RuntimeError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            wall_s = time.perf_counter() - began
            append_row(plan.root, _row(
                plan, model, model.config.to_dict(), status="error", wall_s=wall_s,
                error=message,
            ))  # fmt: skip
            progress(f"{prefix}: failed ({message}), {wall_s:.1f}s")
            failed += 1
            continue
        wall_s = time.perf_counter() - began
        append_row(plan.root, _row(
            plan, model, result.config.to_dict(), status="ok", wall_s=wall_s, result=result,
            scores=scores,
        ))  # fmt: skip
        progress(f"{prefix}: {_describe(scores)}, {wall_s:.1f}s")
        trained += 1
    maintain(plan.root, plan.name)  # a failed model's rerun superseded its error row
    rows = read_leaderboard(plan.root, plan.name)
    return ShortcutReport(
        summary=summarize(rows, models),
        trained=trained,
        skipped=len(done),
        failed=failed,
        wall_s=time.perf_counter() - started,
    )


def _ensure_start(plan: ShortcutPlan, model: PlannedModel, progress: Callable[[str], None]) -> None:
    """LGR refines its seed's ERM model: train it here when --methods left ERM out or
    its checkpoint is gone (``run()`` resumes a finished run by evaluating it)."""
    start = Path(model.config.options.start_checkpoint)
    if start.is_file():
        return
    progress(f"  training erm seed {model.seed} for LGR to refine")
    _train(plan, erm_model(plan, model.seed))
