"""Shared fixtures: the embedded digits data and a model trained on it once per session."""

from __future__ import annotations

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
