"""SGT, ASGT and LGR on tiny tensors: masking, the KL term, the gradient penalty, and
gradients reaching the parameters; then a few real steps on digits; then that every
method holds its options and every option reaches its loss."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from methods.loop import LoopConfig, fit
from methods.options import ConfigError, choices_of
from methods.saliency import bottom_k_mask, input_saliency, mask_with_noise
from methods.training import ASGT, LGR, METHODS, SGT, StepOutput, build_method
from methods.training._divergence import kl_from_logits
from methods.training.asgt import ASGTOptions
from methods.training.lgr import fill_masked, masked_gradient_penalty
from methods.training.sgt import SGTOptions


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


def test_lgr_penalty_options_follow_adversarial_xai():
    """logit_predicted differentiates the predicted class's logit (for a linear model,
    its weight row); mean averages over every element instead of summing per image."""
    model = _linear()
    images, labels = _batch()
    mask = torch.zeros(5, 1, 4, 4)
    mask[:, :, :2] = 1
    weight = model[1].weight
    with torch.no_grad():
        predicted = model(images).argmax(1)
        grad = weight[predicted].view(5, 2, 4, 4)
        squared = (grad * mask).pow(2)
    _, penalty = masked_gradient_penalty(
        model, images, labels, mask, target="logit_predicted", reduction="mean"
    )
    torch.testing.assert_close(penalty, squared.mean())
    _, summed = masked_gradient_penalty(model, images, labels, mask, target="logit_predicted")
    torch.testing.assert_close(summed, squared.sum(dim=(1, 2, 3)).mean())


@pytest.mark.parametrize("fill", ["noise", "mean", "zero"])
def test_lgr_fills_flagged_pixels_and_only_those(fill):
    images, _ = _batch()
    mask = torch.zeros(5, 1, 4, 4)
    mask[:, :, 1:3, 1:3] = 1
    filled = fill_masked(images, mask, fill)
    keep = ~mask.bool().expand_as(images)
    assert torch.equal(filled[keep], images[keep])
    inside = filled[~keep].view(5, 2, 4)
    if fill == "zero":
        assert torch.all(inside == 0)
    elif fill == "mean":
        torch.testing.assert_close(inside, images.mean(dim=(2, 3))[:, :, None].expand(5, 2, 4))
    else:
        assert not torch.equal(inside, images[~keep].view(5, 2, 4))


def test_lgr_refine_attack_choice():
    assert LGR(attack_eps=0.1, refine_attack="fgsm").attack.steps == 1
    assert LGR(attack_eps=0.1, refine_attack="fgsm").attack.random_start is False
    assert LGR(attack_eps=0.1, attack_steps=3).attack.steps == 3
    assert LGR(attack_eps=0.0, refine_attack="fgsm").attack is None


@pytest.mark.parametrize(
    "method",
    [
        SGT(mask_ratio=0.5, reg_weight=1.0),
        ASGT(attack_eps=0.1, mask_ratio=0.5, reg_weight=1.0, attack_steps=2),
        LGR(attack_eps=0.1, reg_weight=1.0, attack_steps=2),
        LGR(attack_eps=0.0, reg_weight=1.0),
    ],
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
            v.item() * (1 if k.startswith("ce") else method.options.reg_weight)
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
    with pytest.raises(ValueError, match=r"mask_ratio: must lie in \(0, 1\)"):
        SGT(mask_ratio=1.0)
    with pytest.raises(ValueError, match="reg_weight: must be >= 0"):
        build_method("asgt", attack_eps=0.1, reg_weight=-1.0)
    with pytest.raises(ValueError, match="mask_ratio: not an option of erm"):
        build_method("erm", mask_ratio=0.5)
    with pytest.raises(ValueError, match="needs a mask"):
        LGR(attack_eps=0.1).loss(_linear(), *_batch())


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


# ------------------------------------------------- saliency as each source computes it


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
    )


def _rgb_batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 6, 6, generator=generator), torch.arange(n) % 5


def test_log_prob_saliency_is_the_input_gradient_of_log_softmax():
    model = _bn_net().eval()
    images, labels = _rgb_batch()
    x = images.clone().requires_grad_(True)
    log_p = torch.log_softmax(model(x), dim=1).gather(1, labels.view(-1, 1)).sum()
    (expected,) = torch.autograd.grad(log_p, x)
    got = input_saliency(model, images, labels, target="log_prob")
    torch.testing.assert_close(got, expected.mean(dim=1), rtol=1e-5, atol=1e-7)
    logit = input_saliency(model, images, labels, target="logit")
    assert not torch.allclose(got, logit)  # the two targets are different saliencies


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_the_saliency_pass_leaves_batchnorm_statistics_and_mode_alone(mode):
    model = _bn_net().train()
    images, labels = _rgb_batch()
    model(images * 2)  # running statistics away from their initial values
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_b" in k}
    input_saliency(model, images, labels, mode=mode)
    after = model.state_dict()
    for name, value in before.items():
        assert torch.equal(after[name], value), name
    assert model.training and model[1].training  # the caller's mode is back


def test_the_saliency_mode_matters_with_batchnorm():
    model = _bn_net().train()
    images, labels = _rgb_batch()
    model(images * 2)
    eval_mode = input_saliency(model, images, labels, mode="eval")
    train_mode = input_saliency(model, images, labels, mode="train")
    assert not torch.allclose(eval_mode, train_mode)


def test_each_method_follows_its_source_by_default():
    sgt, asgt = build_method("sgt"), build_method("asgt", attack_eps=0.1)
    assert (sgt.options.saliency_mode, sgt.options.saliency_target) == ("eval", "logit")
    assert (asgt.options.saliency_mode, asgt.options.saliency_target) == ("train", "logit")


def test_sgt_fills_in_the_image_range_and_asgt_in_each_channel_range():
    images = torch.zeros(2, 3, 6, 6)
    images[:, 0] = torch.linspace(0.0, 0.1, 36).view(6, 6)  # channel 0 in [0, 0.1]
    images[:, 1] = torch.linspace(0.9, 1.0, 36).view(6, 6)  # channel 1 in [0.9, 1]
    images[:, 2] = 0.5
    everything = torch.ones(2, 6, 6, dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    per_channel = mask_with_noise(images, everything, per_channel=True, generator=generator)
    assert per_channel[:, 0].min() >= 0 and per_channel[:, 0].max() <= 0.1
    assert per_channel[:, 1].min() >= 0.9 and per_channel[:, 1].max() <= 1.0
    assert torch.all(per_channel[:, 2] == 0.5)
    whole = mask_with_noise(images, everything, generator=generator)
    assert whole[:, 0].max() > 0.1 and whole[:, 1].min() < 0.9  # the image's [0, 1]
    assert torch.all(whole[:, 2] != 0.5)  # every channel of a masked pixel


# ------------------------------------------------------- a method holds its options


def _attack_eps(cls) -> dict[str, float]:
    """The one option without a default (the data set's eps, filled in by a run)."""
    return {"attack_eps": 0.1} if cls.trains_with_attack() else {}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_method_holds_its_validated_options(name):
    cls = METHODS[name]
    assert "from_options" not in vars(cls)  # the base's generic cls(options) builds it
    options = cls.Options(**_attack_eps(cls))
    method = cls.from_options(options)
    assert type(method) is cls and method.options == options
    assert cls(**_attack_eps(cls)).options == options  # keywords named like the fields
    for field in dataclasses.fields(options):
        assert f"{field.name}={getattr(options, field.name)!r}" in repr(method)
    with pytest.raises(ConfigError, match="no_such_option: not an option of"):
        cls(**_attack_eps(cls), no_such_option=1)
    with pytest.raises(ConfigError, match=f"{cls.__name__} takes {cls.Options.__name__}"):
        cls(0.1)  # the old positional form
    if cls.trains_with_attack():
        with pytest.raises(ConfigError, match=r"attack_eps: .* needs the eps"):
            cls()


def test_keywords_override_a_record_and_are_validated_by_its_fields():
    method = SGT(SGTOptions(mask_ratio=0.3), reg_weight=2.0)
    assert method.options == SGTOptions(mask_ratio=0.3, reg_weight=2.0)
    with pytest.raises(ConfigError, match=r"mask_ratio: must lie in \(0, 1\)"):
        SGT(SGTOptions(), mask_ratio=0.0)
    with pytest.raises(ConfigError, match="saliency_mode: unknown value 'test'"):
        ASGT(attack_eps=0.1, saliency_mode="test")
    with pytest.raises(ConfigError, match=r"SGT takes SGTOptions .*got ASGTOptions"):
        SGT(ASGTOptions(attack_eps=0.1))  # a subclass's record is another method's


#: Options that by design do not change one ``loss`` step, each with its reason; every
#: other field of every registered method must. Keep it minimal.
_ROUNDS = "read by the rounds around the loss (the orchestrator's LGR driver: explain, flag)"
NOT_IN_THE_LOSS: dict[str, dict[str, str]] = {
    "lgr": {
        "mask_ratio": _ROUNDS + ": the share of superpixels flagged into the masks",
        "rounds": _ROUNDS,
        "spurious": _ROUNDS,
        "reexplanations": _ROUNDS,
        "irrelevant_threshold": _ROUNDS,
        "global_mask_share": _ROUNDS,
        "explain_label": _ROUNDS,
        "explain_fraction": _ROUNDS,
        "lime_samples": _ROUNDS,
        "lime_sampler": _ROUNDS,
        "start_checkpoint": _ROUNDS,
        "pretrain_epochs": _ROUNDS,
    },
    "rrr": {"start_checkpoint": "read by the run path: the weights training starts from"},
}


def test_the_exemptions_name_real_options():
    for name, fields in NOT_IN_THE_LOSS.items():
        assert set(fields) <= set(METHODS[name].Options.field_names()), name


def _another_value(options, field: dataclasses.Field):
    """``options`` with ``field`` changed to another valid value: another choice, the
    bool flipped, a number moved inside its range (validated by the record itself)."""
    value = getattr(options, field.name)
    choices = choices_of(field)
    if isinstance(value, bool):
        candidates: list = [not value]
    elif choices is not None:
        candidates = [(c,) if isinstance(value, tuple) else c for c in choices]
    elif isinstance(value, int):
        candidates = [value - 1, value + 1]
    elif isinstance(value, float):
        candidates = [value / 2, value * 2, value + 1]
    else:
        candidates = []
    for candidate in candidates:
        if candidate == value:
            continue
        try:
            return dataclasses.replace(options, **{field.name: candidate})
        except ConfigError:
            continue
    raise AssertionError(f"no rule gives another valid {field.name} than {value!r}; add one")


def _one_step(cls, options) -> StepOutput:
    """One loss on a fresh seeded BatchNorm model and batch (BatchNorm: so the saliency
    pass's model mode matters), with the global seed reset before the call."""
    model = _bn_net().train()
    images, labels = _rgb_batch()
    masks = (torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    torch.manual_seed(3)
    return cls(options).loss(model, images, labels, masks)


def _same(a: StepOutput, b: StepOutput) -> bool:
    return (
        torch.equal(a.loss, b.loss)
        and torch.equal(a.logits, b.logits)
        and a.terms.keys() == b.terms.keys()
        and all(torch.equal(a.terms[k], b.terms[k]) for k in a.terms)
    )


@pytest.mark.parametrize(
    ("name", "option"),
    [
        (name, option)
        for name, cls in sorted(METHODS.items())
        for option in cls.Options.field_names()
        if option not in NOT_IN_THE_LOSS.get(name, {})
    ],
)
def test_every_option_changes_one_loss_step(name, option):
    """Catches a method that ignores one of its options: ASGT skipping an option that
    SGT's saliency or masking reads, a new option never passed to the loss."""
    cls = METHODS[name]
    options = cls.Options(**_attack_eps(cls))
    field = next(f for f in dataclasses.fields(options) if f.name == option)
    other = _another_value(options, field)
    default = _one_step(cls, options)
    assert _same(default, _one_step(cls, options))  # deterministic, so a change is the option's
    changed = _one_step(cls, other)
    assert not _same(default, changed), (
        f"{name}: {option}={getattr(other, option)!r} (instead of "
        f"{getattr(options, option)!r}) left the loss, logits and terms unchanged"
    )
