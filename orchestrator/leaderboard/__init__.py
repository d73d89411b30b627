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
``format_frame`` are what ``limelight leaderboard`` prints (``leaderboard_text`` of a
``LeaderboardQuery``).

By job: ``schema`` (the columns, ``LeaderboardRow`` and its value checks), ``io``
(atomic part files, ``append_row``, ``read_leaderboard``), ``queries`` (``query``:
filter, group, sort; ``LeaderboardQuery``, ``leaderboard_text``) and ``formats`` (table,
csv, json, markdown). The command line is ``orchestrator.cli.leaderboard``.

This package imports neither Ray nor torch: reading results must stay cheap.
"""

from orchestrator.leaderboard.formats import (
    FORMATS,
    TABLE_HIDDEN,
    TABLE_PROVENANCE,
    format_frame,
)
from orchestrator.leaderboard.io import (
    FOLDER,
    PARTITION,
    append_row,
    empty_leaderboard,
    export_rows,
    read_leaderboard,
    read_rows_file,
    read_trial_row,
    trial_file_name,
)
from orchestrator.leaderboard.queries import LeaderboardQuery, leaderboard_text, query
from orchestrator.leaderboard.schema import (
    ACCURACY_COLUMNS,
    CURVE_POINT,
    FAITHFULNESS_POINT,
    METRIC_COLUMNS,
    SCHEMA,
    STATUSES,
    LeaderboardRow,
    encode_config,
)

__all__ = [
    "ACCURACY_COLUMNS",
    "CURVE_POINT",
    "FAITHFULNESS_POINT",
    "FOLDER",
    "FORMATS",
    "METRIC_COLUMNS",
    "PARTITION",
    "SCHEMA",
    "STATUSES",
    "TABLE_HIDDEN",
    "TABLE_PROVENANCE",
    "LeaderboardQuery",
    "LeaderboardRow",
    "append_row",
    "empty_leaderboard",
    "encode_config",
    "export_rows",
    "format_frame",
    "leaderboard_text",
    "query",
    "read_leaderboard",
    "read_rows_file",
    "read_trial_row",
    "trial_file_name",
]
