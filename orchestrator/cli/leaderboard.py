"""``limelight leaderboard``: query the Parquet leaderboard of a results root.

Torch-free, like the ``orchestrator.leaderboard`` package it prints: reading results
must stay cheap.
"""

from __future__ import annotations

import argparse

from orchestrator.flags import add_fields, from_flags
from orchestrator.leaderboard import LeaderboardQuery, leaderboard_text

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Print the leaderboard (one row per finished trial; accuracies on the test split). "
    "Rows marked ! carry audit warnings."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, LeaderboardQuery)


def run(args: argparse.Namespace) -> int:
    print(leaderboard_text(from_flags(args, LeaderboardQuery)))
    return 0
