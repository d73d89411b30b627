"""Evaluation: clean accuracy, the robust curve (FGSM / PGD over an eps grid),
CIFAR-10-C corruption accuracy, and an audit of the numbers.

Results are typed records of floats (after RobustBench), written with ``asdict``.
Robust accuracy is reported per attack and as ``worst``: an example counts as
robust only if it survives every attack at that eps, the per-example worst case.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from methods.attacks import Attack, build_attack, model_mode

__all__ = [
    "CorruptionPoint",
    "EvalResult",
    "RobustPoint",
    "accuracy",
    "audit",
    "correct_under",
    "corruption_accuracy",
    "evaluate",
]

log = logging.getLogger(__name__)

#: PGD settings for evaluation: stronger than the 10-step training attack.
EVAL_PGD_STEPS = 20
EVAL_PGD_RESTARTS = 1


@dataclass(frozen=True)
class RobustPoint:
    attack: str  # "fgsm", "pgd" or "worst" (per-example minimum over the attacks)
    eps: float  # L-inf on the [0,1] scale
    acc: float  # in [0,1]


@dataclass(frozen=True)
class CorruptionPoint:
    corruption: str
    severity: int  # 1..5
    acc: float


@dataclass(frozen=True)
class EvalResult:
    """One model's evaluation. Accuracies are floats in [0,1]."""

    n_eval: int
    clean_acc: float
    robust_curve: tuple[RobustPoint, ...] = ()
    corruption_curve: tuple[CorruptionPoint, ...] = ()
    corruption_acc: float | None = None  # plain mean over corruption_curve
    audit_flags: tuple[str, ...] = ()
    attack_settings: dict[str, str] = field(default_factory=dict)

    def acc(self, attack: str, eps: float) -> float:
        """Robust accuracy of ``attack`` at ``eps`` (``KeyError`` if not evaluated)."""
        for point in self.robust_curve:
            if point.attack == attack and abs(point.eps - eps) < 1e-9:
                return point.acc
        raise KeyError(f"no {attack} accuracy at eps={eps:g} in this result")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> EvalResult:
        """The inverse of ``to_dict`` (``eval.json``); unknown keys are ignored."""
        return cls(
            n_eval=int(values["n_eval"]),
            clean_acc=float(values["clean_acc"]),
            robust_curve=tuple(RobustPoint(**p) for p in values.get("robust_curve", ())),
            corruption_curve=tuple(
                CorruptionPoint(**p) for p in values.get("corruption_curve", ())
            ),
            corruption_acc=values.get("corruption_acc"),
            audit_flags=tuple(values.get("audit_flags", ())),
            attack_settings=dict(values.get("attack_settings", {})),
        )


def _batches(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


@torch.no_grad()
def _predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model(images).argmax(1)


def correct_under(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: Attack | None = None,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> torch.Tensor:
    """Per-example correctness (bool, N) on clean inputs, or under ``attack``.

    ``images`` (N, C, H, W) in [0,1] may live on the CPU; batches move to ``device``.
    """
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty(len(labels), dtype=torch.bool)
    with model_mode(model, "eval"):
        for part in _batches(len(labels), batch_size):
            x = images[part].to(device, non_blocking=True)
            y = labels[part].to(device, non_blocking=True)
            if attack is not None:
                x = attack(model, x, y, generator=generator)
            out[part] = (_predict(model, x) == y).cpu()
    return out


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, **kw) -> float:
    """Clean accuracy in [0,1]."""
    return correct_under(model, images, labels, None, **kw).float().mean().item()


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps_grid: Sequence[float],
    attacks: Sequence[str] = ("fgsm", "pgd"),
    pgd_steps: int = EVAL_PGD_STEPS,
    pgd_restarts: int = EVAL_PGD_RESTARTS,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    seed: int = 0,
    corruption_root: str | Path | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    corruption_limit: int | None = None,
) -> EvalResult:
    """Clean and robust accuracy of ``model`` on (images, labels); corruption accuracy
    too when ``corruption_root`` (a CIFAR-10-C folder) is given.

    Args:
        eps_grid: L-inf radii on the [0,1] scale; each attack runs at each eps.
        attacks: names from ``methods.attacks.ATTACKS``.
        pgd_steps, pgd_restarts: PGD strength (step size 2.5 * eps / steps).
        seed: seeds PGD's random start, so a result can be reproduced exactly.
    """
    kw = {"batch_size": batch_size, "device": device, "seed": seed}
    clean = correct_under(model, images, labels, None, **kw)
    curve: list[RobustPoint] = []
    settings: dict[str, str] = {}
    for eps in eps_grid:
        survived = clean.clone()
        for name in attacks:
            options = {"steps": pgd_steps, "restarts": pgd_restarts} if name == "pgd" else {}
            attack = build_attack(name, eps, **options)
            settings[name] = repr(attack).replace(f"eps={eps:g}", "eps=*")
            correct = correct_under(model, images, labels, attack, **kw)
            curve.append(RobustPoint(name, float(eps), correct.float().mean().item()))
            survived &= correct
        if len(attacks) > 1:
            curve.append(RobustPoint("worst", float(eps), survived.float().mean().item()))
    corruption_curve: tuple[CorruptionPoint, ...] = ()
    corruption_mean = None
    if corruption_root is not None:
        corruption_curve = corruption_accuracy(
            model,
            corruption_root,
            corruptions=corruptions,
            severities=severities,
            limit=corruption_limit,
            batch_size=batch_size,
            device=device,
        )
        corruption_mean = sum(p.acc for p in corruption_curve) / len(corruption_curve)
    result = EvalResult(
        n_eval=len(labels),
        clean_acc=clean.float().mean().item(),
        robust_curve=tuple(curve),
        corruption_curve=corruption_curve,
        corruption_acc=corruption_mean,
        attack_settings=settings,
    )
    flags = audit(result)
    for flag in flags:
        log.warning("robustness audit: %s", flag)
    return replace(result, audit_flags=flags)


def corruption_accuracy(
    model: nn.Module,
    root: str | Path,
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    limit: int | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> tuple[CorruptionPoint, ...]:
    """Accuracy per CIFAR-10-C corruption and severity (Hendrycks & Dietterich 2019).

    The mean of the returned points is RobustBench's ``corruptions_acc``.
    """
    from methods.data import CIFAR10C_CORRUPTIONS, load_cifar10c

    points = []
    for corruption in corruptions or CIFAR10C_CORRUPTIONS:
        for severity in severities:
            split = load_cifar10c(root, corruption, severity, limit=limit)
            x, y = split.tensors()
            acc = accuracy(model, x, y, batch_size=batch_size, device=device)
            points.append(CorruptionPoint(corruption, int(severity), acc))
    return tuple(points)


def audit(result: EvalResult) -> tuple[str, ...]:
    """Warning signs that a robust accuracy is not what it seems (Carlini et al. 2019,
    "On Evaluating Adversarial Robustness", section 7):

    - ``pgd_above_fgsm@eps``: the multi-step attack does worse than the one-step
      attack, a classic sign of gradient masking or a broken attack;
    - ``non_monotone_<attack>``: accuracy rises with eps;
    - ``robust_above_clean@eps``: an attack raised accuracy.

    The tolerance is two examples' worth of accuracy (at least 0.5 points), so that
    sampling noise alone does not raise a flag.
    """
    tolerance = max(0.005, 2.0 / max(result.n_eval, 1))
    flags: list[str] = []
    by_attack: dict[str, list[RobustPoint]] = {}
    for point in result.robust_curve:
        by_attack.setdefault(point.attack, []).append(point)
        if point.acc > result.clean_acc + tolerance:
            flags.append(f"robust_above_clean@{point.attack}:{point.eps:g}")
    fgsm = {p.eps: p.acc for p in by_attack.get("fgsm", [])}
    for point in by_attack.get("pgd", []):
        if point.eps in fgsm and point.acc > fgsm[point.eps] + tolerance:
            flags.append(f"pgd_above_fgsm@{point.eps:g}")
    for name, points in by_attack.items():
        ordered = sorted(points, key=lambda p: p.eps)
        if any(b.acc > a.acc + tolerance for a, b in itertools.pairwise(ordered)):
            flags.append(f"non_monotone_{name}")
    return tuple(flags)
