"""The leaderboard's columns and its row: ``SCHEMA`` (the Parquet columns of a part
file), the column groups the queries and formats use, and ``LeaderboardRow``, which
checks and normalizes one finished trial's values before they are written.

Every column is nullable in the file; which values a new row needs is the row's job.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from orchestrator.storage import check_folder_name

__all__ = [
    "ACCURACY_COLUMNS",
    "CURVE_POINT",
    "FAITHFULNESS_POINT",
    "METRIC_COLUMNS",
    "SCHEMA",
    "SHARE_COLUMNS",
    "STATUSES",
    "LeaderboardRow",
    "encode_config",
]

STATUSES = ("ok", "stopped", "error")
#: Fractions in [0, 1]: validated on write, shown as percentages.
ACCURACY_COLUMNS = (
    "clean_acc",
    "robust_acc",
    "fgsm_acc",
    "pgd_acc",
    "corruption_acc",
    "shortcut_follow_rate",
    "shortcut_acc",
    "faithfulness_auc",
    "faithfulness_random_auc",
    "lime_faithfulness_auc",
    "flag_precision",
    "flag_recall",
)
#: Shares shown as percentages but not bounded to [0, 1] (a strategy can do better than
#: the oracle, or worse than ERM).
SHARE_COLUMNS = ("oracle_follow_share", "oracle_acc_share")
#: Columns ``query(group_by=...)`` averages (mean and standard deviation per group).
METRIC_COLUMNS = (
    "clean_acc",
    "robust_acc",
    "fgsm_acc",
    "pgd_acc",
    "corruption_acc",
    "faithfulness_auc",
    "faithfulness_gap",
    "lime_faithfulness_auc",
    "lime_faithfulness_gap",
    "shortcut_follow_rate",
    "shortcut_acc",
    "flag_precision",
    "flag_recall",
    "oracle_follow_share",
    "oracle_acc_share",
    "wall_s",
)

CURVE_POINT = pa.struct([("attack", pa.string()), ("eps", pa.float64()), ("acc", pa.float64())])
#: One step of the masked-accuracy curve: the share of features replaced, the accuracy
#: with the most salient ones replaced first, and with a random order (the baseline).
FAITHFULNESS_POINT = pa.struct(
    [("fraction", pa.float64()), ("acc", pa.float64()), ("random_acc", pa.float64())]
)

# Every column is nullable in the file: an old part file that predates a column must
# still read (as null). Which values a new row needs is LeaderboardRow's job.
SCHEMA = pa.schema(
    [
        ("trial_id", pa.string()),
        ("config_id", pa.string()),  # groups the seeds of one sampled configuration
        ("status", pa.string()),  # ok | stopped | error
        ("stopped_epoch", pa.int32()),
        ("error", pa.string()),  # first line of the error
        ("method", pa.string()),
        ("dataset", pa.string()),
        ("model", pa.string()),
        ("seed", pa.int64()),
        ("mask_ratio", pa.float64()),  # null when the method does not use it
        ("reg_weight", pa.float64()),
        ("attack_eps", pa.float64()),
        ("epochs", pa.int64()),
        # Clean accuracy on the validation split after each epoch (the loop's per-epoch
        # metric): whether the model had stopped improving. Null on rows before it.
        ("val_curve", pa.list_(pa.float64())),
        ("eval_eps", pa.float64()),
        ("eval_mode", pa.string()),  # which attack set produced robust_acc: fast | standard
        ("clean_acc", pa.float64()),
        ("robust_acc", pa.float64()),
        ("fgsm_acc", pa.float64()),
        ("pgd_acc", pa.float64()),
        ("robust_curve", pa.list_(CURVE_POINT)),
        ("corruption_acc", pa.float64()),
        ("faithfulness_auc", pa.float64()),  # masked-accuracy AUC in [0,1]; lower: more faithful
        ("faithfulness_random_auc", pa.float64()),  # the same with a random order
        ("faithfulness_gap", pa.float64()),  # faithfulness_auc - faithfulness_random_auc
        ("faithfulness_curve", pa.list_(FAITHFULNESS_POINT)),
        ("lime_faithfulness_auc", pa.float64()),  # the same in LIME's order (LGR rows)
        ("lime_faithfulness_gap", pa.float64()),
        ("audit_flags", pa.list_(pa.string())),
        ("audit_note", pa.string()),
        ("shortcut_follow_rate", pa.float64()),  # share following a wrong-class patch
        ("shortcut_acc", pa.float64()),
        ("flag_precision", pa.float64()),  # LGR's flagged pixels vs the true patch mask
        ("flag_recall", pa.float64()),
        # The share of the oracle's (lgr:annotated's) gain over ERM this row recovers,
        # same seed: (ERM - this) / (ERM - oracle) for the follow rate, and the same
        # for accuracy with the signs turned. Not a fraction: it can pass 1 or be < 0.
        ("oracle_follow_share", pa.float64()),
        ("oracle_acc_share", pa.float64()),
        ("n_eval", pa.int64()),
        ("wall_s", pa.float64()),
        ("git_sha", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("checkpoint", pa.string()),
        ("logdir", pa.string()),
        ("config", pa.string()),  # the resolved flat config, JSON (encode_config)
    ]
)


def encode_config(config: Mapping[str, Any]) -> str:
    """The ``config`` column's text: JSON with sorted keys, so equal configs compare equal."""
    return json.dumps(dict(config), sort_keys=True, default=str)


@dataclass(frozen=True, kw_only=True)
class LeaderboardRow:
    """One finished trial. Keyword-only: with 40 fields, positions would be a trap.

    ``config`` may be given as a mapping (encoded with ``encode_config``) or as JSON
    text of an object. ``error`` keeps its first line only. ``robust_curve`` takes
    mappings with ``attack``, ``eps`` and ``acc``; ``val_curve`` fractions, one an epoch.
    """

    sweep: str
    trial_id: str
    config_id: str
    status: str
    stopped_epoch: int | None = None
    error: str | None = None
    method: str
    dataset: str
    model: str
    seed: int
    mask_ratio: float | None = None
    reg_weight: float | None = None
    attack_eps: float | None = None
    epochs: int
    val_curve: tuple[float, ...] = ()
    eval_eps: float
    eval_mode: str | None = None
    clean_acc: float | None = None
    robust_acc: float | None = None
    fgsm_acc: float | None = None
    pgd_acc: float | None = None
    robust_curve: tuple[dict[str, Any], ...] = ()
    corruption_acc: float | None = None
    faithfulness_auc: float | None = None
    faithfulness_random_auc: float | None = None
    faithfulness_gap: float | None = None
    faithfulness_curve: tuple[dict[str, Any], ...] = ()
    lime_faithfulness_auc: float | None = None
    lime_faithfulness_gap: float | None = None
    audit_flags: tuple[str, ...] = ()
    audit_note: str | None = None
    shortcut_follow_rate: float | None = None
    shortcut_acc: float | None = None
    flag_precision: float | None = None
    flag_recall: float | None = None
    oracle_follow_share: float | None = None
    oracle_acc_share: float | None = None
    n_eval: int | None = None
    wall_s: float
    git_sha: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    checkpoint: str | None = None
    logdir: str | None = None
    config: str

    def __post_init__(self) -> None:
        check_folder_name("sweep", self.sweep)
        if not isinstance(self.trial_id, str) or not self.trial_id:
            raise ValueError(f"trial_id: must be a non-empty string, got {self.trial_id!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status: {self.status!r} is not one of {', '.join(STATUSES)}")
        for name in ACCURACY_COLUMNS:
            self._set(name, _fraction(name, getattr(self, name)))
        self._set("robust_curve", _curve(self.robust_curve))
        self._set("val_curve", tuple(_accuracy("val_curve", v) for v in self.val_curve))
        self._set("faithfulness_curve", _faithfulness_curve(self.faithfulness_curve))
        self._set("audit_flags", tuple(str(flag) for flag in self.audit_flags))
        self._set("error", _first_line(self.error))
        self._set("config", _config_text(self.config))
        if not isinstance(self.created_at, datetime) or self.created_at.tzinfo is None:
            raise ValueError(
                f"created_at: must be a timezone-aware datetime, got {self.created_at!r}"
            )

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # frozen: normalize once, here

    def to_table(self) -> pa.Table:
        """One-row table of ``SCHEMA`` (without ``sweep``: the folder name holds it)."""
        values = dataclasses.asdict(self)
        values["robust_curve"] = list(self.robust_curve)
        values["val_curve"] = list(self.val_curve)
        values["faithfulness_curve"] = list(self.faithfulness_curve)
        values["audit_flags"] = list(self.audit_flags)
        return pa.Table.from_pylist([{name: values[name] for name in SCHEMA.names}], SCHEMA)


def _fraction(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: must be a float in [0, 1] or None, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:  # NaN fails too
        raise ValueError(f"{name}: must be in [0, 1], got {value!r}")
    return float(value)


def _accuracy(name: str, value: Any) -> float:
    checked = _fraction(name, value)
    if checked is None:
        raise ValueError(f"{name}: must hold floats in [0, 1], got None")
    return checked


def _curve(points: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    out = []
    for point in points:
        if not isinstance(point, Mapping) or set(point) != {"attack", "eps", "acc"}:
            raise ValueError(f"robust_curve: points need attack, eps and acc, got {point!r}")
        acc = _fraction("robust_curve", point["acc"])
        out.append({"attack": str(point["attack"]), "eps": float(point["eps"]), "acc": acc})
    return tuple(out)


def _faithfulness_curve(points: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    keys = {"fraction", "acc", "random_acc"}
    out = []
    for point in points:
        if not isinstance(point, Mapping) or set(point) != keys:
            raise ValueError(
                f"faithfulness_curve: points need fraction, acc and random_acc, got {point!r}"
            )
        out.append({key: _fraction("faithfulness_curve", point[key]) for key in sorted(keys)})
    return tuple(out)


def _first_line(text: str | None) -> str | None:
    if text is None:
        return None
    lines = str(text).strip().splitlines()
    return lines[0] if lines else ""


def _config_text(config: str | Mapping[str, Any]) -> str:
    if isinstance(config, Mapping):
        return encode_config(config)
    try:
        decoded = json.loads(config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"config: must be a mapping or JSON text, got {config!r}") from error
    if not isinstance(decoded, dict):
        raise ValueError(f"config: JSON must hold an object, got {type(decoded).__name__}")
    return config
