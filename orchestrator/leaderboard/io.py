"""Writing and reading the leaderboard: one Delta Lake table at ``<root>/leaderboard``.

Why Delta (docs/sweeps.md has the measurements): one Parquet file per trial cost ~4 ms
a file to read, 532 s at 100,000 rows; a Delta table read by the shown columns answers
the same query in 0.24 s. Its transaction log gives what the file-per-trial layout got
from renames (a reader never sees half a commit, concurrent writers lose nothing) and
what that layout could not give: compaction without readers ever seeing a row twice.

Rows are only ever appended. A trial that writes again (a retry, the pruning that nulls
a deleted checkpoint) appends a newer row; every reader here keeps the newest row per
(sweep, trial_id), by ``written_at``. ``maintain`` (the end of each sweep) rewrites a
sweep whose rows were superseded, so that plain Delta readers (``deltalake``, pandas
and DuckDB through it) see one row per trial too, compacts small files and vacuums.

Deliberate choices, each measured in the issue-17 evaluation:

- Not partitioned by sweep: 1,000 sweeps made 1,000 small files, 16 s a read at 10k rows.
- Every write merges the schema (``schema_mode="merge"``): a row with a new column, and
  an old writer after it, fail a plain append.
- A rewrite passes its own snapshot to ``write_deltalake``: given the path, deltalake
  reloads the table and removes files the rewrite never read (a row appended between
  the read and the write was lost that way in a 3-writer test; with the snapshot the
  commit conflicts and is retried).
- Vacuum keeps a day of removed files: ``vacuum(0 h)`` broke a reader of an older
  version.
- deltalake's runtime does not survive ``fork``: a process that used it must start
  helpers that also use it with ``spawn`` (Ray workers are spawned).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from orchestrator.leaderboard.schema import SCHEMA, LeaderboardRow
from orchestrator.storage import as_uri

__all__ = [
    "FOLDER",
    "QUARANTINE",
    "SWEEP",
    "WRITTEN_AT",
    "RepairReport",
    "append_row",
    "append_rows",
    "empty_leaderboard",
    "export_rows",
    "import_rows",
    "maintain",
    "read_leaderboard",
    "read_rows_file",
    "read_trial_row",
    "repair",
]

log = logging.getLogger(__name__)

#: The folder under the results root that holds the Delta table.
FOLDER = "leaderboard"
#: Where ``repair`` moves unreadable data files (outside the table: no reader sees it).
QUARANTINE = "leaderboard-quarantine"
#: The sweep column (a folder name in the layout before the Delta table).
SWEEP = "sweep"
#: When the row was written; the newest row of a (sweep, trial_id) is the row.
WRITTEN_AT = "written_at"
KEYS = (SWEEP, "trial_id")

_WRITTEN_TYPE = pa.timestamp("us", tz="UTC")
#: Created with the table. A day of removed files for readers of an older version; two
#: days of log, or the append cost grows with history (one commit per row).
TABLE_CONFIG = {
    "delta.logRetentionDuration": "interval 2 days",
    "delta.deletedFileRetentionDuration": "interval 1 days",
}
#: ``maintain`` compacts when the table has more small data files than this.
COMPACT_ABOVE_FILES = 32
#: Compaction's target file size. Files this big are left alone: with deltalake's
#: default (100 MB) the whole table was one "small" file that every compaction rewrote,
#: 1.25 s at 100,000 rows (27 MB) and growing with the table. At 8 MB a compaction
#: rewrites at most a few MB; 100,000 rows are ~4 files, which read as fast as one.
TARGET_FILE_BYTES = 8 << 20
_COMMIT_ATTEMPTS = 40

_LIST_COLUMNS = tuple(f.name for f in SCHEMA if pa.types.is_list(f.type))
# Nullable pandas integers: a null stopped_epoch must not turn the column into floats.
_PANDAS_TYPES = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}
_READ_ERRORS = (OSError, pa.ArrowException, ValueError, TypeError)
_T = TypeVar("_T")


def table_uri(root: str | Path) -> str:
    """Where the table is: ``<root>/leaderboard``, a local path made absolute or a URI."""
    return f"{as_uri(root).rstrip('/')}/{FOLDER}"


# ----------------------------------------------------------------------------- writing


def append_row(root: str, row: LeaderboardRow) -> str:
    """Append ``row`` in one commit and return the table's location.

    A row already there for the same (sweep, trial_id) is superseded: readers keep the
    newest, by ``written_at``, this machine's clock (rows of one trial are written
    minutes apart, far beyond the skew of synchronized nodes). The cost does not grow
    with the rows: one small file and one log entry; deltalake reads the log since its
    last checkpoint (at most 100 commits), ~25 ms at 10,000 and at 100,000 rows.
    """
    return append_rows(root, [row])


def append_rows(root: str, rows: Sequence[LeaderboardRow]) -> str:
    """Append ``rows`` in one commit (``append_row`` for many: one log entry)."""
    if not rows:
        return table_uri(root)
    now = datetime.now(timezone.utc)
    table = pa.concat_tables([_keyed(row.to_table(), row.sweep, now) for row in rows])
    _with_retries("append", lambda: _append(table_uri(root), table))
    return table_uri(root)


def _keyed(table: pa.Table, sweep: str, written_at: datetime | pa.ChunkedArray) -> pa.Table:
    """``table`` with the sweep as its first column and ``written_at`` as its last."""
    n = table.num_rows
    written = (
        written_at
        if isinstance(written_at, pa.ChunkedArray)
        else pa.chunked_array([pa.array([written_at] * n, _WRITTEN_TYPE)])
    )
    table = table.add_column(0, SWEEP, pa.array([sweep] * n, pa.string()))
    return table.append_column(pa.field(WRITTEN_AT, _WRITTEN_TYPE), written)


def _append(uri: str, table: pa.Table) -> None:
    write_deltalake(uri, table, mode="append", schema_mode="merge", configuration=TABLE_CONFIG)


def _with_retries(what: str, action: Callable[[], _T]) -> _T:
    """``action`` again on a commit conflict (another writer committed first: appends
    conflict with a concurrent rewrite, a rewrite with a concurrent append)."""
    for attempt in range(_COMMIT_ATTEMPTS):
        try:
            return action()
        except CommitFailedError as error:
            if attempt + 1 == _COMMIT_ATTEMPTS:
                raise
            log.debug("leaderboard: %s conflicted (%s), retrying", what, _first_line(error))
            time.sleep(random.uniform(0.01, 0.05) * min(attempt + 1, 10))
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- reading


def _snapshot(root: str) -> DeltaTable | None:
    """The table's latest version, or None where there is none."""
    try:
        return DeltaTable(table_uri(root))
    except TableNotFoundError:
        return None


def read_leaderboard(
    root: str, sweep: str | None = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """All rows under ``root`` (or one sweep's), one per (sweep, trial_id): the newest.

    Columns: ``sweep``, then ``SCHEMA``'s (or ``sweep`` and those of ``columns`` that
    are in ``SCHEMA``, in ``SCHEMA``'s order: reading only what is shown is most of the
    speed at 100,000 rows). Integer columns are pandas nullable integers
    (``Int64``/``Int32``), ``created_at`` is UTC, list columns hold Python lists
    (``robust_curve``: dicts). Rows written before a column existed have it as null.
    Rows are ordered by sweep, then ``created_at``. An unreadable data file is named in
    a warning and skipped (``limelight leaderboard --repair`` quarantines it). Part
    files of the layout before the table are read too; reading never writes (the next
    ``maintain`` takes them into the table).
    """
    names = _schema_names(columns)
    table = _read_table(root, sweep, names)
    return _ordered(_to_frame(table))


def _schema_names(columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return list(SCHEMA.names)
    wanted = set(columns)
    return [name for name in SCHEMA.names if name in wanted]


def _read_table(
    root: str,
    sweep: str | None,
    names: Sequence[str],
    extra_filter: pads.Expression | None = None,
) -> pa.Table:
    keyed = [*KEYS, *(n for n in names if n not in KEYS)]
    condition = None if sweep is None else pads.field(SWEEP) == sweep
    if extra_filter is not None:
        condition = extra_filter if condition is None else condition & extra_filter
    tables = []
    dt = _snapshot(root)
    if dt is not None:
        stored = set(dt.schema().to_arrow().names)
        read = [name for name in [*keyed, WRITTEN_AT] if name in stored]
        tables.append(_conform(_scan(dt, read, condition), keyed, written=True))
    legacy = _legacy_table(root, sweep)
    if legacy is not None:
        legacy = legacy.filter(condition) if condition is not None else legacy
        tables.append(_conform(legacy, keyed, written=True))
    if not tables:
        return _empty_table(names)
    return _conform(newest_rows(pa.concat_tables(tables)), names)


def _scan(dt: DeltaTable, columns: list[str], condition: pads.Expression | None) -> pa.Table:
    dataset = dt.to_pyarrow_dataset()
    try:
        return dataset.to_table(columns=columns, filter=condition)
    except _READ_ERRORS as error:
        bad = unreadable_files(dt)
        if not bad:
            raise
        for path, reason in bad.items():
            log.warning(
                "leaderboard: skipping unreadable data file %s/%s (%s); "
                "`limelight leaderboard --repair` quarantines it",
                dt.table_uri.removeprefix("file://").rstrip("/"),
                path,
                reason,
            )
        good = [path for path in dataset.files if path not in bad]
        if not good:
            return dataset.schema.empty_table().select(columns)
        rest = pads.dataset(
            good, schema=dataset.schema, format="parquet", filesystem=dataset.filesystem
        )
        log.debug("leaderboard: read failed (%s); read without the bad files", error)
        return rest.to_table(columns=columns, filter=condition)


def unreadable_files(dt: DeltaTable) -> dict[str, str]:
    """Data files of the current version that cannot be read: path (relative to the
    table, as the log names it) -> the reason."""
    dataset = dt.to_pyarrow_dataset()
    bad = {}
    for path in dataset.files:
        try:
            pq.read_table(path, filesystem=dataset.filesystem)
        except _READ_ERRORS as error:
            bad[path] = _first_line(error)
    return bad


def newest_rows(table: pa.Table) -> pa.Table:
    """One row per (sweep, trial_id): the one with the latest ``written_at`` (rows of
    the layout before ``written_at`` existed count as oldest)."""
    if table.num_rows < 2:
        return table
    keys = table.select(list(KEYS))
    if keys.group_by(list(KEYS)).aggregate([]).num_rows == table.num_rows:
        return table  # the common case: nothing superseded, no reordering needed
    frame = keys.to_pandas()
    if WRITTEN_AT in table.column_names:
        frame[WRITTEN_AT] = table.column(WRITTEN_AT).to_pandas()
        frame = frame.sort_values(WRITTEN_AT, kind="stable", na_position="first")
    keep = frame.drop_duplicates(list(KEYS), keep="last").index.sort_values()
    return table.take(pa.array(keep, pa.int64()))


def _conform(table: pa.Table, names: Sequence[str], *, written: bool = False) -> pa.Table:
    """``sweep`` then ``names`` typed as ``SCHEMA`` (then ``written_at`` if
    ``written``): missing columns become null."""
    fields = [pa.field(SWEEP, pa.string())]
    fields += [SCHEMA.field(name) for name in names if name != SWEEP]
    if written:
        fields.append(pa.field(WRITTEN_AT, _WRITTEN_TYPE))
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in fields
    ]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [k for k in (SWEEP, "created_at", "trial_id") if k in frame.columns]
    order = frame.sort_values(keys, kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def read_trial_row(root: str, sweep: str, trial_id: str) -> dict[str, Any] | None:
    """The row of one trial as a dict (``read_leaderboard``'s types), or None. The scan
    skips files whose statistics exclude the trial."""
    table = _read_table(root, sweep, SCHEMA.names, pads.field("trial_id") == trial_id)
    if table.num_rows == 0:
        return None
    return _to_frame(table).to_dict("records")[0]


def export_rows(root: str, sweep: str, path: Path) -> int:
    """Write sweep ``sweep``'s rows under ``root`` to one Parquet file at ``path``
    (atomically: a temporary name, then a rename), ``sweep`` as a column; returns the
    row count. Nothing is written for a sweep without rows."""
    table = _read_table(root, sweep, SCHEMA.names)
    if table.num_rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)
    return table.num_rows


def import_rows(root: str, path: Path, *, status: str = "ok") -> int:
    """Append the rows with ``status`` of a file ``export_rows`` wrote to the table under
    ``root``, as they are (sweep, trial ids, every column); returns how many. A report
    section's committed rows carried to another machine's results root: its sweep then
    runs only the trials they lack."""
    table = _conform(pq.read_table(path), SCHEMA.names)
    table = table.filter(pc.equal(table.column("status"), status))
    if table.num_rows:
        now = pa.array([datetime.now(timezone.utc)] * table.num_rows, _WRITTEN_TYPE)
        table = table.append_column(pa.field(WRITTEN_AT, _WRITTEN_TYPE), now)
        _with_retries("import", lambda: _append(table_uri(root), table))
    return table.num_rows


def read_rows_file(path: Path) -> pd.DataFrame:
    """Rows ``export_rows`` wrote, as ``read_leaderboard`` gives them (a file written
    before a column was added gets it as null)."""
    return _ordered(_to_frame(_conform(pq.read_table(path), SCHEMA.names)))


def empty_leaderboard() -> pd.DataFrame:
    """A frame with ``read_leaderboard``'s columns and no rows."""
    return _to_frame(_empty_table(SCHEMA.names))


def _empty_table(names: Sequence[str]) -> pa.Table:
    return _conform(pa.table({SWEEP: pa.array([], pa.string())}), names)


def _to_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas(types_mapper=_PANDAS_TYPES.get)
    for name in _LIST_COLUMNS:  # to_pandas gives numpy arrays; lists are what callers expect
        if name in frame.columns:
            values = table.column(name).to_pylist()
            frame[name] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# ------------------------------------------------------------------------- maintenance


@dataclass
class RepairReport:
    """What ``repair`` did: files moved aside (with their row counts from the log),
    part files of the old layout taken into the table, rows rewritten, files compacted."""

    quarantined: dict[str, int | None] = field(default_factory=dict)
    migrated: int = 0
    superseded: int = 0
    compacted: bool = False

    def lines(self) -> list[str]:
        out = [
            f"quarantined {path} ({'?' if rows is None else rows} rows lost)"
            for path, rows in self.quarantined.items()
        ]
        if self.migrated:
            out.append(f"moved {self.migrated} part files of the old layout into the table")
        if self.superseded:
            out.append(f"dropped {self.superseded} superseded rows")
        if self.compacted:
            out.append("compacted the data files")
        return out or ["nothing to repair"]


def maintain(root: str, sweep: str | None = None) -> RepairReport:
    """Keep the table fast and plain: rewrite ``sweep`` (every sweep when None) without
    its superseded rows, compact when there are many data files, vacuum removed files
    older than the retention. Called at the end of a sweep; safe next to writers."""
    report = RepairReport(migrated=migrate_legacy(root))
    if _snapshot(root) is None:
        return report
    report.superseded = _drop_superseded(root, sweep)
    dt = _snapshot(root)
    if dt is not None and _small_files(dt) > COMPACT_ABOVE_FILES:
        _with_retries(
            "compaction",
            lambda: _snapshot_or_fail(root).optimize.compact(target_size=TARGET_FILE_BYTES),
        )
        report.compacted = True
    dt = _snapshot(root)
    if dt is not None:
        dt.vacuum(dry_run=False)  # the table's retention (a day): readers of old versions
    return report


def _small_files(dt: DeltaTable) -> int:
    sizes = pa.table(dt.get_add_actions(flatten=True)).column("size_bytes")
    return sum(1 for size in sizes.to_pylist() if size < TARGET_FILE_BYTES // 2)


def _snapshot_or_fail(root: str) -> DeltaTable:
    dt = _snapshot(root)
    if dt is None:
        raise FileNotFoundError(table_uri(root))
    return dt


def _drop_superseded(root: str, sweep: str | None) -> int:
    """Rewrite the sweeps (``sweep``, or all) that hold superseded rows with their
    newest rows only, one commit per sweep; returns the rows dropped."""

    def once(name: str) -> int:
        dt = _snapshot_or_fail(root)
        rows = dt.to_pyarrow_dataset().to_table(filter=pads.field(SWEEP) == name)
        kept = newest_rows(rows)
        dropped = rows.num_rows - kept.num_rows
        if dropped:  # the snapshot itself: a row appended after the read conflicts
            write_deltalake(
                dt,
                kept,
                mode="overwrite",
                predicate=f"{SWEEP} = '{_sql_text(name)}'",
                schema_mode="merge",
            )
        return dropped

    names = _superseded_sweeps(root, sweep)
    return sum(_with_retries(f"rewrite of {name}", lambda n=name: once(n)) for name in names)


def _superseded_sweeps(root: str, sweep: str | None) -> list[str]:
    dt = _snapshot(root)
    if dt is None:
        return []
    condition = None if sweep is None else pads.field(SWEEP) == sweep
    keys = dt.to_pyarrow_dataset().to_table(columns=list(KEYS), filter=condition)
    counts = keys.group_by(list(KEYS)).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts.column("count_all"), 1))
    return sorted(set(repeated.column(SWEEP).to_pylist()))


def _sql_text(value: str) -> str:
    return value.replace("'", "''")


def repair(root: str) -> RepairReport:
    """Move unreadable data files to ``<root>/leaderboard-quarantine/`` and drop them
    from the table (deltalake's ``repair`` removes files that are gone), then
    ``maintain`` everything: afterwards every documented reader works again."""
    quarantined: dict[str, int | None] = {}
    dt = _snapshot(root)
    if dt is not None:
        rows_per_file = _rows_per_file(dt)
        for path in unreadable_files(dt):
            quarantined[_quarantine(root, path)] = rows_per_file.get(Path(path).name)
        if quarantined:
            _with_retries("repair", lambda: _snapshot_or_fail(root).repair(dry_run=False))
    report = maintain(root)  # also takes in the old layout's part files
    report.quarantined = quarantined
    return report


def _rows_per_file(dt: DeltaTable) -> dict[str, int]:
    actions = pa.table(dt.get_add_actions(flatten=True))
    names = [Path(p).name for p in actions.column("path").to_pylist()]
    return dict(zip(names, actions.column("num_records").to_pylist(), strict=True))


def _quarantine(root: str, path: str) -> str:
    """Move ``path`` (absolute on the root's file system, or relative to the table, as
    the table's data files are named) into the quarantine folder."""
    fs, base = pafs.FileSystem.from_uri(as_uri(root))
    base = base.rstrip("/")
    source = path if path.startswith(base) else f"{base}/{FOLDER}/{path}"
    folder = f"{base}/{QUARANTINE}"
    fs.create_dir(folder, recursive=True)
    target = f"{folder}/{source.rsplit('/', 1)[-1]}"
    fs.move(source, target)
    log.warning("leaderboard: moved unreadable %s to %s", source, target)
    return target


# ------------------------------------------------------- the layout before Delta (v1)

_LEGACY_PREFIX = f"{SWEEP}="


def _legacy_table(root: str, sweep: str | None) -> pa.Table | None:
    """The old layout's part files (of ``sweep``, or all) as one keyed table, or None
    where there are none; an unreadable one is named in a warning and skipped."""
    fs, base = pafs.FileSystem.from_uri(table_uri(root))
    tables = [
        table
        for name, path in _legacy_parts(fs, base)
        if sweep is None or name == sweep
        for table in [_read_legacy_part(fs, name, path)]
        if table is not None
    ]
    return pa.concat_tables(tables) if tables else None


def _read_legacy_part(fs: pafs.FileSystem, sweep: str, path: str) -> pa.Table | None:
    """One old part file, keyed (its ``created_at`` as ``written_at``: any row the
    table holds for the trial is newer), or None when it cannot be read."""
    try:
        table = _conform(pq.read_table(path, filesystem=fs), SCHEMA.names)
    except _READ_ERRORS as error:
        log.warning("leaderboard: old part file %s is unreadable (%s)", path, _first_line(error))
        return None
    table = table.drop_columns([SWEEP])
    return _keyed(table, sweep, table.column("created_at").cast(_WRITTEN_TYPE))


def migrate_legacy(root: str) -> int:
    """Take the part files of the layout before the Delta table
    (``<root>/leaderboard/sweep=<s>/<trial>.parquet``) into the table in one commit,
    then delete them; an unreadable one goes to the quarantine folder. Returns the
    part files taken. A crash between the commit and the deletes leaves copies that
    the next run takes again: readers keep one row per trial either way."""
    fs, base = pafs.FileSystem.from_uri(table_uri(root))
    parts = list(_legacy_parts(fs, base))
    if not parts:
        return 0
    tables, taken = [], []
    for sweep, path in parts:
        table = _read_legacy_part(fs, sweep, path)
        if table is None:
            _quarantine(root, path)
            continue
        tables.append(table)
        taken.append(path)
    if tables:
        _with_retries("migration", lambda: _append(table_uri(root), pa.concat_tables(tables)))
    for path in taken:
        with contextlib.suppress(OSError):
            fs.delete_file(path)
    for folder in {path.rsplit("/", 1)[0] for _, path in parts}:
        with contextlib.suppress(OSError):
            if not fs.get_file_info(pafs.FileSelector(folder)):
                fs.delete_dir(folder)
    log.info("leaderboard: moved %d part files of the old layout into %s", len(taken), base)
    return len(taken)


def _legacy_parts(fs: pafs.FileSystem, base: str) -> Iterable[tuple[str, str]]:
    for folder in _children(fs, base):
        if folder.type != pafs.FileType.Directory or not folder.base_name.startswith(
            _LEGACY_PREFIX
        ):
            continue
        sweep = folder.base_name[len(_LEGACY_PREFIX) :]
        for info in _children(fs, folder.path):
            name = info.base_name
            if (
                info.type == pafs.FileType.File
                and name.endswith(".parquet")
                and name[0] not in "._"
            ):
                yield sweep, info.path


def _children(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(folder, allow_not_found=True)
    return sorted(fs.get_file_info(selector), key=lambda info: info.path)
