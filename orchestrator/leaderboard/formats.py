"""The leaderboard as text: ``format_frame`` writes a frame as a fixed-width table, CSV,
JSON records or a Markdown pipe table (what ``limelight leaderboard --format`` prints).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from methods.options import ConfigError
from orchestrator.leaderboard.schema import ACCURACY_COLUMNS, SHARE_COLUMNS

__all__ = ["FORMATS", "TABLE_HIDDEN", "TABLE_PROVENANCE", "format_frame"]

FORMATS = ("table", "csv", "json", "markdown")
#: Columns the table formats leave out unless they are asked for by name.
TABLE_HIDDEN = ("robust_curve", "faithfulness_curve", "val_curve", "config")
#: Left out of the human formats unless named, to keep a row on one screen line: the
#: provenance (commit, time, paths) is in csv/json and in --columns.
TABLE_PROVENANCE = ("config_id", "git_sha", "created_at", "checkpoint", "logdir")


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
    raise ConfigError("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")


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
    return base in ACCURACY_COLUMNS + SHARE_COLUMNS


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
