"""The robustness audit: warning signs that a robust accuracy is not what it seems.

After Athalye, Carlini & Wagner (ICML 2018), "Obfuscated gradients give a false sense
of security", and Carlini et al. (2019), "On evaluating adversarial robustness",
section 7. Two halves:

- ``probe`` runs the few extra measurements the signs need (a stronger white-box
  attack and a black-box attack on the examples the evaluation's attacks left
  standing, an attack at a large eps, the input gradients) and returns plain numbers;
- ``audit`` reads an ``EvalResult`` (its curve and those numbers) and returns flags.
  It is a pure function, so a stored ``eval.json`` can be audited again.

Every sign is compared against a tolerance of two examples' worth of accuracy (at
least half a point), so that sampling noise alone raises no flag.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks import build_attack, model_mode
from methods.results import EvalResult, RobustPoint

__all__ = [
    "AUDIT_SIGNS",
    "LARGE_EPS",
    "ProbeSettings",
    "audit",
    "audit_note",
    "probe_gradients",
    "tolerance",
]

log = logging.getLogger(__name__)

#: Far beyond any eps a defence claims: every image can reach the same mid-grey one,
#: so no classifier can keep more than its eval set's largest class share correct.
LARGE_EPS = 0.5
#: An input gradient below this (max |.|, float32) counts as zero.
ZERO_GRADIENT = 1e-10

#: flag prefix -> what it means, for the leaderboard's audit_note and the docs.
AUDIT_SIGNS: dict[str, str] = {
    "pgd_above_fgsm": "multi-step PGD did worse than one-step FGSM",
    "non_monotone": "accuracy rose as eps grew",
    "robust_above_clean": "an attack raised accuracy above clean",
    "not_converged": "a stronger attack (more steps, restarts) broke more examples",
    "blackbox_beats_whitebox": "a gradient-free attack broke examples the gradient attacks did not",
    "no_collapse_at_large_eps": f"accuracy stayed above chance at eps {LARGE_EPS}",
    "zero_gradients": "input gradients are zero on many examples",
}


@dataclass(frozen=True)
class ProbeSettings:
    """The extra attacks of the audit. The stronger attack follows the issue's check
    list: a margin (CW) loss PGD with a small step (eps/10) and restarts, which
    catches both a too-short walk and a saturated cross-entropy."""

    stronger_steps: int = 100
    stronger_restarts: int = 2
    square_queries: int = 1000
    large_eps_steps: int = 20
    max_examples: int = 500  # probes run on at most this many survivors


def tolerance(n_eval: int) -> float:
    """Two examples' worth of accuracy, at least half a point."""
    return max(0.005, 2.0 / max(n_eval, 1))


def audit(result: EvalResult) -> tuple[str, ...]:
    """Flags (``sign@eps`` or ``sign``) for ``result``; empty when nothing looks wrong.

    Reads the robust curve and ``result.audit_measures`` (written by ``evaluate``):
    ``stronger_breaks@eps`` and ``blackbox_breaks@eps`` (share of all examples broken
    only by the stronger or the black-box probe), ``large_eps_acc`` with
    ``large_eps_bound`` (the largest class share), and ``zero_gradient_share``.
    """
    tol = tolerance(result.n_eval)
    flags: list[str] = []
    by_attack: dict[str, list[RobustPoint]] = {}
    for point in result.robust_curve:
        by_attack.setdefault(point.attack, []).append(point)
        if point.acc > result.clean_acc + tol:
            flags.append(f"robust_above_clean@{point.attack}:{point.eps:g}")
    fgsm = {p.eps: p.acc for p in by_attack.get("fgsm", [])}
    for point in by_attack.get("pgd", []):
        if point.eps in fgsm and point.acc > fgsm[point.eps] + tol:
            flags.append(f"pgd_above_fgsm@{point.eps:g}")
    for name, points in by_attack.items():
        ordered = sorted(points, key=lambda p: p.eps)
        if any(b.acc > a.acc + tol for a, b in itertools.pairwise(ordered)):
            flags.append(f"non_monotone_{name}")
    flags.extend(_probe_flags(result.audit_measures, tol))
    return tuple(flags)


def _probe_flags(measures: Mapping[str, float], tol: float) -> list[str]:
    flags = []
    for key, value in sorted(measures.items()):
        sign, _, eps = key.partition("@")
        if sign == "stronger_breaks" and value > tol:
            flags.append(f"not_converged@{eps}")
        elif sign == "blackbox_breaks" and value > tol:
            flags.append(f"blackbox_beats_whitebox@{eps}")
    if "large_eps_acc" in measures:
        bound = measures.get("large_eps_bound", 0.0)
        if measures["large_eps_acc"] > bound + tol:
            flags.append("no_collapse_at_large_eps")
    if measures.get("zero_gradient_share", 0.0) > tol:
        flags.append("zero_gradients")
    return flags


def audit_note(flags: Sequence[str], measures: Mapping[str, float] | None = None) -> str | None:
    """One short line for the leaderboard: each flag's meaning, with its measurement."""
    if not flags:
        return None
    measures = measures or {}
    parts = []
    for flag in flags:
        sign = flag.split("@")[0]
        sign = "non_monotone" if sign.startswith("non_monotone") else sign
        text = AUDIT_SIGNS.get(sign, sign)
        value = _measure_of(flag, measures)
        parts.append(f"{flag}: {text}" + (f" ({value})" if value else ""))
    return "; ".join(parts)


def _measure_of(flag: str, measures: Mapping[str, float]) -> str:
    sign, _, eps = flag.partition("@")
    key = {"not_converged": "stronger_breaks", "blackbox_beats_whitebox": "blackbox_breaks"}
    if sign in key and f"{key[sign]}@{eps}" in measures:
        return f"{100 * measures[f'{key[sign]}@{eps}']:.1f}% more broken"
    if sign == "no_collapse_at_large_eps" and "large_eps_acc" in measures:
        return f"{100 * measures['large_eps_acc']:.1f}% accurate"
    if sign == "zero_gradients" and "zero_gradient_share" in measures:
        return f"{100 * measures['zero_gradient_share']:.1f}% of examples"
    return ""


# ------------------------------------------------------------------------ the probes


def stronger_attacks(eps: float, settings: ProbeSettings, *, blackbox: bool):
    """The audit's attacks at ``eps``: the stronger white-box one, then (``blackbox``)
    Square. Returned as (measure name, attack) pairs."""
    attacks = [
        (
            "stronger_breaks",
            build_attack(
                "pgd",
                eps,
                steps=settings.stronger_steps,
                step_size=eps / 10,
                restarts=settings.stronger_restarts,
                loss="margin",
            ),
        )
    ]
    if blackbox:
        attacks.append(
            ("blackbox_breaks", build_attack("square", eps, queries=settings.square_queries))
        )
    return attacks


def probe_gradients(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> float:
    """Share of examples whose margin loss has a zero input gradient.

    The margin (best other logit minus the true one), not the cross-entropy: a
    confidently right float32 model has p_y == 1.0 exactly and a zero cross-entropy
    gradient without masking anything, but its logits still move with the input.
    """
    device = torch.device(device)
    zero = 0
    with model_mode(model, "eval"), torch.enable_grad():
        for start in range(0, len(labels), batch_size):
            x = images[start : start + batch_size].to(device).requires_grad_(True)
            y = labels[start : start + batch_size].to(device)
            (grad,) = torch.autograd.grad(margin_loss(model(x), y).sum(), x)
            zero += int((grad.flatten(1).abs().amax(1) < ZERO_GRADIENT).sum())
    return zero / max(len(labels), 1)


def margin_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per example: the best wrong logit minus the true one (> 0 means misclassified)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), -math.inf)
    return others.amax(1) - true


def largest_class_share(labels: torch.Tensor) -> float:
    return float(torch.bincount(labels).max()) / max(len(labels), 1)
