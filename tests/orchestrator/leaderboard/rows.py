"""One leaderboard row with every required value, for the leaderboard's tests."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from orchestrator.leaderboard import LeaderboardRow

WHEN = datetime(2026, 5, 9, 7, 35, 25, tzinfo=timezone.utc)


def make_row(**overrides: Any) -> LeaderboardRow:
    """A valid ``ok`` row of sweep ``demo``, trial ``t0``; ``overrides`` replace fields."""
    values: dict[str, Any] = {
        "sweep": "demo",
        "trial_id": "t0",
        "config_id": "c0",
        "status": "ok",
        "method": "erm",
        "dataset": "digits",
        "model": "small_cnn",
        "seed": 0,
        "epochs": 2,
        "eval_eps": 0.1,
        "wall_s": 1.5,
        "created_at": WHEN,
        "config": {"method": "erm", "epochs": 2},
    }
    values.update(overrides)
    return LeaderboardRow(**values)
