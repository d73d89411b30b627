"""Querying the leaderboard: ``query`` filters (``where``), groups (``group_by``: mean
and std per group), sorts, cuts and selects a frame; ``LeaderboardQuery`` is one request
as ``limelight leaderboard`` takes it, and ``leaderboard_text`` the text it prints.

Bad input raises ``ConfigError`` naming the argument (the field of ``LeaderboardQuery``).
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from methods.options import ConfigError, option, validate
from orchestrator.leaderboard.formats import (
    FORMATS,
    TABLE_HIDDEN,
    TABLE_PROVENANCE,
    format_frame,
)
from orchestrator.leaderboard.io import FOLDER, read_leaderboard
from orchestrator.leaderboard.schema import METRIC_COLUMNS, SCHEMA
from orchestrator.storage import DEFAULT_STORAGE, STORAGE_ENV, default_root, is_uri

__all__ = ["LeaderboardQuery", "leaderboard_text", "needed_columns", "query"]


@dataclass(frozen=True)
class LeaderboardQuery:
    """Which rows of which results root, and how to show them (the flags of
    ``limelight leaderboard``). ``columns`` and ``group_by`` also take ``"a,b"`` text or a
    list."""

    storage: str | None = option(
        None,
        help=f"results root holding leaderboard/, a path or a URI such as s3://bucket/p "
        f"(default: ${STORAGE_ENV}, else {DEFAULT_STORAGE})",
        metavar="ROOT",
    )
    sweep: str | None = option(None, help="only this sweep's rows", metavar="S")
    where: str | None = option(
        None,
        help="pandas query filter, e.g. \"method == 'sgt' and clean_acc > 0.9\"",
        metavar="EXPR",
    )
    sort: str | None = option(
        None, help="sort by this column (with --group-by: e.g. clean_acc_mean)", metavar="COL"
    )
    ascending: bool = option(False, help="sort smallest first (default: largest first)")
    top: int | None = option(None, help="keep the first N rows after sorting", low=1, metavar="N")
    columns: tuple[str, ...] | None = option(
        None, help="comma-separated columns to show, in this order", metavar="A,B,..."
    )
    group_by: tuple[str, ...] | None = option(
        None,
        help="comma-separated columns; one row per group with n and the mean and std of "
        "each metric (e.g. method,dataset averages over seeds)",
        metavar="A,B",
    )
    format: str = option(
        "table",
        help="output format (default: table; accuracies as percentages there)",
        choices=FORMATS,
    )

    def __post_init__(self) -> None:
        for name in ("columns", "group_by"):
            value = getattr(self, name)
            if value is None:
                continue
            text = value.split(",") if isinstance(value, str) else value
            names = tuple(str(item).strip() for item in text if str(item).strip())
            if not names:
                raise ConfigError(name, "give one or more comma-separated column names")
            object.__setattr__(self, name, names)  # frozen: normalize once, here
        validate(self)


def leaderboard_text(request: LeaderboardQuery) -> str:
    """The text ``limelight leaderboard`` prints for ``request``: the rows as
    ``request.format``, or one line saying that there are none."""
    root = default_root(request.storage)
    if not is_uri(root) and not Path(root).is_dir():  # a typo is not an empty leaderboard
        raise ConfigError("storage", f"{root} does not exist (the results root of a sweep)")
    try:
        frame = read_leaderboard(root, request.sweep, columns=needed_columns(request))
    except (OSError, ValueError) as error:  # pyarrow: unknown URI scheme, bucket, network
        where = f"{str(root).rstrip('/')}/{FOLDER}"
        raise ConfigError("storage", f"cannot read {where}: {_one_line(error)}") from error
    if frame.empty:
        where = f" for sweep {request.sweep!r}" if request.sweep else ""
        return f"no rows found under {str(root).rstrip('/')}/{FOLDER}{where}"
    columns = None if request.columns is None else list(request.columns)
    frame = query(
        frame,
        where=request.where,
        sort=request.sort,
        descending=not request.ascending,
        top=request.top,
        columns=columns,
        group_by=None if request.group_by is None else list(request.group_by),
    )
    return format_frame(frame, request.format, selected=columns is not None)


def needed_columns(request: LeaderboardQuery) -> list[str] | None:
    """The columns ``request`` shows or uses (None: all). Reading only these is most of
    the speed at 100,000 rows: the curves and the config JSON of every row cost seconds
    and a gigabyte to turn into Python objects (docs/sweeps.md)."""
    if request.format in ("csv", "json") and request.columns is None and not request.group_by:
        return None  # the raw formats keep every column
    names: set[str] = {"trial_id", "created_at"}  # the rows' order (read_leaderboard)
    if request.group_by:
        names |= {*request.group_by, *METRIC_COLUMNS}
    elif request.columns is None:
        hidden = {*TABLE_HIDDEN, *TABLE_PROVENANCE}
        names |= {name for name in SCHEMA.names if name not in hidden}
    for name in (*(request.columns or ()), *([request.sort] if request.sort else [])):
        names.add(re.sub(r"_(mean|std)$", "", name))  # a grouped column's metric
    names |= _identifiers(request.where or "")
    return sorted(names)


def _identifiers(expression: str) -> set[str]:
    """The names in a ``--where`` expression (a wrong one still reads, then fails in
    ``_where`` with the columns listed)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expression).readline))
    except (tokenize.TokenError, SyntaxError):
        return set(SCHEMA.names)
    names = {token.string for token in tokens if token.type == tokenize.NAME}
    names |= {token.string.strip("`") for token in tokens if token.string.startswith("`")}
    return names


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
    ``METRIC_COLUMNS`` present. Bad input raises ``ConfigError`` naming the argument.
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
            raise ConfigError("sort", f"cannot sort by {sort!r} ({_one_line(error)})") from error
    if top is not None:
        if top < 0:
            raise ConfigError("top", f"must be 0 or more, got {top}")
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
        raise ConfigError(
            argument,
            f"unknown column {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(map(str, frame.columns))}",
        )


def _where(frame: pd.DataFrame, expression: str) -> pd.DataFrame:
    """The rows where ``expression`` (pandas ``eval`` syntax) holds; ``ConfigError``
    in words for what users get wrong: an unknown name (often an unquoted string), a
    syntax error, an expression that is not a condition."""
    try:
        mask = frame.eval(expression)
    except pd.errors.UndefinedVariableError as error:
        match = re.search(r"name '([^']+)'", str(error))
        name = match.group(1) if match else _one_line(error)
        raise ConfigError(
            "where",
            f"unknown name {name!r} in {expression!r}: quote a string value "
            f"(method == 'erm'); columns: {', '.join(map(str, frame.columns))}",
        ) from error
    except Exception as error:  # eval raises a zoo of types (SyntaxError, TypeError, ...)
        kind = type(error).__name__
        raise ConfigError(
            "where", f"bad expression {expression!r}: {kind}: {_one_line(error)}"
        ) from error
    if not (isinstance(mask, pd.Series) and pd.api.types.is_bool_dtype(mask)):
        raise ConfigError(
            "where",
            f"{expression!r} is not a condition on the rows: write a comparison, e.g. "
            "robust_acc > 0.5 and method == 'asgt'",
        )
    return frame[mask.fillna(False).astype(bool)]


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
        raise ConfigError("group_by", f"cannot group by {keys} ({_one_line(error)})") from error
    return out.reset_index()
