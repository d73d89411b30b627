"""Shared fixtures: the embedded digits data and a model trained on it once per session."""

from __future__ import annotations

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
