"""The benchmark's summary: one row per model over the seeds (``summarize``) and its
fixed-width table (``format_summary``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from orchestrator.sweeps.shortcut.plan import ORACLE, UNION, PlannedModel

__all__ = ["format_summary", "oracle_share", "percent", "summarize"]

#: The oracle's row in the summary: the other rows' shares are of its gain over ERM.
ORACLE_LABEL = f"lgr:{ORACLE}"
# Below this gap (1 percentage point) between ERM and the oracle a share is noise: on
# mnist5k_decoy, where ERM takes no shortcut, the oracle moved 0.2 points and RRR's share
# read -50% (docs/shortcut.md).
_MIN_GAIN = 0.01


def oracle_share(erm: float, oracle: float, value: float) -> float | None:
    """The share of the oracle's change from ERM that ``value`` makes: 1 where it
    matches the oracle, 0 where it stays at ERM, beyond 1 or below 0 where it does
    better than the oracle or worse than ERM. ``None`` where the oracle moved less than
    a point or a value is missing."""
    values = (erm, oracle, value)
    if any(v is None or _missing(v) for v in values) or abs(oracle - erm) < _MIN_GAIN:
        return None
    return (erm - value) / (erm - oracle)


def _label(config: Mapping[str, Any], method: str) -> str:
    if config.get("control"):
        return "control"
    if method == "lgr":
        return f"lgr:{config.get('strategy') or UNION.join(config.get('spurious', []))}"
    return method


def summarize(rows: pd.DataFrame, models: Sequence[PlannedModel]) -> pd.DataFrame:
    """One row per planned model label, over the seeds with a finished row: n, the mean
    and standard deviation (over seeds) of the follow rate and the accuracy, the
    accuracy's gap to the control's mean (percentage points / 100), and the mean flag
    precision and recall (LGR)."""
    wanted = {m.trial_id for m in models}
    order = list(dict.fromkeys(m.label for m in models))
    finished = rows[rows["trial_id"].isin(wanted) & (rows["status"] == "ok")].copy()
    finished["label"] = [
        _label(json.loads(c), m)
        for c, m in zip(finished["config"], finished["method"], strict=True)
    ]
    columns = ["shortcut_follow_rate", "shortcut_acc", "flag_precision", "flag_recall"]
    records = []
    for label in order:
        group = finished[finished["label"] == label]
        record: dict[str, Any] = {"model": label, "n": len(group)}
        for column in columns:
            values = pd.to_numeric(group[column], errors="coerce").dropna()
            record[f"{column}_mean"] = float(values.mean()) if len(values) else math.nan
            record[f"{column}_std"] = float(values.std()) if len(values) > 1 else math.nan
        records.append(record)
    summary = pd.DataFrame.from_records(records)
    control = summary.loc[summary["model"] == "control", "shortcut_acc_mean"]
    control_acc = float(control.iloc[0]) if len(control) else math.nan
    summary["acc_gap"] = summary["shortcut_acc_mean"] - control_acc
    for metric, column in (("follow", "shortcut_follow_rate_mean"), ("acc", "shortcut_acc_mean")):
        summary[f"oracle_{metric}_share"] = _shares(summary, column)
    return summary


def _shares(summary: pd.DataFrame, column: str) -> list[float]:
    """Each row's share of the oracle's gain over ERM in ``column``, from the means
    over seeds (a ratio of means: one seed where the oracle barely moves would make
    the mean of per-seed ratios explode); NaN for ERM, the control and the oracle."""
    by_model = dict(zip(summary["model"], summary[column], strict=True))
    erm, oracle = by_model.get("erm", math.nan), by_model.get(ORACLE_LABEL, math.nan)
    shares = []
    for model, value in by_model.items():
        share = (
            None if model in ("erm", "control", ORACLE_LABEL) else oracle_share(erm, oracle, value)
        )
        shares.append(math.nan if share is None else share)
    return shares


def percent(value: float | None) -> str:
    """A share as "12.3%"; "-" for a missing one."""
    return "-" if value is None or _missing(value) else f"{100 * value:.1f}%"


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _mean_std(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.1f}%" + ("" if math.isnan(std) else f" ± {100 * std:.1f}")


def _share(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.0f}%".replace("-0%", "0%")


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as a fixed-width table (percentages; ± is the std over seeds; the
    oracle shares are of the mean gain over ERM of ``lgr:annotated``)."""
    header = [
        "model", "seeds", "follows patch", "test acc", "gap vs control",
        "oracle share: follow", "acc", "flag P", "flag R",
    ]  # fmt: skip
    lines = []
    for r in summary.to_dict("records"):
        gap = r["acc_gap"]
        lines.append([
            r["model"],
            str(r["n"]),
            _mean_std(r["shortcut_follow_rate_mean"], r["shortcut_follow_rate_std"]),
            _mean_std(r["shortcut_acc_mean"], r["shortcut_acc_std"]),
            "-" if math.isnan(gap) or r["model"] == "control" else f"{100 * gap:+.1f} pt",
            _share(r["oracle_follow_share"]),
            _share(r["oracle_acc_share"]),
            percent(r["flag_precision_mean"]),
            percent(r["flag_recall_mean"]),
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, lines)])
