"""One driver per sweep folder, and a sweep that already ran is finished, not repeated.

``claim_sweep`` is what ``run_sweep`` holds while Tune runs: a lock file in the sweep's
folder (``DRIVER_LOCK``, created with ``O_EXCL``, so two drivers started at once cannot
both get it) and, without ``--resume``, the refusal to start over a sweep that left
anything behind (Tune's state, a row, a run directory). Starting it again used to
append the same configurations a second time and prune the first run's checkpoints.

A lock left by a killed driver on this host (its process is gone) is taken over; one
from another host cannot be checked and is named in the error, with the way out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from orchestrator.config import ConfigError
from orchestrator.layout import RUNS_DIR
from orchestrator.leaderboard import read_leaderboard

__all__ = ["DRIVER_LOCK", "claim_sweep", "previous_run"]

log = logging.getLogger(__name__)

#: The lock file in ``<root>/<sweep>/``: the driver's host, pid and start time.
DRIVER_LOCK = "driver.lock"


def previous_run(root: str, name: str, *, restorable: bool) -> str | None:
    """What an earlier run of sweep ``name`` left under ``root``, in words, or None.

    A folder holding only ``spec.yaml`` (a driver killed before Tune started) is not a
    run: nothing of it can be lost, and ``--resume`` would have nothing to restore.
    """
    rows = read_leaderboard(root, name, columns=["trial_id"])
    runs = Path(root) / name / RUNS_DIR
    run_dirs = sum(1 for _ in runs.iterdir()) if runs.is_dir() else 0
    if not (restorable or len(rows) or run_dirs):
        return None
    return f"{len(rows)} rows, {run_dirs} run directories"


@contextlib.contextmanager
def claim_sweep(root: str, name: str, *, resume: bool, restorable: bool) -> Iterator[None]:
    """Hold sweep ``name``'s folder for this driver while the body runs.

    Raises ``ConfigError`` (before any cluster work) when another live driver holds it,
    or, without ``resume``, when an earlier run left rows, run directories or Tune's
    state there: naming ``--resume`` (finish it) and ``--name`` (a new run of the spec).
    """
    experiment = Path(root) / name
    experiment.mkdir(parents=True, exist_ok=True)
    lock = experiment / DRIVER_LOCK
    _acquire(lock, name)
    try:
        if not resume:
            earlier = previous_run(root, name, restorable=restorable)
            if earlier is not None:
                raise ConfigError(
                    "name",
                    f"sweep {name!r} already ran under {root} ({earlier}): --resume finishes "
                    "it; --name NEW starts a new run of the spec beside it (with "
                    "--sampler-seed N it samples other configurations)",
                )
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def _acquire(lock: Path, name: str) -> None:
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for _attempt in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock)
            if holder is not None and _is_stale(holder):
                log.info("taking over %s from a driver that is gone (pid %s)", lock, holder["pid"])
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            raise ConfigError("name", _held_message(lock, name, holder)) from None
        with os.fdopen(descriptor, "w") as file:
            json.dump(record, file)
        return
    raise ConfigError("name", _held_message(lock, name, _holder(lock)))


def _holder(lock: Path) -> dict | None:
    """The lock's record; None while its writer has not written it yet (or garbage)."""
    try:
        record = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "pid" in record else None


def _is_stale(holder: dict) -> bool:
    """True when the holder ran on this host and its process is gone."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError):
        return False
    return False


def _held_message(lock: Path, name: str, holder: dict | None) -> str:
    who = "another driver"
    if holder is not None:
        who = f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')})"
    return (
        f"sweep {name!r} is being run by {who}: wait for it, or give this run another "
        f"--name; if that driver is gone, remove {lock}"
    )
