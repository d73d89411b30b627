"""RRR (Right for the Right Reasons) on tiny tensors: the penalty is the squared input
gradient of the log-probabilities summed over the classes, on the annotated pixels only,
per image and averaged over the batch; it trains the parameters; then a few real steps
on digits_shortcut take the gradient off the patch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.data import load_dataset
from methods.loop import LoopConfig, fit
from methods.training import ERM, METHODS, RRR, build_method
from methods.training.rrr import RRROptions, annotation_gradient_penalty


def _linear(seed: int = 0, channels: int = 1) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * 4 * 4, 3))


def _batch(n: int = 5, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, channels, 4, 4, generator=generator), torch.arange(n) % 3


def _left_half(n: int = 5) -> torch.Tensor:
    masks = torch.zeros(n, 1, 4, 4)
    masks[..., :2] = 1
    return masks


def test_the_penalty_is_the_summed_log_probabilities_gradient_on_the_mask():
    """For a linear model z = Wx + b, d/dx sum_k log p_k = sum_k W_k - K sum_k p_k W_k."""
    model = _linear()
    images, _ = _batch()
    masks = _left_half()
    logits, penalty = annotation_gradient_penalty(model, images, masks)
    weight = model[1].weight  # (3, 16)
    p = F.softmax(logits, dim=1).detach()
    gradient = weight.sum(0) - 3 * p @ weight  # (N, 16)
    expected = ((gradient * masks.flatten(1)) ** 2).sum(1).mean()
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_penalty_ignores_the_labels_and_pixels_off_the_mask():
    model = _linear()
    images, labels = _batch()
    method = RRR(reg_weight=10.0)
    out = method.loss(model, images, labels, _left_half())
    other = method.loss(model, images, (labels + 1) % 3, _left_half())
    assert other.terms["grad_penalty"] == out.terms["grad_penalty"]  # sum over classes
    assert other.terms["ce"] != out.terms["ce"]
    assert out.loss.item() == pytest.approx(
        out.terms["ce"].item() + 10.0 * out.terms["grad_penalty"].item(), rel=1e-6
    )
    nothing = method.loss(model, images, labels, torch.zeros(5, 1, 4, 4))
    assert nothing.terms["grad_penalty"] == 0 and nothing.loss == nothing.terms["ce"]
    assert nothing.terms["ce"] == F.cross_entropy(model(images), labels)


def test_the_penalty_is_per_image_and_averaged_over_the_batch():
    model = _linear()
    images, _ = _batch(6)
    masks = _left_half(6)
    whole = annotation_gradient_penalty(model, images, masks)[1]
    halves = [
        annotation_gradient_penalty(model, images[s], masks[s])[1]
        for s in (slice(0, 3), slice(3, 6))
    ]
    assert whole.item() == pytest.approx(sum(h.item() for h in halves) / 2, rel=1e-5)


def test_a_mask_covers_every_channel_of_its_pixels():
    model = _linear(channels=3)
    images, _ = _batch(channels=3)
    masks = _left_half()
    _, penalty = annotation_gradient_penalty(model, images, masks)
    x = images.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(F.log_softmax(model(x), 1).sum(), x)
    assert penalty.item() == pytest.approx(
        (gradient[..., :2] ** 2).sum(dim=(1, 2, 3)).mean().item(), rel=1e-5
    )


def test_the_penalty_trains_the_parameters_by_double_backprop():
    model = _linear()
    images, _ = _batch()
    _, penalty = annotation_gradient_penalty(model, images, _left_half())
    penalty.backward()
    assert model[1].weight.grad.abs().sum() > 0


def test_rrr_is_registered_needs_the_data_sets_masks_and_starts_from_scratch():
    assert METHODS["rrr"] is RRR and RRR.needs_masks and RRR.annotation_masks
    assert not any(cls.annotation_masks for name, cls in METHODS.items() if name != "rrr")
    assert RRR().options == RRROptions(reg_weight=1.0, start_checkpoint=None)
    assert build_method("rrr", reg_weight=1000 / 255**2).options.reg_weight < 0.02
    with pytest.raises(ValueError, match="reg_weight: must be >= 0"):
        RRR(reg_weight=-1.0)
    with pytest.raises(ValueError, match="annotation mask"):
        RRR().loss(_linear(), *_batch())


def test_a_few_steps_on_digits_shortcut_take_the_gradient_off_the_patch():
    from tests.conftest import digits_model

    dataset = load_dataset("digits_shortcut")
    train = dataset.train.subset(512)
    images, _ = dataset.test.tensors(slice(0, 200))
    masks = dataset.test.masks[:200].float()
    on_patch = {}
    for name, method in (("erm", ERM()), ("rrr", RRR(reg_weight=10.0))):
        model = digits_model(dataset)
        history = fit(model, method, train, config=LoopConfig(epochs=3, seed=0), device="cpu")
        assert all(m.loss > 0 for m in history)
        on_patch[name] = annotation_gradient_penalty(model.eval(), images, masks)[1].item()
    assert "grad_penalty" in history[-1].terms
    assert on_patch["rrr"] < on_patch["erm"] / 2, on_patch
