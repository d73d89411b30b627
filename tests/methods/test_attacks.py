"""The attack contract (after torchattacks' registry-driven test) and PGD parity with an
independent reference implementation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks import ATTACKS, FGSM, PGD, build_attack
from methods.evaluate import correct_under

#: Short runs of the attacks whose defaults are built for strength (100 steps, 5,000
#: queries): the contract does not depend on the budget; tests/methods/test_autoattack.py
#: checks their strength.
CHEAP = {
    "apgd-ce": {"steps": 10},
    "apgd-t": {"steps": 10, "n_target_classes": 2},
    "square": {"queries": 200},
}


@pytest.fixture(scope="module")
def batch(digits):
    return digits.test.tensors(slice(0, 200))


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("eps", [0.05, 0.2])
def test_contract(trained_digits, batch, name, eps):
    images, labels = batch
    adversarial = build_attack(name, eps, **CHEAP.get(name, {}))(trained_digits, images, labels)
    assert adversarial.shape == images.shape and adversarial.dtype == images.dtype
    assert (adversarial - images).abs().max().item() <= eps + 1e-6
    assert adversarial.min().item() >= 0.0 and adversarial.max().item() <= 1.0
    assert not adversarial.requires_grad
    clean = correct_under(trained_digits, images, labels).float().mean()
    robust = correct_under(trained_digits, adversarial, labels).float().mean()
    assert robust < clean  # the attack does something at these radii


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_eps_zero_changes_nothing(trained_digits, batch, name):
    images, labels = batch
    assert torch.equal(build_attack(name, 0.0)(trained_digits, images, labels), images)


def test_mode_restored_per_submodule(digits, batch):
    from tests.conftest import digits_model

    model = nn.Sequential(digits_model(digits), nn.Dropout(0.5))
    model.train()
    model[1].eval()  # a deliberately frozen part
    PGD(0.1, steps=2)(model, *batch)
    assert model.training and model[0].training and not model[1].training
    model.eval()
    FGSM(0.1)(model, *batch)
    assert not any(m.training for m in model.modules())


def test_parameter_grads_untouched(trained_digits, batch):
    for p in trained_digits.parameters():
        p.grad = None
    PGD(0.1, steps=3)(trained_digits, *batch)
    assert all(p.grad is None for p in trained_digits.parameters())


def test_ordering_on_trained_model(trained_digits, digits):
    images, labels = digits.test.tensors()
    eps = 0.1
    clean = correct_under(trained_digits, images, labels).float().mean().item()
    fgsm = correct_under(trained_digits, images, labels, FGSM(eps)).float().mean().item()
    pgd = correct_under(trained_digits, images, labels, PGD(eps, steps=20)).float().mean().item()
    assert pgd <= fgsm <= clean
    assert clean > 0.9 and pgd < clean - 0.2


def test_restarts_never_weaker(trained_digits, batch):
    images, labels = batch
    one = correct_under(trained_digits, images, labels, PGD(0.08, steps=5), seed=1)
    three = correct_under(trained_digits, images, labels, PGD(0.08, steps=5, restarts=3), seed=1)
    # The first restart uses the same random start as the single run, and an example
    # broken by any restart stays broken.
    assert not (three & ~one).any()


def _reference_pgd(model, images, labels, eps, alpha, steps, generator):
    """An independent textbook PGD: .backward() on the mean loss, project the delta."""
    delta = torch.empty_like(images).uniform_(-eps, eps, generator=generator)
    x = (images + delta).clamp(0, 1).detach()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = F.cross_entropy(model(x), labels)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            x = x + alpha * x.grad.sign()
            x = images + (x - images).clamp(-eps, eps)
            x = x.clamp(0, 1)
    return x.detach()


def test_pgd_matches_reference(trained_digits, batch):
    images, labels = batch
    eps, steps = 0.1, 10
    ours = PGD(eps, steps=steps)(
        trained_digits, images, labels, generator=torch.Generator().manual_seed(7)
    )
    reference = _reference_pgd(
        trained_digits,
        images,
        labels,
        eps,
        2.5 * eps / steps,
        steps,
        torch.Generator().manual_seed(7),
    )
    with torch.no_grad():
        ours_acc = (trained_digits(ours).argmax(1) == labels).float().mean().item()
        ref_acc = (trained_digits(reference).argmax(1) == labels).float().mean().item()
    # Same seed, same start: the examples agree up to float rounding at projection edges.
    assert abs(ours_acc - ref_acc) <= 0.01
    assert (ours - reference).abs().gt(1e-4).float().mean().item() < 0.01


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="eps must lie in"):
        PGD(1.5)
    with pytest.raises(ValueError, match="steps"):
        PGD(0.1, steps=0)
    with pytest.raises(ValueError, match="valid: fgsm, pgd"):
        build_attack("cw", 0.1)
