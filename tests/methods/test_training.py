"""SGT, ASGT and LGR on tiny tensors: masking, the KL term, the gradient penalty, and
gradients reaching the parameters; then a few real steps on digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from methods.loop import LoopConfig, fit
from methods.saliency import bottom_k_mask, input_saliency, mask_with_noise
from methods.training import ASGT, LGR, SGT, build_method
from methods.training._divergence import kl_from_logits
from methods.training.lgr import masked_gradient_penalty


def _linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def _batch(n: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, 4, 4, generator=generator), torch.arange(n) % 3


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 0.9])
def test_bottom_k_masks_exactly_the_lowest_fraction(ratio):
    saliency = torch.randn(6, 5, 5, generator=torch.Generator().manual_seed(1))
    mask = bottom_k_mask(saliency, ratio)
    k = round(ratio * 25)
    assert mask.flatten(1).sum(1).tolist() == [k] * 6
    for s, m in zip(saliency, mask, strict=True):
        assert s[m].max() <= s[~m].min()


def test_noise_replaces_only_masked_pixels_within_each_images_range():
    images, _ = _batch()
    images[0] *= 0.5  # a darker image: its noise must stay in its own range
    mask = torch.zeros(5, 4, 4, dtype=torch.bool)
    mask[:, :2] = True
    out = mask_with_noise(images, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :, 2:], images[:, :, 2:])
    assert not torch.equal(out[:, :, :2], images[:, :, :2])
    for image, noisy in zip(images, out, strict=True):
        assert image.min() <= noisy.min() and noisy.max() <= image.max()


def test_saliency_of_a_linear_model_is_its_weight_row():
    model = _linear()
    images, labels = _batch()
    saliency = input_saliency(model, images, labels)
    weight = model[1].weight.view(3, 2, 4, 4)
    for i, label in enumerate(labels):
        torch.testing.assert_close(saliency[i], weight[label].mean(0))
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(
        input_saliency(model, images, labels, absolute=True), weight[labels].abs().mean(1)
    )


def test_kl_is_zero_on_equal_inputs_and_positive_otherwise():
    logits = torch.randn(4, 3)
    assert kl_from_logits(logits, logits).item() == pytest.approx(0.0, abs=1e-7)
    assert kl_from_logits(logits, logits + torch.randn(4, 3)).item() > 0
    model = _linear()
    images, labels = _batch()
    sgt = SGT(mask_ratio=0.5, reg_weight=1.0)
    # A model that ignores the masked pixels sees x~ == x: the KL term vanishes.
    with torch.no_grad():
        model[1].weight.zero_()
    assert sgt.loss(model, images, labels).terms["kl"].item() == pytest.approx(0.0, abs=1e-7)


def test_lgr_penalty_is_zero_off_the_mask_and_grows_with_the_gradient_there():
    model = _linear()
    images, labels = _batch()
    zeros = torch.zeros(5, 1, 4, 4)
    assert masked_gradient_penalty(model, images, labels, zeros)[1].item() == 0.0
    mask = zeros.clone()
    mask[:, :, 1:3, 1:3] = 1
    small = masked_gradient_penalty(model, images, labels, mask)[1].item()
    with torch.no_grad():
        model[1].weight.mul_(3)
    large = masked_gradient_penalty(model, images, labels, mask)[1].item()
    assert 0 < small < large
    # Against the closed form of a linear model: d log p_y / dx = W_y - sum_c p_c W_c.
    model = _linear()
    weight = model[1].weight
    with torch.no_grad():
        p = torch.softmax(model(images), 1)
        grad = (weight[labels] - p @ weight).view(5, 2, 4, 4)
        expected = (grad * mask).pow(2).sum(dim=(1, 2, 3)).mean()
    penalty = masked_gradient_penalty(model, images, labels, mask)[1]
    torch.testing.assert_close(penalty, expected)


@pytest.mark.parametrize(
    "method",
    [SGT(0.5, 1.0), ASGT(0.1, 0.5, 1.0, steps=2), LGR(0.1, 1.0, steps=2), LGR(0.0, 1.0)],
    ids=["sgt", "asgt", "lgr", "lgr_no_attack"],
)
def test_gradients_reach_every_parameter(method):
    model = _linear()
    images, labels = _batch()
    masks = torch.zeros(5, 1, 4, 4)
    masks[:, :, :2] = 1
    out = method.loss(model, images, labels, masks)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert out.loss.item() == pytest.approx(
        sum(
            v.item() * (1 if k.startswith("ce") else getattr(method, "reg_weight", 1))
            for k, v in out.terms.items()
        ),
        rel=1e-5,
    )


def test_lgr_penalty_trains_the_parameters_by_double_backprop():
    model = _linear()
    images, labels = _batch()
    masks = torch.ones(5, 1, 4, 4)
    _, penalty = masked_gradient_penalty(model, images, labels, masks)
    penalty.backward()
    assert model[1].weight.grad.abs().sum() > 0


def test_bad_options_raise():
    with pytest.raises(ValueError, match=r"mask_ratio must lie in \(0, 1\)"):
        SGT(mask_ratio=1.0)
    with pytest.raises(ValueError, match="reg_weight: must be >= 0"):
        build_method("asgt", attack_eps=0.1, reg_weight=-1.0)
    with pytest.raises(ValueError, match="mask_ratio: not an option of erm"):
        build_method("erm", mask_ratio=0.5)
    with pytest.raises(ValueError, match="needs a mask"):
        LGR(0.1).loss(_linear(), *_batch())


@pytest.mark.parametrize("name", ["sgt", "asgt"])
def test_a_few_real_steps_on_digits(digits, name):
    from tests.conftest import digits_model

    model = digits_model(digits)
    attack = {"attack_eps": 0.1, "attack_steps": 2} if name == "asgt" else {}
    method = build_method(name, mask_ratio=0.5, reg_weight=1.0, **attack)
    history = fit(
        model, method, digits.train.subset(256), config=LoopConfig(epochs=2), device="cpu"
    )
    assert history[-1].loss < history[0].loss * 1.5 and all(m.loss > 0 for m in history)
    assert "kl" in history[-1].terms
