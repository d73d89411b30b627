"""Evaluation: the robust curve from real attacks, corruption accuracy, the audit."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from methods.data import load_cifar10c
from methods.evaluate import accuracy, audit, corruption_accuracy, evaluate
from methods.faithfulness import lime_masked_accuracy_curve
from methods.lime import LimeExplainer, LimeSettings
from methods.models import build_model
from methods.results import EvalResult, RobustPoint
from tests.formats import write_cifar10c

N_EVAL = 120  # the fast ensemble's time grows with it; 120 keeps this module quick


@pytest.fixture(scope="module")
def result(trained_digits, digits) -> EvalResult:
    images, labels = digits.test.tensors(slice(0, N_EVAL))
    return evaluate(
        trained_digits,
        images,
        labels,
        eps_grid=(0.05, 0.1, 0.2),
        pgd_steps=10,
        eval_mode="fast",
        probe_eps=(0.1,),
    )


def test_record_holds_floats_in_unit_range(result):
    assert result.n_eval == N_EVAL
    assert isinstance(result.clean_acc, float)
    assert result.eval_mode == "fast"
    assert {(p.attack, p.eps) for p in result.robust_curve} == {
        (a, e) for a in ("fgsm", "pgd", "autoattack", "worst") for e in (0.05, 0.1, 0.2)
    }
    assert set(result.audit_measures) >= {
        "stronger_breaks@0.1",
        "blackbox_breaks@0.1",
        "large_eps_acc",
        "zero_gradient_share",
    }
    # The probes ran at probe_eps only; the other eps have the ensemble's points alone.
    assert not any(key.endswith(("@0.05", "@0.2")) for key in result.audit_measures)
    for point in result.robust_curve:
        assert isinstance(point.acc, float) and 0.0 <= point.acc <= 1.0
    json.loads(json.dumps(result.to_dict()))  # plain data all the way down


def test_curve_is_consistent(result, trained_digits, digits):
    subset = digits.test.tensors(slice(0, N_EVAL))
    assert result.clean_acc == pytest.approx(accuracy(trained_digits, *subset))
    for eps in (0.05, 0.1, 0.2):
        worst = result.acc("worst", eps)
        attacks = ("fgsm", "pgd", "autoattack")
        assert worst <= min(result.acc(attack, eps) for attack in attacks)
        assert result.acc("pgd", eps) <= result.clean_acc
    assert result.acc("pgd", 0.2) < result.acc("pgd", 0.05)
    assert result.audit_flags == ()
    with pytest.raises(KeyError, match=r"no pgd accuracy at eps=0\.3"):
        result.acc("pgd", 0.3)


def test_same_seed_reproduces(trained_digits, digits):
    images, labels = digits.test.tensors(slice(0, 40))
    runs = [
        evaluate(
            trained_digits,
            images,
            labels,
            eps_grid=(0.1,),
            attacks=("pgd",),
            seed=5,
            eval_mode="fast",
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_model_mode_is_restored(trained_digits, digits):
    trained_digits.train()
    try:
        evaluate(
            trained_digits, *digits.test.tensors(slice(0, 20)), eps_grid=(0.1,), eval_mode="fast"
        )
        assert trained_digits.training
    finally:
        trained_digits.eval()


def _result(points, clean=0.9, n=1000):
    return EvalResult(
        n_eval=n, clean_acc=clean, robust_curve=tuple(RobustPoint(*p) for p in points)
    )


def test_audit_flags_gradient_masking_signs():
    healthy = _result(
        [("fgsm", 0.1, 0.6), ("pgd", 0.1, 0.5), ("fgsm", 0.2, 0.3), ("pgd", 0.2, 0.2)]
    )
    assert audit(healthy) == ()
    masked = _result([("fgsm", 0.1, 0.4), ("pgd", 0.1, 0.6)])
    assert "pgd_above_fgsm@0.1" in audit(masked)
    rising = _result([("pgd", 0.1, 0.3), ("pgd", 0.2, 0.5)])
    assert "non_monotone_pgd" in audit(rising)
    above = _result([("pgd", 0.1, 0.95)], clean=0.9)
    assert "robust_above_clean@pgd:0.1" in audit(above)
    # one example's worth of noise on a small evaluation is not a flag
    assert audit(_result([("fgsm", 0.1, 0.50), ("pgd", 0.1, 0.51)], n=100)) == ()


def test_corruption_accuracy_on_cifar10c_files(tmp_path):
    for corruption in ("fog", "snow"):
        write_cifar10c(tmp_path, n=6, corruption=corruption)
    torch.manual_seed(0)
    model = build_model("small_cnn", (3, 32, 32), 10, (0.5,) * 3, (0.25,) * 3).eval()
    points = corruption_accuracy(model, tmp_path, corruptions=("fog", "snow"), severities=(1, 5))
    assert [(p.corruption, p.severity) for p in points] == [
        ("fog", 1),
        ("fog", 5),
        ("snow", 1),
        ("snow", 5),
    ]
    for point in points:
        expected = accuracy(
            model, *load_cifar10c(tmp_path, point.corruption, point.severity).tensors()
        )
        assert point.acc == pytest.approx(expected)

    images = torch.rand(8, 3, 32, 32)
    labels = torch.arange(8) % 10
    full = evaluate(
        model,
        images,
        labels,
        eps_grid=(),
        attacks=("pgd",),
        corruption_root=tmp_path,
        corruptions=("fog", "snow"),
        severities=(1, 5),
    )
    assert full.corruption_acc == pytest.approx(sum(p.acc for p in points) / 4)
    assert asdict(full)["corruption_curve"][0]["corruption"] == "fog"


def test_lime_settings_add_the_curve_in_limes_order(trained_digits, digits):
    images, labels = digits.test.tensors(slice(0, 40))
    settings = LimeSettings(num_samples=200, seed=3)
    result = evaluate(
        trained_digits,
        images,
        labels,
        eps_grid=(0.1,),
        eval_mode="pgd",
        probes=None,
        lime=settings,
    )
    explanations = LimeExplainer(trained_digits).explain(images, labels, settings)
    expected = lime_masked_accuracy_curve(trained_digits, images, labels, explanations)
    assert result.lime_faithfulness == expected
    assert result.lime_faithfulness.order == "lime"
    # Removing what LIME weighs most hurts a trained model more than a random order.
    assert result.lime_faithfulness.auc < result.lime_faithfulness.random_auc
    assert EvalResult.from_dict(result.to_dict()) == result
    assert (
        evaluate(
            trained_digits, images, labels, eps_grid=(0.1,), eval_mode="pgd", probes=None
        ).lime_faithfulness
        is None
    )


def test_fast_eps_run_the_fast_ensemble_there_and_the_standard_elsewhere(
    result, trained_digits, digits
):
    images, labels = digits.test.tensors(slice(0, N_EVAL))
    common = {"pgd_steps": 10, "probe_eps": (0.1,)}
    # Fast at every eps of a standard evaluation: exactly the fast evaluation.
    all_fast = evaluate(
        trained_digits, images, labels, eps_grid=(0.05, 0.1, 0.2), eval_mode="standard",
        fast_eps=(0.05, 0.1, 0.2), **common,
    )  # fmt: skip
    assert all_fast.robust_curve == result.robust_curve
    assert all_fast.eval_mode == "standard" and all_fast.fast_eps == (0.05, 0.1, 0.2)
    assert "square" not in all_fast.attack_settings
    # Fast at 0.2 only: the standard ensemble (with Square) runs at 0.3, where an ERM
    # model leaves few examples standing (cheap).
    mixed = evaluate(
        trained_digits, images, labels, eps_grid=(0.2, 0.3), eval_mode="standard",
        fast_eps=(0.2,), faithfulness=False, **common,
    )  # fmt: skip
    assert mixed.fast_eps == (0.2,) and "square" in mixed.attack_settings
    assert mixed.acc("autoattack", 0.2) == result.acc("autoattack", 0.2)
    assert EvalResult.from_dict(json.loads(json.dumps(mixed.to_dict()))).fast_eps == (0.2,)


def test_fast_eps_need_the_standard_ensemble():
    from methods.options import ConfigError
    from orchestrator.config import EvalConfig

    assert EvalConfig(fast_eps=(0.2,)).fast_eps == (0.2,)
    with pytest.raises(ConfigError, match="fast_eps: replaces the standard ensemble"):
        EvalConfig(eval_mode="fast", fast_eps=(0.2,))
