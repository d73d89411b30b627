"""The model contract, run over every entry of the registry: built for its data sets'
shapes, takes [0,1] inputs, normalizes inside, saves and loads with weights_only, and
passes gradients to the input (attacks and saliency need them)."""

from __future__ import annotations

import functools
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.data import DATASETS
from methods.models import MODELS, Normalize, build_model, default_model

# The shapes each registered model is meant for: (name, (C, H, W), classes).
CASES = [
    ("small_cnn", (1, 8, 8), 10),  # digits
    ("small_cnn", (3, 32, 32), 10),
    ("tiny_cnn", (3, 32, 32), 10),
    ("tiny_cnn", (1, 8, 8), 10),
    ("sgt_mnist_cnn", (1, 28, 28), 10),  # MNIST
    ("resnet18", (3, 32, 32), 10),  # CIFAR-10
    ("resnet18", (3, 32, 32), 100),  # CIFAR-100
    ("airbench", (3, 32, 32), 10),
    ("airbench", (3, 32, 32), 100),
]
IDS = [f"{name}-{'x'.join(map(str, shape))}-{classes}" for name, shape, classes in CASES]

# Distinct per channel, so a swapped or broadcast-wrong statistic shows.
MEAN = (0.1, 0.2, 0.3)
STD = (0.2, 0.3, 0.4)


def stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return MEAN[:channels], STD[:channels]


@functools.cache
def built(name: str, shape: tuple[int, int, int], classes: int) -> nn.Module:
    """Built once per case (resnet18 has 11M parameters), in eval mode (BatchNorm, dropout)."""
    torch.manual_seed(0)
    return build_model(name, shape, classes, *stats(shape[0])).eval()


def inputs(shape: tuple[int, int, int]) -> torch.Tensor:
    """A random image in [0,1] and the two extremes, all 0 and all 1."""
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
    return torch.cat([x, torch.zeros(1, *shape), torch.ones(1, *shape)])


@functools.cache
def forward(
    name: str, shape: tuple[int, int, int], classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, logits, what the network behind Normalize received): one forward per case,
    shared by the tests (a CPU forward of resnet18 costs ~0.2-0.5 s even at batch 1)."""
    model = built(name, shape, classes)
    seen = []
    hook = model[1].register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    x = inputs(shape)
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        hook.remove()
    return x, logits, seen[0]


def test_cases_cover_the_registry():
    assert {name for name, _, _ in CASES} == set(MODELS)


@pytest.mark.parametrize(("name", "shape", "classes"), CASES, ids=IDS)
def test_output_shape_on_unit_range_inputs(name, shape, classes):
    x, logits, _ = forward(name, shape, classes)
    assert logits.shape == (len(x), classes)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("name", "shape", "classes"), CASES, ids=IDS)
def test_normalize_comes_first(name, shape, classes):
    model = built(name, shape, classes)
    assert isinstance(model[0], Normalize)
    x, _, net_input = forward(name, shape, classes)
    mean, std = (torch.tensor(s).view(1, -1, 1, 1) for s in stats(shape[0]))
    expected = (x - mean) / std
    torch.testing.assert_close(model[0](x), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(net_input, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("name", "shape", "classes"), CASES, ids=IDS)
def test_state_dict_round_trip(name, shape, classes):
    model = built(name, shape, classes)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert "0.mean" in state and "0.std" in state  # normalization travels with the weights
    torch.manual_seed(1)  # different initial weights
    fresh = build_model(name, shape, classes, *stats(shape[0])).eval()
    assert not all(
        torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters(), strict=True)
    )
    fresh.load_state_dict(state)
    x, logits, _ = forward(name, shape, classes)
    with torch.no_grad():
        assert torch.equal(fresh(x), logits)


@pytest.mark.parametrize(("name", "shape", "classes"), CASES, ids=IDS)
def test_gradients_reach_the_input(name, shape, classes):
    model = built(name, shape, classes)
    x = inputs(shape).requires_grad_(True)
    labels = torch.arange(len(x)) % classes
    loss = F.cross_entropy(model(x), labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    assert grad.shape == x.shape
    assert torch.isfinite(grad).all()
    assert (grad.flatten(1).abs().sum(1) > 0).all()  # every image gets a gradient
    assert all(p.grad is None for p in model.parameters())  # shared model stays clean


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="nope") as info:
        build_model("nope", (1, 8, 8), 10, (0.5,), (0.5,))
    for name in MODELS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("mean", "std"),
    [((0.5,), (0.5, 0.5, 0.5)), ((0.5, 0.5, 0.5), (0.5,)), ((0.5, 0.5), (0.5, 0.5))],
)
def test_statistics_must_match_channels(mean, std):
    with pytest.raises(ValueError, match="3 channels"):
        build_model("small_cnn", (3, 32, 32), 10, mean, std)


@pytest.mark.parametrize("dataset", DATASETS)
def test_default_model_is_registered(dataset):
    assert default_model(dataset) in MODELS


@pytest.mark.parametrize("channels", [1, 3])
def test_normalize_lays_cpu_batches_out_channels_last_with_the_same_logits(channels):
    # The convolutions choose their CPU path by the strides: an attack's fresh NCHW
    # tensor took the slow one (benchmarks/evaluate.py; methods.models._channels_last).
    torch.manual_seed(0)
    model = build_model("small_cnn", (channels, 8, 8), 10, [0.5] * channels, [0.25] * channels)
    x = torch.rand(16, channels, 8, 8)
    assert x.is_contiguous() and x.stride()[1] == 64
    normalized = model[0](x)
    assert normalized.stride() == (channels * 64, 1, 8 * channels, channels)
    reference = model[1]((x - 0.5) / 0.25)  # the body on the NCHW layout
    torch.testing.assert_close(model(x), reference, rtol=1e-5, atol=1e-5)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).sum(), x)
    assert grad.shape == x.shape and grad.abs().sum() > 0
