"""The leaderboard: one row per finished trial, in one Delta Lake table per results root.

``<root>/leaderboard/`` is the table (``io``): rows are appended, one commit each (a
reader never sees half of one; writers at once lose nothing), and readers keep the
newest row per (sweep, trial_id). ``maintain`` (the end of every sweep) drops
superseded rows, compacts and vacuums; ``repair`` quarantines an unreadable data file.
``deltalake`` reads the table as Arrow, and so pandas and DuckDB (docs/sweeps.md);
``read_leaderboard`` adds the newest-row rule and reads only the columns asked for.
``query`` and ``format_frame`` are what ``limelight leaderboard`` prints
(``leaderboard_text`` of a ``LeaderboardQuery``).

By job: ``schema`` (the columns, ``LeaderboardRow`` and its value checks), ``io`` (the
table), ``queries`` (``query``: filter, group, sort; ``LeaderboardQuery``,
``leaderboard_text``) and ``formats`` (table, csv, json, markdown). The command line is
``orchestrator.cli.leaderboard``.

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
    QUARANTINE,
    SWEEP,
    RepairReport,
    append_row,
    append_rows,
    empty_leaderboard,
    export_rows,
    import_rows,
    maintain,
    read_leaderboard,
    read_rows_file,
    read_trial_row,
    repair,
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
    "QUARANTINE",
    "SCHEMA",
    "STATUSES",
    "SWEEP",
    "TABLE_HIDDEN",
    "TABLE_PROVENANCE",
    "LeaderboardQuery",
    "LeaderboardRow",
    "RepairReport",
    "append_row",
    "append_rows",
    "empty_leaderboard",
    "encode_config",
    "export_rows",
    "format_frame",
    "import_rows",
    "leaderboard_text",
    "maintain",
    "query",
    "read_leaderboard",
    "read_rows_file",
    "read_trial_row",
    "repair",
]
