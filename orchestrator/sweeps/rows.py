"""One leaderboard row from one trained and evaluated model, for every producer: the
sweep's trials (``orchestrator.sweeps.tune``) and the shortcut benchmark
(``orchestrator.sweeps.shortcut``). Ray-free and spec-free: the callers name the sweep, the
data set and the fixed ``eval_eps``."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from methods.audit import audit_note
from methods.loop import EpochMetrics
from methods.results import EvalResult
from orchestrator.checkpoints import git_sha
from orchestrator.leaderboard import LeaderboardRow

__all__ = ["config_id", "evaluation_columns", "objective_metrics", "result_row", "val_curve"]


def objective_metrics(evaluation: EvalResult, eval_eps: float) -> dict[str, float]:
    """The named metrics of one evaluation at the fixed ``eval_eps``: ``robust_acc``
    is the per-example worst case over the attacks run there."""
    values = {"clean_acc": evaluation.clean_acc}
    names = {"worst": "robust_acc", "fgsm": "fgsm_acc", "pgd": "pgd_acc"}
    at_eps = [p for p in evaluation.robust_curve if math.isclose(p.eps, eval_eps, rel_tol=1e-9)]
    for point in at_eps:
        if point.attack in names:
            values[names[point.attack]] = point.acc
    if "robust_acc" not in values and at_eps:  # one attack run: it is the worst case
        values["robust_acc"] = min(p.acc for p in at_eps)
    return values


def config_id(method: str, sampled: Mapping[str, Any]) -> str:
    """The same for every seed of one sampled configuration."""
    text = json.dumps({"method": method, **sampled}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def evaluation_columns(evaluation: EvalResult | None, eval_eps: float) -> dict[str, Any]:
    """Every column an evaluation fills: the metrics at ``eval_eps``, the curve, the
    audit, faithfulness (LIME's order too, on LGR's rows) and corruption accuracy.
    Empty for a trial that never reached its evaluation."""
    if evaluation is None:
        return {}
    columns: dict[str, Any] = {
        **objective_metrics(evaluation, eval_eps),
        "eval_mode": evaluation.eval_mode,
        "robust_curve": tuple(
            {"attack": p.attack, "eps": p.eps, "acc": p.acc} for p in evaluation.robust_curve
        ),
        "corruption_acc": evaluation.corruption_acc,
        "audit_flags": tuple(evaluation.audit_flags),
        "audit_note": audit_note(evaluation.audit_flags, evaluation.audit_measures),
        "n_eval": evaluation.n_eval,
    }
    if evaluation.faithfulness is not None:
        curve = evaluation.faithfulness
        columns.update(
            faithfulness_auc=curve.auc,
            faithfulness_random_auc=curve.random_auc,
            faithfulness_gap=curve.gap,
            faithfulness_curve=curve.points(),
        )
    if evaluation.lime_faithfulness is not None:
        lime = evaluation.lime_faithfulness
        columns.update(lime_faithfulness_auc=lime.auc, lime_faithfulness_gap=lime.gap)
    return columns


def val_curve(history: Sequence[EpochMetrics] | None) -> tuple[float, ...]:
    """The clean accuracy the loop measured after each epoch (on the validation split in
    a sweep: ``monitor_name="val"``); empty when an epoch has none (no monitor split)."""
    values = [metrics.test_acc for metrics in history or ()]
    if not values or any(value is None for value in values):
        return ()
    return tuple(float(value) for value in values)  # type: ignore[arg-type]


def result_row(
    *,
    sweep: str,
    trial_id: str,
    config_id: str,
    method: str,
    dataset: str,
    config: Mapping[str, Any],
    eval_eps: float,
    status: str,
    wall_s: float,
    evaluation: EvalResult | None = None,
    history: Sequence[EpochMetrics] | None = None,
    **columns: Any,
) -> LeaderboardRow:
    """The row of one model. ``config`` is its resolved flat ``TrainConfig`` (plus any
    marker a producer adds); ``history`` is the loop's (``RunResult.history``), whose
    per-epoch validation accuracy becomes ``val_curve``; ``columns`` sets the rest
    (``stopped_epoch``, ``error``, ``checkpoint``, ``logdir``, the shortcut benchmark's
    scores) and overrides what the evaluation filled (the sweep passes the metrics it
    reported to Tune)."""
    return LeaderboardRow(
        sweep=sweep,
        trial_id=trial_id,
        config_id=config_id,
        status=status,
        method=method,
        dataset=dataset,
        model=str(config.get("model") or ""),
        seed=int(config["seed"]),
        mask_ratio=config.get("mask_ratio"),
        reg_weight=config.get("reg_weight"),
        attack_eps=config.get("attack_eps"),
        epochs=int(config["epochs"]),
        eval_eps=eval_eps,
        wall_s=wall_s,
        git_sha=git_sha(),
        config=dict(config),
        **{
            "val_curve": val_curve(history),
            **evaluation_columns(evaluation, eval_eps),
            **columns,
        },
    )
