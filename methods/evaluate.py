"""Evaluation: clean accuracy, the robust curve over an eps grid, CIFAR-10-C
corruption accuracy, and the robustness audit.

At each eps three kinds of attack run (after RobustBench and Croce & Hein 2020):

- the papers' curves, FGSM and PGD on every example, kept for comparison with them;
- the ensemble of ``eval_mode`` (``standard``: APGD-CE, APGD-T, Square, AutoAttack's
  standard set less FAB-T; ``fast``: APGD-CE and APGD-T), run in sequence, each on the
  examples the ones before it left standing, recorded as the ``autoattack`` point;
- the audit's probes (``methods.audit``) on what still stands.

``worst`` is the per-example worst case over every attack run at that eps, probes
included: the headline robust accuracy. Results are the typed records of
``methods.results`` (re-exported here), written with ``asdict``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from methods.attacks import Attack, build_attack, model_mode
from methods.audit import (
    LARGE_EPS,
    ProbeSettings,
    audit,
    largest_class_share,
    probe_gradients,
    stronger_attacks,
)
from methods.batching import batches
from methods.faithfulness import lime_masked_accuracy_curve, masked_accuracy_curve
from methods.lime import LimeExplainer, LimeSettings
from methods.results import CorruptionPoint, EvalResult, FaithfulnessCurve, RobustPoint

__all__ = [
    "ENSEMBLES",
    "EVAL_MODES",
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

#: Ensemble per eval mode: (registry name, options), run in this order. ``standard`` is
#: AutoAttack's standard L-inf set (Croce & Hein, ICML 2020) without FAB-T, which
#: rarely breaks an example the other three leave standing (their Table 2).
ENSEMBLES: dict[str, tuple[tuple[str, dict[str, object]], ...]] = {
    "standard": (
        ("apgd-ce", {"steps": 100}),
        ("apgd-t", {"steps": 100, "n_target_classes": 9}),
        ("square", {"queries": 5000}),
    ),
    "fast": (
        ("apgd-ce", {"steps": 100}),
        ("apgd-t", {"steps": 100, "n_target_classes": 3}),
    ),
    "pgd": (),  # the papers' protocol alone: FGSM and PGD
}
EVAL_MODES = tuple(ENSEMBLES)
DEFAULT_PROBES = ProbeSettings()


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
        for part in batches(len(labels), batch_size):
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
    eval_mode: str = "standard",
    pgd_steps: int = EVAL_PGD_STEPS,
    pgd_restarts: int = EVAL_PGD_RESTARTS,
    probes: ProbeSettings | None = DEFAULT_PROBES,
    probe_eps: Sequence[float] | None = None,
    fast_eps: Sequence[float] = (),
    faithfulness: bool = True,
    saliency_target: str = "log_prob",
    lime: LimeSettings | None = None,
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
        eps_grid: L-inf radii on the [0,1] scale; every attack runs at each eps.
        attacks: the papers' curves, names from ``methods.attacks.ATTACKS`` run on
            every example (FGSM and PGD by default).
        eval_mode: the ensemble behind the headline (``ENSEMBLES``).
        pgd_steps, pgd_restarts: PGD strength (step size 2.5 * eps / steps).
        probes: the audit's extra attacks; None skips them (the audit then reads the
            curve alone).
        probe_eps: the eps at which the probes run (None: every eps of the grid). In
            the fast ensemble the probes cost more than the ensemble itself (Square's
            1,000 queries and the margin PGD's 200 steps against APGD's 400), so
            sweeps run them at the headline eps only.
        fast_eps: eps at which the ``fast`` ensemble replaces ``standard`` (a report's
            curve beside its headline eps: Square is most of the standard ensemble's
            cost where many examples stand; ``benchmarks/evaluate.py``).
        faithfulness, saliency_target: SGT's masked-accuracy curve on the same images
            (``methods.faithfulness``), its saliency from this output.
        lime: with ``faithfulness``, also the curve in the order of LIME's weights,
            explaining each image's true class with these settings (LGR's rows).
        seed: seeds every random start and draw, so a result reproduces exactly.
    """
    if eval_mode not in ENSEMBLES:
        raise ValueError(f"unknown eval_mode {eval_mode!r}; valid: {', '.join(ENSEMBLES)}")
    kw = {"batch_size": batch_size, "device": device, "seed": seed}
    clean = correct_under(model, images, labels, None, **kw)
    curve: list[RobustPoint] = []
    settings: dict[str, str] = {}
    measures: dict[str, float] = {}
    steps = [(eps, name) for eps in eps_grid for name in (*attacks, "ensemble")]
    fast = _fast(eps_grid, eval_mode, fast_eps)
    # disable=None: a bar on a terminal only, not in Ray's forwarded trial logs.
    progress = tqdm(total=len(steps), desc="evaluate", unit="attack", leave=False, disable=None)
    for eps in eps_grid:
        survived = clean.clone()
        for name in attacks:
            options = {"steps": pgd_steps, "restarts": pgd_restarts} if name == "pgd" else {}
            attack = build_attack(name, eps, **options)
            settings[name] = _pattern(attack, eps)
            correct = correct_under(model, images, labels, attack, **kw)
            curve.append(RobustPoint(name, float(eps), _mean(correct)))
            survived &= correct
            progress.update()
        progress.set_postfix(eps=f"{eps:g}")
        mode = "fast" if eps in fast else eval_mode
        for name, options in ENSEMBLES[mode]:
            attack = build_attack(name, eps, **options)
            settings[name] = _pattern(attack, eps)
            survived &= _correct_on(model, images, labels, attack, survived, **kw)
        if ENSEMBLES[mode]:
            curve.append(RobustPoint("autoattack", float(eps), _mean(survived)))
        progress.update()
        if probes is not None and _among(eps, probe_eps):
            blackbox = not any(name == "square" for name, _ in ENSEMBLES[mode])
            for measure, attack in stronger_attacks(eps, probes, blackbox=blackbox):
                settings[f"audit:{measure}"] = _pattern(attack, eps)
                standing = _first(survived, probes.max_examples)
                broken = standing & ~_correct_on(model, images, labels, attack, standing, **kw)
                measures[f"{measure}@{eps:g}"] = _mean(broken)
                survived &= ~broken
        if len(attacks) + len(ENSEMBLES[mode]) > 1 or probes is not None:
            curve.append(RobustPoint("worst", float(eps), _mean(survived)))
    progress.close()
    if probes is not None:
        measures.update(_global_probes(model, images, labels, probes, **kw))
    curve_of_masking = lime_curve = None
    if faithfulness:
        curve_of_masking = masked_accuracy_curve(
            model, images, labels, saliency_target=saliency_target, **kw
        )
        if lime is not None:
            lime_curve = _lime_curve(model, images, labels, lime, **kw)
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
        clean_acc=_mean(clean),
        robust_curve=tuple(curve),
        corruption_curve=corruption_curve,
        corruption_acc=corruption_mean,
        attack_settings=settings,
        eval_mode=eval_mode,
        fast_eps=tuple(float(e) for e in fast),
        audit_measures=measures,
        faithfulness=curve_of_masking,
        lime_faithfulness=lime_curve,
    )
    flags = audit(result)
    for flag in flags:
        log.warning("robustness audit: %s", flag)
    return replace(result, audit_flags=flags)


def _lime_curve(model, images, labels, settings: LimeSettings, **kw) -> FaithfulnessCurve:
    """The masked-accuracy curve with superpixels removed in order of LIME weight for
    the true class (as the saliency curve ranks by the true class's gradient)."""
    explanations = LimeExplainer(model).explain(images, labels, settings)
    return lime_masked_accuracy_curve(model, images, labels, explanations, **kw)


def _fast(eps_grid: Sequence[float], eval_mode: str, fast_eps: Sequence[float]) -> list[float]:
    """The eps of ``eps_grid`` at which the fast ensemble replaces the standard one."""
    if eval_mode != "standard" or not fast_eps:
        return []
    return [eps for eps in eps_grid if _among(eps, fast_eps)]


def _among(eps: float, chosen: Sequence[float] | None) -> bool:
    return chosen is None or any(math.isclose(eps, c) for c in chosen)


def _mean(mask: torch.Tensor) -> float:
    return mask.float().mean().item()


def _pattern(attack: Attack, eps: float) -> str:
    return repr(attack).replace(f"eps={eps:g}", "eps=*")


def _first(mask: torch.Tensor, count: int) -> torch.Tensor:
    """``mask`` with only its first ``count`` true entries kept."""
    kept = mask.clone()
    kept[mask.nonzero().flatten()[count:]] = False
    return kept


def _correct_on(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: Attack,
    subset: torch.Tensor,
    **kw,
) -> torch.Tensor:
    """Per-example correctness under ``attack``, attacking only where ``subset`` is
    true (AutoAttack's economy: an example already broken stays broken); False
    elsewhere."""
    out = torch.zeros_like(subset)
    index = subset.nonzero().flatten()
    if len(index):
        out[index] = correct_under(model, images[index], labels[index], attack, **kw)
    return out


def _global_probes(model, images, labels, probes: ProbeSettings, **kw) -> dict[str, float]:
    """The eps-independent signs: an attack at ``LARGE_EPS`` and the gradients."""
    subset = slice(0, probes.max_examples)
    x, y = images[subset], labels[subset]
    attack = build_attack("pgd", LARGE_EPS, steps=probes.large_eps_steps)
    large = correct_under(model, x, y, attack, **kw)
    return {
        "large_eps_acc": _mean(large),
        "large_eps_bound": largest_class_share(y),
        "zero_gradient_share": probe_gradients(
            model, x, y, batch_size=kw["batch_size"], device=kw["device"]
        ),
    }


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
