"""Shared fixtures: the embedded digits data and a model trained on it once per session,
and the marking of tests that start Ray.

A test that starts Ray (a local instance, a cluster, a job head, or code under test that
calls ``ray.init``) uses one of ``RAY_FIXTURES`` and is marked ``ray`` from that alone;
``make test-fast`` runs the others (``-m "not ray"``). ``_ray_guard`` fails an unmarked
test that started Ray in the test process anyway, so the fast subset stays Ray-free as
tests are added.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from methods.data import Dataset, load_dataset
from methods.loop import LoopConfig, fit
from methods.models import build_model
from methods.training import ERM


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits")


def digits_model(dataset: Dataset, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(
        "small_cnn", dataset.input_shape, dataset.num_classes, dataset.mean, dataset.std
    )


@pytest.fixture(scope="session")
def trained_digits(digits: Dataset) -> torch.nn.Module:
    """small_cnn trained with ERM for 12 epochs (~2 s): ~95%+ clean accuracy."""
    model = digits_model(digits)
    fit(model, ERM(), digits.train, config=LoopConfig(epochs=12, seed=0), device="cpu")
    return model.eval()


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory) -> Path:
    """A small_cnn checkpoint trained for 3 epochs through `limelight train`."""
    from orchestrator.cli import main

    out = tmp_path_factory.mktemp("digits_run")
    argv = [
        "train",
        "--epochs",
        "3",
        "--out",
        str(out),
        "--eps",
        "0.1",
        "--attacks",
        "pgd",
        "--pgd-steps",
        "2",
        "--limit",
        "20",
        "--eval-mode",
        "pgd",
    ]
    assert main(argv) == 0
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance with 2 CPUs for one test module (started by the tests)."""
    import ray

    ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def starts_ray():
    """For a test whose code under test starts a local Ray itself (a sweep, LGR's LIME
    actors, ``limelight explain``, or a subprocess that does; the guard below sees only
    the test's own process): marks it ``ray`` and shuts Ray down after."""
    yield
    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()


#: Fixtures that start Ray; a test using any of them (directly or through another
#: fixture) is marked ``ray``.
RAY_FIXTURES = frozenset({"local_ray", "starts_ray", "two_nodes", "ray_head", "sweep_ray"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if RAY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ray)


def _own_ray_sessions() -> set[str]:
    # Ray names each session folder ..._<pid of the process that started it>; other
    # processes (a second pytest, a user's Ray) start theirs with other pids.
    root = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray"
    return {p.name for p in root.glob(f"session_*_{os.getpid()}")} if root.is_dir() else set()


@pytest.fixture(autouse=True)
def _ray_guard(request: pytest.FixtureRequest):
    before = _own_ray_sessions()
    yield
    if request.node.get_closest_marker("ray") is None and _own_ray_sessions() - before:
        pytest.fail(
            "this test started Ray: use the starts_ray fixture (or another of "
            "RAY_FIXTURES in tests/conftest.py) so that make test-fast leaves it out"
        )
