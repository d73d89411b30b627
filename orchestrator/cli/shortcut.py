"""``limelight shortcut``: how much each method follows a planted feature that codes the
label in training (digits_shortcut's patch, mnist5k_decoy's swatch;
``orchestrator.sweeps.shortcut``)."""

from __future__ import annotations

import argparse

from orchestrator.config import RunSettings
from orchestrator.flags import add_fields, from_flags
from orchestrator.sweeps.shortcut.plan import ShortcutRequest

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = (
    "Train ERM, PGD-AT, SGT, ASGT, LGR (once per flagging strategy), RRR (on the data "
    "set's annotation masks) and a random-feature control on digits_shortcut (or "
    "--dataset mnist5k_decoy), per seed, and score each on the test split: the share of "
    "predictions that follow a wrong-class patch, accuracy (and its gap to the control), "
    "and for LGR the precision/recall of its flagged pixels against the true patch. One "
    "leaderboard row per model (sweep NAME); the same command again skips the finished "
    "rows. See docs/shortcut.md."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, ShortcutRequest)
    add_fields(parser, RunSettings, include=("storage", "device", "actors", "address"))


def run(args: argparse.Namespace) -> int:
    """Run the benchmark the flags describe and print its summary; 1 if a model failed."""
    from orchestrator.sweeps.shortcut import ShortcutPlan, format_summary, run_shortcut

    plan = ShortcutPlan.of(from_flags(args, ShortcutRequest), from_flags(args, RunSettings))
    request = plan.request
    report = run_shortcut(plan, progress=lambda line: print(line, flush=True))
    print(
        f"\nshortcut benchmark {plan.name!r} on {plan.dataset} (train share "
        f"{request.train_share:g}, seeds {','.join(map(str, request.seeds))}): "
        f"{report.trained} trained, {report.skipped} from the leaderboard, "
        f"{report.failed} failed, {report.wall_s:.0f}s"
    )
    print(format_summary(report.summary))
    print(
        "follows patch: share of test predictions equal to a wrong-class patch's class; "
        "± = std over seeds"
    )
    print(f"rows: limelight leaderboard --storage {plan.root} --sweep {plan.name}")
    return 1 if report.failed else 0
