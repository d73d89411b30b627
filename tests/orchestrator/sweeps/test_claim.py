"""One driver per sweep folder, and the same sweep again is refused unless resumed
(``orchestrator.sweeps.claim``): the lock, a stale lock, and what counts as a run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from orchestrator.config import ConfigError
from orchestrator.leaderboard import LeaderboardRow, append_row
from orchestrator.sweeps.claim import DRIVER_LOCK, claim_sweep


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _lock(root, name: str, **record) -> None:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DRIVER_LOCK).write_text(json.dumps(record))


def test_the_lock_is_held_while_the_sweep_runs_and_released_after(tmp_path):
    with claim_sweep(str(tmp_path), "s", resume=False, restorable=False):
        holder = json.loads((tmp_path / "s" / DRIVER_LOCK).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with (
            pytest.raises(ConfigError) as refused,
            claim_sweep(str(tmp_path), "s", resume=True, restorable=True),
        ):  # a second driver of the same sweep
            pass
        assert refused.value.field == "name"
        assert f"being run by pid {os.getpid()}" in refused.value.message
    assert not (tmp_path / "s" / DRIVER_LOCK).exists()


def test_a_lock_whose_driver_is_gone_is_taken_over(tmp_path):
    _lock(tmp_path, "s", host=socket.gethostname(), pid=_dead_pid(), started="then")
    with claim_sweep(str(tmp_path), "s", resume=True, restorable=True):
        assert json.loads((tmp_path / "s" / DRIVER_LOCK).read_text())["pid"] == os.getpid()


@pytest.mark.parametrize(
    "record",
    [
        {"host": "another-host", "pid": 1, "started": "then"},  # cannot be checked
        {"host": socket.gethostname(), "pid": os.getppid(), "started": "then"},  # alive
        {},  # being written
    ],
)
def test_a_lock_that_may_be_live_is_never_taken(tmp_path, record):
    _lock(tmp_path, "s", **record)
    with (
        pytest.raises(ConfigError) as refused,
        claim_sweep(str(tmp_path), "s", resume=True, restorable=True),
    ):
        pass
    assert str(tmp_path / "s" / DRIVER_LOCK) in refused.value.message
    assert (tmp_path / "s" / DRIVER_LOCK).exists()  # still theirs


def test_the_same_sweep_again_is_refused_without_resume(tmp_path):
    row = LeaderboardRow(
        sweep="s", trial_id="t1", config_id="c", method="erm", dataset="digits", config={},
        eval_eps=0.1, status="ok", wall_s=1.0, model="small_cnn", seed=0, epochs=1,
    )  # fmt: skip
    append_row(str(tmp_path), row)
    with (
        pytest.raises(ConfigError) as refused,
        claim_sweep(str(tmp_path), "s", resume=False, restorable=False),
    ):
        pytest.fail("the body ran")
    message = refused.value.message
    assert refused.value.field == "name" and "1 rows" in message
    assert "--resume" in message and "--name NEW" in message
    assert not (tmp_path / "s" / DRIVER_LOCK).exists()  # released on the way out
    with claim_sweep(str(tmp_path), "s", resume=True, restorable=True):
        pass


@pytest.mark.parametrize("left", ["runs", "state"])
def test_run_directories_or_tunes_state_also_count_as_a_run(tmp_path, left):
    (tmp_path / "s" / "runs" / "t1").mkdir(parents=True)
    if left == "state":
        (tmp_path / "s" / "runs" / "t1").rmdir()
    with (
        pytest.raises(ConfigError),
        claim_sweep(str(tmp_path), "s", resume=False, restorable=left == "state"),
    ):
        pass


def test_a_folder_with_only_the_spec_is_not_a_run(tmp_path):
    """A driver killed before Tune started: nothing to resume, nothing to lose."""
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "spec.yaml").write_text("name: s\n")
    with claim_sweep(str(tmp_path), "s", resume=False, restorable=False):
        pass
