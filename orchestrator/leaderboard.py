"""The leaderboard: one row per finished trial, as one Hive-partitioned Parquet data set.

``<root>/leaderboard/sweep=<sweep>/<trial file>.parquet`` holds one row each. One file
per trial (rather than one file per sweep) is what lets many trials finish at once
without a lock: each writes its own file under a temporary name starting with ``.``
(which Parquet readers skip) and renames it, so a reader never sees half a row and no
writer can lose another's. The file name is a function of the trial id alone, so a
re-run trial replaces its row instead of adding a second.

The data set is plain Parquet: ``pandas.read_parquet(f"{root}/leaderboard")`` and DuckDB's
``read_parquet('<root>/leaderboard/**/*.parquet', hive_partitioning=true)`` read it
directly; ``read_leaderboard`` adds what they do not (old part files missing newer
columns read as null, an unreadable part is skipped with a warning). ``query`` and
``format_frame`` are what ``limelight leaderboard`` prints.

This module imports neither Ray nor torch: reading results must stay cheap.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator.storage import DEFAULT_STORAGE, STORAGE_ENV, as_uri, default_root

__all__ = [
    "ACCURACY_COLUMNS",
    "FORMATS",
    "METRIC_COLUMNS",
    "SCHEMA",
    "STATUSES",
    "LeaderboardRow",
    "add_leaderboard_arguments",
    "append_row",
    "encode_config",
    "format_frame",
    "leaderboard_command",
    "query",
    "read_leaderboard",
]

log = logging.getLogger(__name__)

#: The folder under the results root that holds the data set.
FOLDER = "leaderboard"
#: The Hive partition column (a folder name, not a column in the files).
PARTITION = "sweep"
STATUSES = ("ok", "stopped", "error")
FORMATS = ("table", "csv", "json", "markdown")
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
    "wall_s",
)
#: Columns the table formats leave out unless they are asked for by name.
TABLE_HIDDEN = ("robust_curve", "faithfulness_curve", "config")
#: Left out of the human formats unless named, to keep a row on one screen line: the
#: provenance (commit, time, paths) is in csv/json and in --columns.
TABLE_PROVENANCE = ("config_id", "git_sha", "created_at", "checkpoint", "logdir")

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
        ("n_eval", pa.int64()),
        ("wall_s", pa.float64()),
        ("git_sha", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("checkpoint", pa.string()),
        ("logdir", pa.string()),
        ("config", pa.string()),  # the resolved flat config, JSON (encode_config)
    ]
)

_LIST_COLUMNS = tuple(f.name for f in SCHEMA if pa.types.is_list(f.type))
# Nullable pandas integers: a null stopped_epoch must not turn the column into floats.
_PANDAS_TYPES = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_.-]")


# --------------------------------------------------------------------------- the row


def encode_config(config: Mapping[str, Any]) -> str:
    """The ``config`` column's text: JSON with sorted keys, so equal configs compare equal."""
    return json.dumps(dict(config), sort_keys=True, default=str)


@dataclass(frozen=True, kw_only=True)
class LeaderboardRow:
    """One finished trial. Keyword-only: with 40 fields, positions would be a trap.

    ``config`` may be given as a mapping (encoded with ``encode_config``) or as JSON
    text of an object. ``error`` keeps its first line only. ``robust_curve`` takes
    mappings with ``attack``, ``eps`` and ``acc``.
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
    n_eval: int | None = None
    wall_s: float
    git_sha: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    checkpoint: str | None = None
    logdir: str | None = None
    config: str

    def __post_init__(self) -> None:
        _check_folder_name("sweep", self.sweep)
        if not isinstance(self.trial_id, str) or not self.trial_id:
            raise ValueError(f"trial_id: must be a non-empty string, got {self.trial_id!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status: {self.status!r} is not one of {', '.join(STATUSES)}")
        for name in ACCURACY_COLUMNS:
            self._set(name, _fraction(name, getattr(self, name)))
        self._set("robust_curve", _curve(self.robust_curve))
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
        values["faithfulness_curve"] = list(self.faithfulness_curve)
        values["audit_flags"] = list(self.audit_flags)
        return pa.Table.from_pylist([{name: values[name] for name in SCHEMA.names}], SCHEMA)


def _check_folder_name(name: str, value: Any) -> None:
    """A sweep name becomes a ``sweep=<name>`` folder that every reader must take literally.

    ``/ \\ =`` and whitespace would change the path, a leading ``.`` or ``_`` makes pyarrow
    and pandas skip the folder, and ``%`` would be URL-decoded by Hive readers.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: must be a non-empty string, got {value!r}")
    if re.search(r"[/\\=%\s]", value) or value[0] in "._":
        raise ValueError(
            f"{name}: {value!r} must be a plain folder name "
            "(no / \\ = % or spaces, not starting with . or _)"
        )


def _fraction(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: must be a float in [0, 1] or None, got {value!r}")
    if not 0.0 <= float(value) <= 1.0:  # NaN fails too
        raise ValueError(f"{name}: must be in [0, 1], got {value!r}")
    return float(value)


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


# ------------------------------------------------------------------ writing, reading


def _base(root: str | Path) -> tuple[pafs.FileSystem, str]:
    """The file system and the data set's folder on it (``<root>/leaderboard``)."""
    fs, base = pafs.FileSystem.from_uri(as_uri(root))
    return fs, f"{base.rstrip('/')}/{FOLDER}"


def _display(fs: pafs.FileSystem, path: str) -> str:
    return path if isinstance(fs, pafs.LocalFileSystem) else f"{fs.type_name}://{path}"


def trial_file_name(trial_id: str) -> str:
    """``<trial_id>.parquet``; an id with other characters than ``[A-Za-z0-9_.-]`` (or a
    leading ``.``/``_``, which readers skip) is sanitized and gets a hash of the original,
    so two ids never share a file and the same id always maps to the same one."""
    if _SAFE_NAME.fullmatch(trial_id) and len(trial_id) <= 200:
        return f"{trial_id}.parquet"
    digest = hashlib.sha256(trial_id.encode()).hexdigest()[:12]
    safe = _UNSAFE_CHAR.sub("_", trial_id).lstrip("._")[:150] or "trial"
    return f"{safe}-{digest}.parquet"


def append_row(root: str, row: LeaderboardRow) -> str:
    """Write ``row`` atomically (temporary ``.`` name, then rename) and return its path.

    A row already there for the same (sweep, trial_id) is replaced.
    """
    fs, base = _base(root)
    folder = f"{base}/{PARTITION}={row.sweep}"
    fs.create_dir(folder, recursive=True)
    name = trial_file_name(row.trial_id)
    final = f"{folder}/{name}"
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(row.to_table(), tmp, filesystem=fs)
        fs.move(tmp, final)
    except BaseException:
        _remove_quietly(fs, tmp)
        raise
    return _display(fs, final)


def _remove_quietly(fs: pafs.FileSystem, path: str) -> None:
    with contextlib.suppress(OSError):  # never written, or already moved
        fs.delete_file(path)


def _children(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(folder, allow_not_found=True)
    return sorted(fs.get_file_info(selector), key=lambda info: info.path)


def _part_files(fs: pafs.FileSystem, base: str, sweep: str | None) -> list[tuple[str, str]]:
    """(sweep, path) of every part file; hidden (``.``/``_``) names are skipped like
    pyarrow's own data set discovery skips them (temporary files start with ``.``)."""
    prefix = f"{PARTITION}="
    folders = [
        info
        for info in _children(fs, base)
        if info.type == pafs.FileType.Directory and info.base_name.startswith(prefix)
    ]
    parts = []
    for folder in folders:
        name = folder.base_name[len(prefix) :]
        if sweep is not None and name != sweep:
            continue
        parts.extend(
            (name, info.path)
            for info in _children(fs, folder.path)
            if info.type == pafs.FileType.File
            and info.base_name.endswith(".parquet")
            and info.base_name[0] not in "._"
        )
    return parts


def _conform(table: pa.Table) -> pa.Table:
    """``table`` as ``SCHEMA``: columns it lacks become null, extra ones are dropped."""
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _read_part(fs: pafs.FileSystem, path: str) -> pa.Table | None:
    try:
        return _conform(pq.read_table(path, filesystem=fs))
    except (OSError, pa.ArrowException, ValueError, TypeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.warning("leaderboard: skipping unreadable part file %s (%s)", path, first)
        return None


def read_leaderboard(root: str, sweep: str | None = None) -> pd.DataFrame:
    """All rows under ``root`` (or one sweep's), ``sweep`` first, then ``SCHEMA``'s columns.

    Integer columns are pandas nullable integers (``Int64``/``Int32``), ``created_at`` is
    UTC, list columns hold Python lists (``robust_curve``: dicts). Rows are ordered by
    sweep, then ``created_at``.
    """
    fs, base = _base(root)
    tables = []
    for name, path in _part_files(fs, base, sweep):
        table = _read_part(fs, path)
        if table is not None:
            tables.append(table.add_column(0, PARTITION, pa.array([name] * table.num_rows)))
    if not tables:
        return _to_frame(_empty_table())
    frame = _to_frame(pa.concat_tables(tables))
    order = frame.sort_values([PARTITION, "created_at", "trial_id"], kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def _empty_table() -> pa.Table:
    return SCHEMA.empty_table().add_column(0, PARTITION, pa.array([], pa.string()))


def _to_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas(types_mapper=_PANDAS_TYPES.get)
    for name in _LIST_COLUMNS:  # to_pandas gives numpy arrays; lists are what callers expect
        frame[name] = pd.Series(table.column(name).to_pylist(), index=frame.index, dtype=object)
    return frame


# -------------------------------------------------------------------------- querying


def query(
    frame: pd.DataFrame,
    *,
    where: str | None = None,
    sort: str | None = None,
    descending: bool = True,
    top: int | None = None,
    columns: list[str] | None = None,
    group_by: list[str] | None = None,
) -> pd.DataFrame:
    """Filter, group, sort, cut and select, in that order.

    ``where`` is a ``DataFrame.query`` expression typed by the user. ``group_by`` gives
    one row per group: the group's columns, ``n`` (its rows) and ``<metric>_mean`` and
    ``<metric>_std`` (sample standard deviation, NaN for one row) for each of
    ``METRIC_COLUMNS`` present. Bad input raises ``ValueError`` naming the argument.
    """
    if where:
        frame = _where(frame, where)
    if group_by:
        frame = _group(frame, group_by)
    if sort:
        _check_columns("sort", [sort], frame)
        try:
            frame = frame.sort_values(
                sort, ascending=not descending, kind="stable", na_position="last"
            )
        except TypeError as error:
            raise ValueError(f"sort: cannot sort by {sort!r} ({_one_line(error)})") from error
    if top is not None:
        if top < 0:
            raise ValueError(f"top: must be 0 or more, got {top}")
        frame = frame.head(top)
    if columns:
        _check_columns("columns", columns, frame)
        frame = frame[list(columns)]
    return frame.reset_index(drop=True)


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_columns(argument: str, names: Sequence[str], frame: pd.DataFrame) -> None:
    unknown = [name for name in names if name not in frame.columns]
    if unknown:
        raise ValueError(
            f"{argument}: unknown column {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(map(str, frame.columns))}"
        )


def _where(frame: pd.DataFrame, expression: str) -> pd.DataFrame:
    # DataFrame.query raises a zoo of types (SyntaxError, UndefinedVariableError, ...).
    try:
        result = frame.query(expression)
    except Exception as error:
        kind = type(error).__name__
        raise ValueError(
            f"where: bad expression {expression!r}: {kind}: {_one_line(error)}"
        ) from error
    if not isinstance(result, pd.DataFrame):
        raise ValueError(f"where: {expression!r} must be a condition on the rows")
    return result


def _group(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    _check_columns("group_by", keys, frame)
    metrics = [
        name
        for name in METRIC_COLUMNS
        if name in frame.columns and pd.api.types.is_numeric_dtype(frame[name])
    ]
    try:
        groups = frame.groupby(keys, dropna=False, sort=True)
        out = groups.size().rename("n").to_frame()
        for name in metrics:
            out[f"{name}_mean"] = groups[name].mean().astype(float)
            out[f"{name}_std"] = groups[name].std().astype(float)  # ddof=1: spread over seeds
    except TypeError as error:  # e.g. grouping by a list column
        raise ValueError(f"group_by: cannot group by {keys} ({_one_line(error)})") from error
    return out.reset_index()


# ------------------------------------------------------------------------ formatting


def format_frame(frame: pd.DataFrame, fmt: str, *, selected: bool = False) -> str:
    """``frame`` as text: ``table`` (fixed-width), ``csv``, ``json`` (records) or
    ``markdown`` (GitHub pipe table).

    The two human formats (table, markdown) show fractions as percentages with one
    decimal and mark a row with a non-empty ``audit_flags`` with ``!`` in a leading
    column. Unless ``selected`` (the user named the columns: show exactly those), they
    also leave out ``robust_curve``, ``config``, the provenance columns (commit, time,
    paths), the columns no row has a value in (the reserved ones, mostly) and the
    descriptive ones that are the same in every row, which would only make the table
    too wide to read.
    csv and json keep every column and the raw values (fractions in [0, 1], lists and
    dicts as JSON).
    """
    if fmt == "csv":
        return _csv(frame)
    if fmt == "json":
        return _json(frame)
    if fmt in ("table", "markdown"):
        shown = list(frame.columns) if selected else _default_columns(frame)
        header, align, rows = _display_cells(frame, shown)
        if fmt == "table":
            return _fixed_width(header, align, rows)
        return _markdown(header, align, rows)
    raise ValueError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")


def _default_columns(frame: pd.DataFrame) -> list[str]:
    def has_value(column: str) -> bool:
        return any(not _is_missing(v) and not _is_empty_list(v) for v in frame[column])

    shown = [c for c in frame.columns if c not in TABLE_HIDDEN + TABLE_PROVENANCE]
    shown = [c for c in shown if has_value(c)] if len(frame) else shown
    # A column with one value in every row (one sweep, one data set) says nothing per row.
    constant = [
        c
        for c in ("sweep", "dataset", "model", "eval_eps")
        if c in shown and len(frame) > 1 and frame[c].astype(str).nunique() == 1
    ]
    return [c for c in shown if c not in constant]


def _is_empty_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) and len(value) == 0


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _is_percent(column: str) -> bool:
    base = re.sub(r"_(mean|std)$", "", column)
    return base in ACCURACY_COLUMNS


def _cell(value: Any, column: str) -> str:
    """One value as the human formats show it."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if column == "robust_curve":
            return ", ".join(_curve_point(point) for point in value)
        return ",".join(_cell(item, column) for item in value)
    if _is_missing(value):
        return "-"
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return f"{100 * value:.1f}%" if _is_percent(column) else f"{value:.4g}"
    if isinstance(value, dict):
        return json.dumps(value)
    return " ".join(str(value).splitlines())


def _curve_point(point: Any) -> str:
    """``fgsm@0.1:45.0%``: attack, eps, accuracy."""
    if not isinstance(point, Mapping):
        return str(point)
    eps, acc = point.get("eps"), point.get("acc")
    eps_text = "-" if _is_missing(eps) else f"{eps:g}"
    acc_text = "-" if _is_missing(acc) else f"{100 * acc:.1f}%"
    return f"{point.get('attack')}@{eps_text}:{acc_text}"


def _flagged(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) and len(value) > 0


def _display_cells(
    frame: pd.DataFrame, shown: list[str]
) -> tuple[list[str], list[bool], list[list[str]]]:
    """Header, right-alignment per column, and the cells of the human formats."""
    header = [str(c) for c in shown]
    align = [
        pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        for c in shown
    ]
    rows = [
        [_cell(value, str(c)) for c, value in zip(shown, row, strict=True)]
        for row in frame[shown].itertuples(index=False)
    ]
    if "audit_flags" in frame.columns:
        marks = ["!" if _flagged(v) else "" for v in frame["audit_flags"]]
        header = ["", *header]
        align = [False, *align]
        rows = [[mark, *row] for mark, row in zip(marks, rows, strict=True)]
    return header, align, rows


def _fixed_width(header: list[str], align: list[bool], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        padded = (
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, align, strict=True)
        )
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def _markdown(header: list[str], align: list[bool], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    rule = "| " + " | ".join("---:" if right else "---" for right in align) + " |"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def _json_value(value: Any) -> Any:
    """A JSON-safe value: NaN/NA become null, timestamps ISO text, numpy scalars Python."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if _is_missing(value):
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return _json_value(value.item())
    return value


def _json(frame: pd.DataFrame) -> str:
    records = [
        {str(c): _json_value(v) for c, v in zip(frame.columns, row, strict=True)}
        for row in frame.itertuples(index=False)
    ]
    return json.dumps(records, indent=2, allow_nan=False)


def _csv(frame: pd.DataFrame) -> str:
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:  # lists and dicts as JSON, not Python repr
            out[column] = [
                json.dumps(_json_value(v)) if isinstance(v, (list, tuple, dict, np.ndarray)) else v
                for v in out[column]
            ]
    return out.to_csv(index=False)


# ------------------------------------------------------------------------------ CLI


def add_leaderboard_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``limelight leaderboard`` flags (``leaderboard_command`` reads them)."""
    parser.add_argument(
        "--storage",
        metavar="ROOT",
        default=None,
        help=f"results root holding leaderboard/, a path or a URI such as s3://bucket/p "
        f"(default: ${STORAGE_ENV}, else {DEFAULT_STORAGE})",
    )
    parser.add_argument("--sweep", metavar="S", help="only this sweep's rows")
    parser.add_argument(
        "--where",
        metavar="EXPR",
        help="pandas query filter, e.g. \"method == 'sgt' and clean_acc > 0.9\"",
    )
    parser.add_argument(
        "--sort", metavar="COL", help="sort by this column (with --group-by: e.g. clean_acc_mean)"
    )
    parser.add_argument(
        "--ascending", action="store_true", help="sort smallest first (default: largest first)"
    )
    parser.add_argument("--top", metavar="N", type=int, help="keep the first N rows after sorting")
    parser.add_argument(
        "--columns", metavar="A,B,...", help="comma-separated columns to show, in this order"
    )
    parser.add_argument(
        "--group-by",
        metavar="A,B",
        help="comma-separated columns; one row per group with n and the mean and std of "
        "each metric (e.g. method,dataset averages over seeds)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="output format (default: table; accuracies as percentages there)",
    )


def _split(argument: str, text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"{argument}: give comma-separated column names, got {text!r}")
    return names


def leaderboard_command(args: argparse.Namespace) -> str:
    """The text ``limelight leaderboard`` prints; ``ValueError`` (one line) on bad input."""
    root = default_root(args.storage)
    columns = _split("columns", args.columns)
    group_by = _split("group_by", args.group_by)
    frame = read_leaderboard(root, args.sweep)
    if frame.empty:
        where = f" for sweep {args.sweep!r}" if args.sweep else ""
        return f"no rows found under {str(root).rstrip('/')}/{FOLDER}{where}"
    frame = query(
        frame,
        where=args.where,
        sort=args.sort,
        descending=not args.ascending,
        top=args.top,
        columns=columns,
        group_by=group_by,
    )
    return format_frame(frame, args.format, selected=columns is not None)
