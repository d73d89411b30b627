"""The multi-node shape on one machine: a `ray.cluster_utils.Cluster` with a CPU head and
a second node declaring two (fake) GPUs."""

from __future__ import annotations

from collections import Counter

import pytest
import ray
from ray.cluster_utils import Cluster

from methods.lime import LimeSettings
from orchestrator.checkpoints import read_checkpoint
from orchestrator.explain.actors import explain_split, start_workers

SETTINGS = LimeSettings(num_samples=100, seed=0).resolved(8)


@pytest.fixture(scope="module")
def two_nodes():
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    gpu_node = cluster.add_node(num_cpus=2, num_gpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster, gpu_node
    ray.shutdown()
    cluster.shutdown()


def _placements(workers) -> list[dict]:
    return ray.get([w.where.remote() for w in workers])


def test_cpu_actors_spread_across_nodes(two_nodes, digits_checkpoint):
    state = ray.put(read_checkpoint(digits_checkpoint))
    workers = start_workers(state, SETTINGS, actors=4, cpus_per_actor=1)
    placements = _placements(workers)
    assert len({p["node_id"] for p in placements}) == 2
    assert all(p["gpu_ids"] == [] and p["device"] == "cpu" for p in placements)
    for worker in workers:
        ray.kill(worker)


def test_fractional_gpu_actors_pack_two_to_a_gpu(two_nodes, digits_checkpoint):
    _, gpu_node = two_nodes
    state = ray.put(read_checkpoint(digits_checkpoint))
    workers = start_workers(state, SETTINGS, actors=4, cpus_per_actor=0.5, gpus_per_actor=0.5)
    placements = _placements(workers)
    assert {p["node_id"] for p in placements} == {gpu_node.node_id}
    assert sorted(Counter(g for p in placements for g in p["gpu_ids"]).values()) == [2, 2]
    # Ray granted a GPU that torch cannot see (fake resources): the actors use the CPU.
    assert all(p["device"] == "cpu" for p in placements)
    for worker in workers:
        ray.kill(worker)


def test_explain_runs_on_fractional_gpus(two_nodes, digits_checkpoint, digits, tmp_path):
    report = explain_split(
        str(digits_checkpoint),
        digits,
        split="test",
        settings=SETTINGS,
        limit=8,
        actors=4,
        cpus_per_actor=0.5,
        gpus_per_actor=0.5,
        chunk=2,
        storage=str(tmp_path),
    )
    assert (report.computed, report.requested) == (8, 8)
