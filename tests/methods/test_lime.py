"""Batched LIME: parity with the ``lime`` package, the surrogate, segmentation, flags."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lime.lime_image import LimeImageExplainer
from sklearn.linear_model import Ridge

from methods.lime import (
    Explanation,
    LimeExplainer,
    LimeSettings,
    fit_surrogate,
    flagged_mask,
    flagged_segments,
    segment,
    segment_means,
    top_segments,
    unstable_segments,
)
from methods.saliency import input_saliency


def _lime_package_weights(model, image: torch.Tensor, target: int, segments, num_samples):
    """The reference: lime.lime_image on the same image, segments and target."""
    gray = image.shape[0] == 1

    def classifier_fn(batch: np.ndarray) -> np.ndarray:  # (N, H, W, 3) -> (N, classes)
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
        if gray:
            x = x[:, :1]
        with torch.no_grad():
            return torch.softmax(model(x), 1).numpy()

    hwc = image.permute(1, 2, 0).double().numpy()
    explainer = LimeImageExplainer(random_state=0)
    result = explainer.explain_instance(
        hwc[..., 0] if gray else hwc,
        classifier_fn,
        labels=(target,),
        top_labels=None,
        num_samples=num_samples,
        batch_size=100,
        segmentation_fn=lambda _: segments,
        hide_color=None,
    )
    weights = np.zeros(int(segments.max()) + 1)
    for feature, weight in result.local_exp[target]:
        weights[feature] = weight
    return weights


@pytest.mark.parametrize("sampler", ["iid", "orthogonal"])
@pytest.mark.parametrize("image_index", [0, 7])
def test_weights_agree_with_the_lime_package(trained_digits, digits, image_index, sampler):
    """i.i.d. masks are the lime package's design; the default (orthogonal) draws them
    otherwise but fits the same estimand, so it agrees as well."""
    images, labels = digits.test.tensors(slice(image_index, image_index + 1))
    settings = LimeSettings(num_samples=3000, segmentation="grid", seed=0, sampler=sampler)
    ours = LimeExplainer(trained_digits).explain(images, labels, settings)[0]
    reference = _lime_package_weights(
        trained_digits, images[0], int(labels[0]), ours.segments, num_samples=3000
    )
    assert np.corrcoef(ours.weights, reference)[0, 1] >= 0.95
    top = 3
    assert set(np.argsort(ours.weights)[-top:]) & set(np.argsort(reference)[-top:])
    assert np.argmax(ours.weights) == np.argmax(reference)


def test_surrogate_matches_scikit_learn_ridge():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 2, (400, 12)).astype(float)
    masks[0] = 1
    y = masks @ rng.normal(size=12) * 0.1 + rng.normal(scale=0.01, size=400)
    settings = LimeSettings()
    weights, intercept, score = fit_surrogate(masks, y, settings)
    distance = 1 - np.sqrt(masks.sum(1) / 12)
    kernel = np.sqrt(np.exp(-(distance**2) / 0.25**2))
    ridge = Ridge(alpha=1.0).fit(masks, y, sample_weight=kernel)
    np.testing.assert_allclose(weights, ridge.coef_, rtol=1e-6, atol=1e-9)
    assert intercept == pytest.approx(ridge.intercept_, abs=1e-9)
    assert score == pytest.approx(ridge.score(masks, y, sample_weight=kernel), abs=1e-9)


def test_same_image_same_explanation_in_any_batch(trained_digits, digits):
    images, labels = digits.test.tensors(slice(0, 6))
    settings = LimeSettings(num_samples=200, seed=3)
    together = LimeExplainer(trained_digits, batch_size=64).explain(images, labels, settings)
    alone = LimeExplainer(trained_digits, batch_size=7).explain(
        images[4:5], labels[4:5], settings, indices=[4]
    )[0]
    np.testing.assert_allclose(together[4].weights, alone.weights, rtol=1e-4, atol=1e-6)
    other_seed = LimeExplainer(trained_digits).explain(
        images[4:5], labels[4:5], LimeSettings(num_samples=200, seed=4), indices=[4]
    )[0]
    assert not np.allclose(other_seed.weights, alone.weights)


def test_targets_default_to_predictions_and_mode_is_restored(trained_digits, digits):
    images, _ = digits.test.tensors(slice(0, 3))
    trained_digits.train()
    try:
        out = LimeExplainer(trained_digits).explain(images, None, LimeSettings(num_samples=50))
        assert trained_digits.training
    finally:
        trained_digits.eval()
    assert all(e.target == e.predicted for e in out)


@pytest.mark.parametrize(
    ("shape", "segmentation", "low", "high"),
    [
        ((1, 8, 8), "grid", 16, 16),
        ((1, 28, 28), "grid", 49, 49),
        ((3, 32, 32), "slic", 25, 80),
        ((3, 32, 32), "quickshift", 10, 400),
        ((1, 28, 28), "slic", 10, 80),
    ],
)
def test_segmentations_give_real_segments(shape, segmentation, low, high):
    # A blocky image with mild noise, like a small natural image (pure noise has no
    # regions to find: SLIC returns a single segment for it).
    rng = np.random.default_rng(0)
    channels, size = shape[0], shape[1]
    blocks = rng.random((channels, size // 4, size // 4))
    image = np.kron(blocks, np.ones((1, 4, 4))) + rng.normal(0, 0.02, shape)
    segments = segment(image.clip(0, 1), LimeSettings(segmentation=segmentation))
    assert segments.shape == shape[1:]
    count = len(np.unique(segments))
    assert low <= count <= high
    assert set(np.unique(segments)) == set(range(count))  # ids 0..S-1, as lime expects


def test_fill_replaces_exactly_the_hidden_segments(trained_digits, digits):
    from methods.lime import _perturb

    image = digits.test.tensors(slice(0, 1))[0][0]
    segments = torch.from_numpy(segment(image.numpy(), LimeSettings(segmentation="grid")))
    masks = torch.ones(2, int(segments.max()) + 1, dtype=torch.uint8)
    masks[1, 3] = 0
    out = _perturb(image, segments, masks, 0.5)
    assert torch.equal(out[0], image)
    hidden = segments == 3
    assert torch.all(out[1][:, hidden] == 0.5) and torch.equal(
        out[1][:, ~hidden], image[:, ~hidden]
    )
    mean_filled = _perturb(image, segments, masks, "mean")
    assert torch.allclose(mean_filled[1][:, hidden], image[:, hidden].mean())


def test_flags_pick_the_bottom_or_top_fraction():
    weights = np.array([0.3, -0.2, 0.0, 0.5, -0.4, 0.1, 0.2, -0.1, 0.05, 0.4])
    assert sorted(flagged_segments(weights, "low_relevance", 0.3)) == [1, 4, 7]
    assert sorted(flagged_segments(weights, "high_relevance", 0.2)) == [3, 9]
    segments = np.arange(10).repeat(2).reshape(4, 5)
    explanation = Explanation(segments, weights, 0.0, 1.0, 0, 0)
    mask = flagged_mask(explanation, "low_relevance", 0.3)
    assert mask.sum() == 6 and mask[segments == 4].all() and not mask[segments == 3].any()
    with pytest.raises(ValueError, match="valid: low_relevance, high_relevance"):
        flagged_segments(weights, "random", 0.3)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        flagged_segments(weights, "low_relevance", 1.0)


def test_irrelevant_flags_the_lowest_absolute_weights():
    weights = np.array([0.3, -0.2, 0.01, 0.5, -0.4, 0.1, 0.2, -0.03, 0.05, 0.4])
    assert sorted(flagged_segments(weights, "irrelevant", 0.3)) == [2, 7, 8]
    assert sorted(flagged_segments(weights, "irrelevant", 0.3, threshold=0.1)) == [2, 7, 8]
    assert sorted(flagged_segments(weights, "irrelevant", 0.3, threshold=0.25)) == [
        1,
        2,
        5,
        6,
        7,
        8,
    ]
    assert len(flagged_segments(weights, "irrelevant", 0.3, threshold=0.001)) == 0


def test_unstable_and_top_segments():
    runs = np.array([[0.1, 0.5, -0.3, 0.0], [0.1, -0.5, -0.31, 0.01], [0.12, 0.4, -0.29, 0.0]])
    assert list(unstable_segments(runs, 0.25)) == [1]  # the weight that flips sign
    assert sorted(top_segments(np.array([0.2, 3.0, 0.1, 2.0]), 0.5)) == [1, 3]
    segments = np.array([[0, 0, 1], [2, 2, 1]])
    values = np.array([[1.0, 3.0, 5.0], [0.0, 2.0, 7.0]])
    np.testing.assert_allclose(segment_means(values, segments), [2.0, 6.0, 1.0])
    with pytest.raises(ValueError, match="R >= 2"):
        unstable_segments(runs[:1], 0.25)


class _CoinFlipOnOneCell(torch.nn.Module):
    """Class 0's logit reads cell 0 (the top-left 2x2 grid cell) through its checker
    pattern, which LIME's mean fill erases, with a sign drawn by a coin flip per
    forward call. An explanation is one batched call, so cell 0's LIME weight flips
    sign from one re-explanation to the next: unstable by construction."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(4.0))  # LimeExplainer reads the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shown = (x[:, 0, 0, 0] - x[:, 0, 0, 1]).abs()
        sign = 1.0 if torch.rand(()) < 0.5 else -1.0
        logits = torch.zeros(len(x), 10, device=x.device)
        logits[:, 0] = sign * self.scale * shown
        return logits


def test_unstable_flags_the_superpixel_whose_weight_flips_between_explanations():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, 8, 8, generator=generator)
    image[0, 0, 0:2, 0:2] = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    explainer = LimeExplainer(_CoinFlipOnOneCell(), batch_size=10_000)
    settings = [LimeSettings(num_samples=200, segmentation="grid", seed=s) for s in range(6)]
    runs = [explainer.explain(image, [0], s)[0] for s in settings]
    weights = np.stack([run.weights for run in runs])
    assert all(np.array_equal(runs[0].segments, run.segments) for run in runs)
    assert (weights[:, 0] > 0.05).any() and (weights[:, 0] < -0.05).any()  # it flips
    assert list(unstable_segments(weights, 1 / 16)) == [0]
    # One explanation alone cannot tell: by |weight| cell 0 is the most relevant.
    assert 0 not in flagged_segments(runs[0].weights, "irrelevant", 0.5)


def test_gradient_flags_the_superpixels_the_model_reads():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.mul_(0.01)
        model[1].weight.view(10, 8, 8)[:, 4:6, 6:8] = 3.0 * torch.randn(10, 2, 2)  # cell 11
    image = torch.rand(1, 1, 8, 8)
    segments = segment(image[0].numpy(), LimeSettings(segmentation="grid").resolved(8))
    saliency = input_saliency(model, image, torch.tensor([3]), absolute=True, target="log_prob")
    scores = segment_means(saliency[0].numpy(), segments)
    assert list(top_segments(scores, 1 / 16)) == [int(segments[4, 6])]


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="num_samples"):
        LimeSettings(num_samples=0)
    with pytest.raises(ValueError, match="valid: auto, slic, quickshift, grid"):
        LimeSettings(segmentation="felzenszwalb")
    with pytest.raises(ValueError, match="fill"):
        LimeSettings(fill="black")
