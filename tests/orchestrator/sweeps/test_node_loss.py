"""A node lost mid-sweep: on a real three-node ``ray.cluster_utils.Cluster``, the trials
running on the removed node run again elsewhere (``FailureConfig``) and every trial
leaves exactly one ``ok`` row (benchmarks/sweep_scale.py --node-loss measures the same).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from orchestrator.leaderboard import read_leaderboard
from orchestrator.sweeps.spec import parse_spec
from orchestrator.sweeps.tune import run_sweep

SPEC = {
    "name": "lost",
    "method": "erm",
    "dataset": "digits",
    "train": {"epochs": 8},
    "search": {"lr": {"loguniform": [0.01, 0.1]}},
    "eval": {"eval_eps": 0.1, "attacks": ["pgd"], "pgd_steps": 2, "limit": 20},
    "objective": {"robust_acc": "max"},
    "trials": 6,
    "seeds": [0],
    "max_concurrent": 4,
    "resources": {"cpus": 1},
    "val_fraction": 0.1,
    "keep_checkpoints": 2,
}


def _remove_when_busy(cluster: Any, node: Any, removed: dict[str, int]) -> None:
    """Remove ``node`` as soon as a trial runs on it."""
    from ray.util.state import list_actors

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        running = [
            actor
            for actor in list_actors(filters=[("state", "=", "ALIVE")])
            if actor.get("node_id") == node.node_id
            and "ImplicitFunc" in actor.get("class_name", "")
        ]
        if running:
            time.sleep(1.0)  # into its epochs
            cluster.remove_node(node)
            removed["trials"] = len(running)
            return
        time.sleep(0.2)


def test_a_lost_nodes_trials_run_again_and_leave_one_row_each(starts_ray, tmp_path: Path):
    import ray
    from deltalake import DeltaTable
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=2)
    doomed = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    removed: dict[str, int] = {}
    try:
        remover = threading.Thread(target=_remove_when_busy, args=(cluster, doomed, removed))
        remover.start()
        report = run_sweep(parse_spec(SPEC), storage=str(tmp_path))
        remover.join(timeout=10)
    finally:
        ray.shutdown()
        cluster.shutdown()

    assert removed.get("trials", 0) >= 1  # the node went while a trial ran on it
    rows = read_leaderboard(str(tmp_path), "lost")
    assert len(rows) == 6 and set(rows["status"]) == {"ok"}, rows[["trial_id", "error"]]
    assert report.ok == 6 and report.errors == 0 and report.unfinished == 0
    raw = DeltaTable(str(tmp_path / "leaderboard")).to_pandas()
    assert len(raw) == 6 and raw["trial_id"].nunique() == 6  # once, for any Delta reader
