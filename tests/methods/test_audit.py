"""The robustness audit: it flags deliberately gradient-masked models and leaves a
normally trained one alone, on real attacks against real trained models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from methods.audit import ProbeSettings, audit, audit_note, probe_gradients, tolerance
from methods.evaluate import evaluate
from methods.results import EvalResult, RobustPoint


class RoundedInput(nn.Module):
    """Quantizes its input to 1/4 steps before the real model: torch.round has a zero
    gradient everywhere, so every gradient attack walks blind (Athalye et al.'s
    "shattered gradients")."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 4) / 4)


class SaturatedLogits(nn.Module):
    """Multiplies the logits by 1e4: softmax is exactly one-hot in float32, so the
    cross-entropy gradient vanishes on every correctly classified example while the
    argmax, and so the accuracy, is unchanged."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * 1e4


#: The audit's probes, shortened for the tests' time; the flags' logic is the same.
PROBES = ProbeSettings(stronger_steps=40, square_queries=500, max_examples=100)


@pytest.fixture(scope="module")
def test_split(digits):
    return digits.test.tensors(slice(0, 100))


def _evaluate(model, images, labels, **kw) -> EvalResult:
    return evaluate(model, images, labels, eps_grid=(0.2,), eval_mode="fast", probes=PROBES, **kw)


def test_normally_trained_model_is_not_flagged(trained_digits, test_split):
    result = _evaluate(trained_digits, *test_split)
    assert result.audit_flags == ()
    assert result.audit_measures["zero_gradient_share"] == 0.0
    assert result.audit_measures["large_eps_acc"] <= result.audit_measures["large_eps_bound"]
    assert result.acc("worst", 0.2) <= result.acc("autoattack", 0.2) <= result.acc("pgd", 0.2)


def test_rounded_input_model_is_flagged(trained_digits, test_split):
    masked = RoundedInput(trained_digits).eval()
    result = _evaluate(masked, *test_split)
    flags = set(result.audit_flags)
    assert "zero_gradients" in flags
    assert "no_collapse_at_large_eps" in flags
    assert "blackbox_beats_whitebox@0.2" in flags
    # The black-box probe's breaks count: the headline is below every gradient attack.
    assert result.acc("worst", 0.2) < result.acc("autoattack", 0.2) - 0.05


def test_ensemble_sees_through_saturated_logits(trained_digits, test_split):
    images, labels = test_split
    masked = SaturatedLogits(trained_digits).eval()
    result = evaluate(masked, images, labels, eps_grid=(0.2,), eval_mode="fast", probes=None)
    normal = evaluate(
        trained_digits, images, labels, eps_grid=(0.2,), eval_mode="fast", probes=None
    )
    # PGD on the cross-entropy sees no gradient on confident examples and overstates;
    # APGD-T's DLR loss is scale-free and gets the normal model's number back.
    assert result.acc("pgd", 0.2) > normal.acc("pgd", 0.2) + 0.1
    assert result.acc("autoattack", 0.2) <= normal.acc("autoattack", 0.2) + 0.03


def test_zero_gradient_probe_uses_the_margin(trained_digits, test_split):
    images, labels = test_split
    assert probe_gradients(SaturatedLogits(trained_digits), images, labels) == 0.0
    assert probe_gradients(RoundedInput(trained_digits), images, labels) == 1.0


def _result(points, clean=0.9, n=1000, **measures) -> EvalResult:
    return EvalResult(
        n_eval=n,
        clean_acc=clean,
        robust_curve=tuple(RobustPoint(*p) for p in points),
        audit_measures=measures,
    )


def test_probe_measures_against_the_tolerance():
    tol = tolerance(1000)
    assert audit(_result([], **{"stronger_breaks@0.1": tol / 2})) == ()
    assert audit(_result([], **{"stronger_breaks@0.1": 2 * tol})) == ("not_converged@0.1",)
    assert audit(_result([], **{"blackbox_breaks@0.2": 0.1})) == ("blackbox_beats_whitebox@0.2",)
    bounded = {"large_eps_acc": 0.12, "large_eps_bound": 0.1}
    assert audit(_result([], **bounded)) == ("no_collapse_at_large_eps",)
    assert audit(_result([], large_eps_acc=0.1, large_eps_bound=0.1)) == ()
    assert audit(_result([], zero_gradient_share=0.5)) == ("zero_gradients",)


def test_note_names_each_flag_with_its_measure():
    measures = {"blackbox_breaks@0.2": 0.25, "zero_gradient_share": 1.0}
    note = audit_note(("blackbox_beats_whitebox@0.2", "zero_gradients"), measures)
    assert note is not None and "\n" not in note
    assert "25.0% more broken" in note and "100.0% of examples" in note
    assert audit_note(()) is None
