"""Runs on a real Ray cluster: `ray job submit` of `limelight train` (results land under
the absolute root given; a relative root is refused) and of a smoke sweep (its
leaderboard is read back from the absolute root), and an LGR round's Train job joining
the cluster named by --address. About two minutes on 2 cores."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from orchestrator.config import EvalConfig, RunSettings, TrainConfig
from orchestrator.run import run
from tests.quick import QUICK_EVAL, QUICK_FLAGS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head` on free ports, stopped afterwards by its processes' PIDs (not
    `ray stop`, which would stop every Ray on the machine)."""
    ray.shutdown()
    # Every port free, not the defaults: another Ray on the machine holds those (its
    # dashboard agent on 52365 made every submission here fail, "No available agent").
    port, dashboard, agent, runtime_env, metrics = (_free_port() for _ in range(5))
    temp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    started = subprocess.run(
        [str(RAY), "start", "--head", f"--port={port}", f"--dashboard-port={dashboard}",
         f"--dashboard-agent-listen-port={agent}", f"--runtime-env-agent-port={runtime_env}",
         f"--metrics-export-port={metrics}",
         "--num-cpus=2", "--include-dashboard=true", f"--temp-dir={temp}", "--disable-usage-stats"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{dashboard}"
    yield url, env
    for line in subprocess.run(
        ["pgrep", "-f", str(temp)], capture_output=True, text=True
    ).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(line), signal.SIGKILL)
    time.sleep(1)


def _job(url: str, env: dict, *command: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`ray job submit` of ``command`` from the repository. The head's job agent
    registers some seconds after `ray start` returns; until then a submission fails with
    "No available agent", so that one error is retried for a while."""
    runtime_env = json.dumps({"excludes": [".venv", "results", "data", ".git"]})
    argv = [
        str(RAY), "job", "submit", f"--address={url}", "--working-dir", str(REPO),
        "--runtime-env-json", runtime_env, "--", sys.executable, "-m", "orchestrator", *command,
    ]  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        if "No available agent" not in done.stdout + done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(5)


def _submit(url: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return _job(url, env, "train", "--epochs", "1", *QUICK_FLAGS, *args)


def test_a_job_writes_under_the_absolute_root(ray_head, tmp_path):
    url, env = ray_head
    done = _submit(url, env, "--storage", str(tmp_path), "--out", "job-erm")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "job-erm" / "checkpoint.pt").is_file()
    record = json.loads((tmp_path / "job-erm" / "eval.json").read_text())
    assert record["n_eval"] == QUICK_EVAL.limit


def test_a_job_with_a_relative_root_exits_2(ray_head, tmp_path):
    url, env = ray_head
    done = _submit(url, env, "--out", "job-erm")  # the root defaults to ./results
    assert done.returncode != 0
    assert "--storage: 'results' is relative" in done.stdout, done.stdout[-3000:]
    assert "exit code 2" in (done.stdout + done.stderr).lower() or "failed" in done.stdout


def test_a_smoke_sweep_job_fills_the_leaderboard_under_the_absolute_root(ray_head, tmp_path):
    from orchestrator.leaderboard import read_leaderboard

    url, env = ray_head
    done = _job(
        url, env, "sweep", "search_spaces/demo.yaml", "--smoke", "--trials", "2",
        "--storage", str(tmp_path), timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = read_leaderboard(str(tmp_path), "demo")
    assert len(rows) == 2 and set(rows["status"]) == {"ok"}
    assert "tensorboard --logdir" in done.stdout and "sweep demo: 2 trials" in done.stdout


def test_lgr_rounds_run_on_the_cluster_named_by_address(starts_ray, tmp_path):
    """The rounds' TorchTrainer joins --address (it once started a local Ray instead)."""
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        start = run(
            TrainConfig(dataset="digits_shortcut", epochs=1),
            RunSettings(storage=str(tmp_path), out="erm", device="cpu"),
            eval_config=EvalConfig(
                eps=(0.1,), attacks=("pgd",), pgd_steps=1, limit=10, eval_mode="pgd"
            ),
        )
        assert not ray.is_initialized()  # inline training touches no Ray
        config = TrainConfig.create(
            method="lgr", dataset="digits_shortcut", spurious="annotated", epochs=1,
            rounds=1, attack_eps=0.0, start_checkpoint=str(start.checkpoint),
        )  # fmt: skip
        settings = RunSettings(
            storage=str(tmp_path), out="lgr", device="cpu", workers=2, address=cluster.address
        )
        result = run(
            config,
            settings,
            eval_config=EvalConfig(
                limit=10, attacks=("pgd",), eval_mode="fast", audit_probes=False
            ),
        )
        assert ray.get_runtime_context().gcs_address == cluster.address
        assert (tmp_path / "lgr" / "round1" / "ray" / "train").is_dir()  # a Train run
        assert result.history[-1].epoch == 1
    finally:
        ray.shutdown()
        cluster.shutdown()
