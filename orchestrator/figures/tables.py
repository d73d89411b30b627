"""Leaderboard rows as the tables the figures draw: means and sample standard
deviations per group (a method, by default) of the robust and faithfulness curves,
one point per configuration for the Pareto front, and the front itself.

Pure pandas/NumPy on ``read_leaderboard``'s DataFrame: no plotting here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_GROUP",
    "curve_table",
    "faithfulness_table",
    "ok_rows",
    "pareto_front",
    "pareto_points",
]

#: Rows are averaged per value of these columns unless told otherwise.
DEFAULT_GROUP = ("method",)


def ok_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The rows whose status is ``ok``, and how many of each other status were left out."""
    ok = frame["status"] == "ok"
    left_out = frame.loc[~ok, "status"].fillna("null").value_counts().sort_index()
    return frame[ok], {str(k): int(v) for k, v in left_out.items()}


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _points(value: Any) -> list[dict[str, Any]]:
    """A list column's value as a list (a missing value is no points)."""
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else []


def _aggregate(table: pd.DataFrame, keys: list[str], values: dict[str, str]) -> pd.DataFrame:
    """Per ``keys``: ``<out>_mean`` and ``<out>_std`` (sample std: NaN for one row) of
    each ``{column: out}``, and ``n`` rows."""
    groups = table.groupby(keys, dropna=False, sort=True)
    out = groups.size().rename("n").to_frame()
    for column, name in values.items():
        out[f"{name}_mean"] = groups[column].mean().astype(float)
        out[f"{name}_std"] = groups[column].std(ddof=1).astype(float)
    return out.reset_index()


def curve_table(frame: pd.DataFrame, group_by: Sequence[str] = DEFAULT_GROUP) -> pd.DataFrame:
    """Accuracy under attack per (group, attack, eps) from ``robust_curve``, averaged
    over the group's rows.

    A row's ``clean_acc`` is its point at eps 0 on each attack it ran (unless its curve
    has one there): every attack starts from the clean accuracy.

    Returns:
        Columns ``*group_by``, ``attack``, ``eps``, ``n``, ``acc_mean``, ``acc_std``
        (fractions in [0, 1]), sorted.
    """
    keys = list(group_by)
    records = []
    rows = zip(
        frame[keys].itertuples(index=False, name=None),
        frame["clean_acc"],
        frame["robust_curve"],
        strict=True,
    )
    for values, clean, curve in rows:
        points = [p for p in _points(curve) if not _missing(p.get("acc"))]
        at_zero = {p["attack"] for p in points if p["eps"] == 0}
        records += [(*values, p["attack"], float(p["eps"]), float(p["acc"])) for p in points]
        if not _missing(clean):
            attacks = dict.fromkeys(p["attack"] for p in points if p["attack"] not in at_zero)
            records += [(*values, attack, 0.0, float(clean)) for attack in attacks]
    table = pd.DataFrame.from_records(records, columns=[*keys, "attack", "eps", "acc"])
    return _aggregate(table, [*keys, "attack", "eps"], {"acc": "acc"})


def faithfulness_table(
    frame: pd.DataFrame, group_by: Sequence[str] = DEFAULT_GROUP
) -> pd.DataFrame:
    """Masked accuracy per (group, fraction replaced) from ``faithfulness_curve``.

    Returns:
        Columns ``*group_by``, ``fraction``, ``n``, ``acc_mean``, ``acc_std`` (most
        salient features replaced first), ``random_mean``, ``random_std`` (a random
        order), fractions in [0, 1].
    """
    keys = list(group_by)
    records = []
    rows = zip(
        frame[keys].itertuples(index=False, name=None), frame["faithfulness_curve"], strict=True
    )
    for values, curve in rows:
        records += [
            (*values, float(p["fraction"]), p["acc"], p["random_acc"])
            for p in _points(curve)
            if not _missing(p.get("fraction"))
        ]
    columns = [*keys, "fraction", "acc", "random_acc"]
    table = pd.DataFrame.from_records(records, columns=columns)
    table[["acc", "random_acc"]] = table[["acc", "random_acc"]].astype(float)
    return _aggregate(table, [*keys, "fraction"], {"acc": "acc", "random_acc": "random"})


def pareto_front(x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point dominates, maximizing both ``x`` and ``y``.

    A point is dominated when another is at least as good on both and better on one;
    equal points are both on the front. The indices are sorted by ``x`` ascending
    (so ``y`` descends along them: the order a step line needs).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got {x.shape} and {y.shape}")
    if np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("x and y must not hold NaN (drop incomplete points first)")
    no_worse = (x[None, :] >= x[:, None]) & (y[None, :] >= y[:, None])
    better = (x[None, :] > x[:, None]) | (y[None, :] > y[:, None])
    front = np.flatnonzero(~(no_worse & better).any(axis=1))
    return front[np.lexsort((-y[front], x[front]))]


def pareto_points(
    frame: pd.DataFrame, metric: str = "robust_acc", group_by: Sequence[str] = DEFAULT_GROUP
) -> pd.DataFrame:
    """One point per configuration (``config_id``; a row without one is its own): the
    mean and std over its seeds of ``clean_acc`` and ``metric``, and whether the point is
    on the Pareto front of the means. Rows missing either value are left out.

    Returns:
        Columns ``*group_by``, ``config``, ``n``, ``clean_mean``, ``clean_std``,
        ``metric_mean``, ``metric_std``, ``on_front``.
    """
    keys = list(group_by)
    rows = frame.dropna(subset=["clean_acc", metric])
    config = rows["config_id"].astype(object).where(rows["config_id"].notna(), rows["trial_id"])
    rows = rows.assign(config=config)
    rows = rows.astype({"clean_acc": float, metric: float})
    points = _aggregate(rows, [*keys, "config"], {"clean_acc": "clean", metric: "metric"})
    points["on_front"] = False
    if len(points):
        front = pareto_front(points["clean_mean"], points["metric_mean"])
        points.loc[points.index[front], "on_front"] = True
    return points
