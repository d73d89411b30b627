"""Writing and reading the leaderboard's part files.

``<root>/leaderboard/sweep=<sweep>/<trial file>.parquet`` holds one row each. A writer
writes its own file under a temporary name starting with ``.`` (which Parquet readers
skip) and renames it, so a reader never sees half a row and no writer can lose
another's. The file name is a function of the trial id alone, so a re-run trial
replaces its row instead of adding a second. ``read_leaderboard`` reads every part
file, old ones missing newer columns as null, and skips an unreadable one with a
warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator.leaderboard.schema import SCHEMA, LeaderboardRow
from orchestrator.storage import as_uri

__all__ = [
    "FOLDER",
    "PARTITION",
    "append_row",
    "empty_leaderboard",
    "export_rows",
    "read_leaderboard",
    "read_rows_file",
    "read_trial_row",
    "trial_file_name",
]

log = logging.getLogger(__name__)

#: The folder under the results root that holds the data set.
FOLDER = "leaderboard"
#: The Hive partition column (a folder name, not a column in the files).
PARTITION = "sweep"

_LIST_COLUMNS = tuple(f.name for f in SCHEMA if pa.types.is_list(f.type))
# Nullable pandas integers: a null stopped_epoch must not turn the column into floats.
_PANDAS_TYPES = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_.-]")


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
    return _ordered(_to_frame(_read_table(root, sweep)))


def _read_table(root: str, sweep: str | None) -> pa.Table:
    fs, base = _base(root)
    tables = []
    for name, path in _part_files(fs, base, sweep):
        table = _read_part(fs, path)
        if table is not None:
            tables.append(table.add_column(0, PARTITION, pa.array([name] * table.num_rows)))
    return pa.concat_tables(tables) if tables else _empty_table()


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    order = frame.sort_values([PARTITION, "created_at", "trial_id"], kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def export_rows(root: str, sweep: str, path: Path) -> int:
    """Write sweep ``sweep``'s rows under ``root`` to one Parquet file at ``path``
    (atomically: a temporary name, then a rename), ``sweep`` as a column; returns the
    row count. Nothing is written for a sweep without rows."""
    table = _read_table(root, sweep)
    if table.num_rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)
    return table.num_rows


def read_rows_file(path: Path) -> pd.DataFrame:
    """Rows ``export_rows`` wrote, as ``read_leaderboard`` gives them (a file written
    before a column was added gets it as null)."""
    table = pq.read_table(path)
    sweeps = table.column(PARTITION)
    table = _conform(table.drop_columns([PARTITION])).add_column(0, PARTITION, sweeps)
    return _ordered(_to_frame(table))


def read_trial_row(root: str, sweep: str, trial_id: str) -> dict[str, Any] | None:
    """The row of one trial as a dict (``read_leaderboard``'s types), or None: reads
    that trial's part file only, not the sweep."""
    fs, base = _base(root)
    path = f"{base}/{PARTITION}={sweep}/{trial_file_name(trial_id)}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    table = _read_part(fs, path)
    if table is None or table.num_rows == 0:
        return None
    table = table.add_column(0, PARTITION, pa.array([sweep] * table.num_rows))
    return _to_frame(table).to_dict("records")[0]


def empty_leaderboard() -> pd.DataFrame:
    """A frame with ``read_leaderboard``'s columns and no rows."""
    return _to_frame(_empty_table())


def _empty_table() -> pa.Table:
    return SCHEMA.empty_table().add_column(0, PARTITION, pa.array([], pa.string()))


def _to_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas(types_mapper=_PANDAS_TYPES.get)
    for name in _LIST_COLUMNS:  # to_pandas gives numpy arrays; lists are what callers expect
        frame[name] = pd.Series(table.column(name).to_pylist(), index=frame.index, dtype=object)
    return frame
