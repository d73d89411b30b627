"""``limelight leaderboard``: query the leaderboard (a Delta table) of a results root.

Torch-free, like the ``orchestrator.leaderboard`` package it prints: reading results
must stay cheap.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from methods.options import ConfigError
from orchestrator.flags import add_fields, from_flags
from orchestrator.leaderboard import LeaderboardQuery, leaderboard_text, repair
from orchestrator.storage import default_root, is_uri

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Print the leaderboard (one row per finished trial; accuracies on the test split). "
    "Rows marked ! carry audit warnings."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, LeaderboardQuery)
    parser.add_argument(
        "--repair",
        action="store_true",
        help="first move unreadable data files to ROOT/leaderboard-quarantine/ (their "
        "rows are named as lost), take in part files of the old layout, drop superseded "
        "rows and compact; then print as usual",
    )


def run(args: argparse.Namespace) -> int:
    request = from_flags(args, LeaderboardQuery)
    if args.repair:
        root = default_root(request.storage)
        if not is_uri(root) and not Path(root).is_dir():
            raise ConfigError("storage", f"{root} does not exist (the results root of a sweep)")
        for line in repair(root).lines():
            print(f"repair: {line}")
    print(leaderboard_text(request))
    return 0
