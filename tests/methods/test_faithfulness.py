"""SGT's masked-accuracy curve: against the script's per-image recipe, the random
baseline, an uninformative saliency, a model that truly uses known pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.data import Dataset
from methods.evaluate import accuracy
from methods.faithfulness import (
    DEFAULT_FRACTIONS,
    _segment_removal,
    faithfulness_auc,
    lime_masked_accuracy_curve,
    masked_accuracy_curve,
)
from methods.lime import Explanation, LimeSettings, segment
from methods.loop import LoopConfig, fit
from methods.models import build_model
from methods.results import FaithfulnessCurve
from methods.training import ERM

# ----------------------------------------------------------------------------- helpers


class _ShuffleGradient(torch.autograd.Function):
    """Identity forward; backward hands each pixel the gradient of another pixel."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(permutation)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (permutation,) = ctx.saved_tensors
        flat = grad.flatten(2)
        index = permutation[:, None, :].expand_as(flat)
        return flat.gather(2, index).view_as(grad), None


class ScrambledSaliency(nn.Module):
    """The wrapped model's exact predictions, but its input gradient is shuffled across
    pixels by a fresh random permutation per image: a saliency map that says nothing
    about which pixels the predictions use."""

    def __init__(self, model: nn.Module, seed: int) -> None:
        super().__init__()
        self.model = model
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.requires_grad:
            return self.model(x)
        keys = torch.rand(len(x), x.shape[2] * x.shape[3], generator=self.generator)
        return self.model(_ShuffleGradient.apply(x, keys.argsort(1)))


class Gate(nn.Module):
    """Zeroes every pixel outside ``mask``: the model behind it can use only those."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


def _grid_segments(digits: Dataset) -> np.ndarray:
    image = digits.test.tensors(slice(0, 1))[0][0].numpy()
    return segment(image, LimeSettings(segmentation="grid", grid_cell=2))  # 16 cells of 2x2


@pytest.fixture(scope="module")
def test_set(digits):
    return digits.test.tensors()


@pytest.fixture(scope="module")
def curve(trained_digits, test_set) -> FaithfulnessCurve:
    return masked_accuracy_curve(trained_digits, *test_set)


@pytest.fixture(scope="module")
def gated(digits):
    """small_cnn behind a gate that shows it 8 of the 16 2x2 cells, trained on digits.
    Returns the model and the shown cells' ids."""
    segments = _grid_segments(digits)
    shown = np.random.default_rng(0).choice(segments.max() + 1, size=8, replace=False)
    mask = torch.from_numpy(np.isin(segments, shown))
    torch.manual_seed(1)
    body = build_model("small_cnn", digits.input_shape, 10, digits.mean, digits.std)
    model = nn.Sequential(Gate(mask), body)
    fit(model, ERM(), digits.train, config=LoopConfig(epochs=8, seed=1), device="cpu")
    return model.eval(), shown


# ----------------------------------------------------------------------------- record, AUC


def test_record_holds_the_leaderboard_shape(curve, test_set):
    assert curve.fractions == DEFAULT_FRACTIONS
    assert curve.order == "saliency"
    assert len(curve.acc) == len(curve.random_acc) == len(DEFAULT_FRACTIONS)
    for value in (*curve.acc, *curve.random_acc, curve.auc, curve.random_auc):
        assert isinstance(value, float) and 0.0 <= value <= 1.0
    assert curve.gap == pytest.approx(curve.auc - curve.random_auc)
    points = curve.points()
    assert all(set(p) == {"fraction", "acc", "random_acc"} for p in points)
    assert [p["acc"] for p in points] == list(curve.acc)
    assert FaithfulnessCurve.from_dict(json.loads(json.dumps(curve.to_dict()))) == curve


@pytest.mark.parametrize("level", [0.0, 0.37, 1.0])
def test_auc_of_a_constant_curve_is_that_constant(level):
    fractions = (0.0, 0.05, 0.3, 0.9)  # uneven steps
    assert faithfulness_auc(fractions, [level] * 4) == pytest.approx(level)


def test_auc_is_the_normalized_trapezoid():
    fractions, acc = (0.2, 0.4, 1.0), (1.0, 0.5, 0.0)
    # trapezoids 0.2 * 0.75 + 0.6 * 0.25 = 0.3 over a span of 0.8
    assert faithfulness_auc(fractions, acc) == pytest.approx(0.3 / 0.8)
    with pytest.raises(ValueError, match="strictly increasing"):
        faithfulness_auc((0.0, 0.5, 0.5), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="equal length"):
        faithfulness_auc((0.0, 0.5), (1.0,))


# ----------------------------------------------------------------------------- saliency curve


def test_both_curves_start_at_clean_accuracy(curve, trained_digits, test_set):
    # accuracy() averages in float32, the curve counts hits exactly: 1e-6 << 1/360.
    clean = accuracy(trained_digits, *test_set)
    assert curve.acc[0] == curve.random_acc[0] == pytest.approx(clean, abs=1e-6)


def _script_curve(model, images, labels, fractions) -> list[float]:
    """maskedAcc_MNIST.py's recipe written out per image as the script does it:
    |grad| of the log-prob of the true label, mean over channels, topk(largest) of
    k = max(1, int(H*W*p)) pixels, filled with the image's pixel [0, 0, 0]."""
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.log_softmax(model(x), 1).gather(1, labels[:, None]).sum(), x)
    saliency = grad.abs().mean(1)
    out = []
    for p in fractions:
        masked = images.clone()
        if p > 0:
            for i in range(len(images)):
                k = max(1, int(len(saliency[i]) * len(saliency[i]) * p))
                top = torch.topk(saliency[i].flatten(), k, largest=True).indices
                mask = torch.zeros(saliency[i].numel(), dtype=torch.bool)
                mask[top] = True
                masked[i, :, mask.view_as(saliency[i])] = images[i, 0, 0, 0]
        with torch.no_grad():
            out.append((model(masked).argmax(1) == labels).float().mean().item())
    return out


def test_saliency_curve_matches_the_scripts_recipe(trained_digits, test_set):
    images, labels = test_set[0][:80], test_set[1][:80]
    ours = masked_accuracy_curve(trained_digits, images, labels, batch_size=50)
    assert list(ours.acc) == pytest.approx(
        _script_curve(trained_digits, images, labels, ours.fractions)
    )


def test_saliency_order_falls_faster_than_random(curve):
    assert curve.auc < curve.random_auc
    assert curve.acc[-1] < curve.acc[0]


def test_scrambled_saliency_is_no_better_than_random(curve, trained_digits, test_set):
    scrambled = masked_accuracy_curve(ScrambledSaliency(trained_digits, seed=0), *test_set)
    # Same predictions and same seed: the random baseline is the trained model's own.
    assert scrambled.random_acc == curve.random_acc
    # Its saliency order is itself a random order, so the gap is chance-sized (the
    # random AUC moves by ~0.01 between seeds on 360 images), far from the real one.
    assert scrambled.gap > -0.05
    assert scrambled.gap > curve.gap + 0.1


def test_same_seed_reproduces_and_batch_size_does_not_matter(trained_digits, test_set):
    images, labels = test_set[0][:100], test_set[1][:100]
    runs = [
        masked_accuracy_curve(trained_digits, images, labels, seed=3, batch_size=size)
        for size in (256, 256, 30)
    ]
    assert runs[0] == runs[1] == runs[2]
    other = masked_accuracy_curve(trained_digits, images, labels, seed=4)
    assert other.acc == runs[0].acc  # the saliency order has no randomness
    assert other.random_acc != runs[0].random_acc


def test_modes_restored_and_parameter_gradients_untouched(digits):
    torch.manual_seed(0)
    # sgt_mnist_cnn has dropout: in train mode its predictions would be random.
    model = build_model("sgt_mnist_cnn", digits.input_shape, 10, digits.mean, digits.std)
    model.train()
    model[1][0][1].eval()  # a submodule the caller froze on purpose
    before = [(name, m.training) for name, m in model.named_modules()]
    images, labels = digits.test.tensors(slice(0, 24))
    explanations = [
        Explanation(_grid_segments(digits), np.arange(16.0), 0.0, 1.0, int(y), 0) for y in labels
    ]
    runs = [
        masked_accuracy_curve(model, images, labels),
        lime_masked_accuracy_curve(model, images, labels, explanations),
    ]
    assert [(name, m.training) for name, m in model.named_modules()] == before
    assert all(p.grad is None for p in model.parameters())
    model.eval()  # eval mode inside means the same numbers as an eval-mode model
    assert masked_accuracy_curve(model, images, labels) == runs[0]
    assert lime_masked_accuracy_curve(model, images, labels, explanations) == runs[1]


def test_bad_input_names_the_field(trained_digits, test_set):
    images, labels = test_set[0][:10], test_set[1][:10]
    with pytest.raises(ValueError, match="background"):
        masked_accuracy_curve(trained_digits, images, labels, background="mean")
    with pytest.raises(ValueError, match="fractions must be strictly increasing"):
        masked_accuracy_curve(trained_digits, images, labels, fractions=(0.0, 0.5, 0.2))
    with pytest.raises(ValueError, match="saliency_target"):
        masked_accuracy_curve(trained_digits, images, labels, saliency_target="prob")
    with pytest.raises(ValueError, match="one Explanation per image"):
        lime_masked_accuracy_curve(trained_digits, images, labels, [])


# ----------------------------------------------------------------------------- LIME curve


def test_whole_superpixels_until_the_pixel_share_is_reached():
    # One image of 10 pixels in segments of 4, 1, 2 and 3 pixels, weights order 2, 0, 3, 1.
    segments = torch.tensor([[0, 0, 0, 0, 1, 2, 2, 3, 3, 3]])
    sizes = torch.tensor([[4, 1, 2, 3]])
    weights = torch.tensor([[0.5, -1.0, 0.9, 0.1]], dtype=torch.float64)
    remove = _segment_removal(segments, weights, sizes)
    removed = {k: set(segments[0][remove(k)[0]].tolist()) for k in (1, 2, 3, 6, 7, 10)}
    assert removed == {
        1: {2},  # 2 pixels: the first segment already reaches 1
        2: {2},
        3: {2, 0},  # 6 pixels
        6: {2, 0},
        7: {2, 0, 3},  # 9 pixels
        10: {2, 0, 3, 1},
    }


def test_lime_order_on_the_used_pixels_falls_faster_than_random(gated, digits):
    model, shown = gated
    images, labels = digits.test.tensors()
    segments = _grid_segments(digits)
    weights = np.isin(np.arange(segments.max() + 1), shown).astype(np.float64)
    explanations = [Explanation(segments, weights, 0.0, 1.0, int(y), 0) for y in labels]
    lime_curve = lime_masked_accuracy_curve(model, images, labels, explanations)
    assert lime_curve.order == "lime"
    assert lime_curve.acc[0] == pytest.approx(accuracy(model, images, labels), abs=1e-6)
    assert lime_curve.auc < lime_curve.random_auc
    # At 0.5 exactly the 8 shown cells (32 pixels) are gone: what is left for the model
    # is the background alone, as if every pixel were the corner value.
    blank = images[:, :, :1, :1].expand_as(images).contiguous()
    half = lime_curve.fractions.index(0.5)
    assert lime_curve.acc[half] == pytest.approx(accuracy(model, blank, labels), abs=1e-6)
    # Reproducible, and the random superpixel baseline depends on the seed.
    few = slice(0, 100)
    first = lime_masked_accuracy_curve(model, images[few], labels[few], explanations[few])
    again = lime_masked_accuracy_curve(model, images[few], labels[few], explanations[few])
    other = lime_masked_accuracy_curve(model, images[few], labels[few], explanations[few], seed=1)
    assert first == again
    assert other.acc == first.acc and other.random_acc != first.random_acc
