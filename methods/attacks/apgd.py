"""Auto-PGD (Croce & Hein, ICML 2020), L-inf: APGD on CE or DLR, and targeted APGD-T.

"Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", arXiv 2003.01690. Follows the reference code
(fra31/auto-attack, ``autoattack/autopgd_base.py``; torchattacks ``apgd.py`` and
``apgdt.py`` are copies of it); docs/attacks.md lists every deviation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks._utils import (
    ball,
    check_fraction,
    check_positive,
    dlr,
    dlr_targeted,
)
from methods.attacks.base import Attack, ModelMode

__all__ = ["APGD", "APGDT"]

APGDLoss = Literal["ce", "dlr"]
# (logits, labels) -> per-example loss (N,), ascended.
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

MOMENTUM = 0.75  # weight of the new gradient step; 1 - MOMENTUM goes to the last move
FIRST_CHECKPOINT = 0.22  # fraction of steps before the first step-size check
CHECKPOINT_SHRINK = 0.03  # each later interval is this fraction of steps shorter...
MIN_INTERVAL = 0.06  # ...down to this fraction of steps


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


class APGD(Attack):
    """Auto-PGD, L-inf (Croce & Hein, ICML 2020), untargeted.

    Gradient-sign steps with momentum; the step size starts at ``2 * eps`` and is
    halved at checkpoints (after 22% of the steps, then at shrinking intervals down
    to 6%) for every example whose loss rose in at most ``rho`` of the steps since
    the last checkpoint, or whose best loss did not improve while its step size was
    not cut at the last checkpoint; a halved example restarts from its best point.
    Only examples the model classifies correctly are attacked; each restart
    re-attacks the ones still standing from a fresh random start.

    Args:
        eps: L-inf radius on the [0,1] scale.
        loss: "ce" (cross-entropy) or "dlr" (difference of logits ratio, needs >= 3
            classes); both on the model's outputs (logits).
        steps: iterations per restart.
        restarts: runs from fresh random starts on the examples still unbroken.
        rho: the oscillation threshold of the step-size rule.
        mode: the model mode during the attack.
    """

    name = "apgd-ce"

    def __init__(
        self,
        eps: float,
        *,
        loss: APGDLoss = "ce",
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        mode: ModelMode = "eval",
    ) -> None:
        super().__init__(eps, mode=mode)
        if loss not in ("ce", "dlr"):
            raise ValueError(f"loss must be 'ce' or 'dlr', got {loss!r}")
        check_positive("steps", steps)
        check_positive("restarts", restarts)
        check_fraction("rho", rho)
        self.loss: APGDLoss = loss
        self.steps = steps
        self.restarts = restarts
        self.rho = float(rho)

    def _perturb(self, model, images, labels, generator):  # type: ignore[override]
        with torch.no_grad():
            clean = model(images)
        if self.loss == "dlr":
            _check_classes(clean, 3, "APGD's DLR loss")
        objective: Objective = _cross_entropy if self.loss == "ce" else dlr
        adversarial = images.clone()
        robust = clean.argmax(1) == labels
        for _ in range(self.restarts):
            _attack_robust(self, model, images, labels, robust, adversarial, objective, generator)
        return adversarial

    def __repr__(self) -> str:
        return (
            f"APGD(eps={self.eps:g}, loss={self.loss!r}, steps={self.steps}, "
            f"restarts={self.restarts}, rho={self.rho:g})"
        )


class APGDT(APGD):
    """APGD-T: APGD on the targeted DLR loss, once per target class (Croce & Hein 2020).

    The targets are the classes ranked 2nd, 3rd, ... by the model on the clean image
    (the top ``n_target_classes``, capped at the number of classes - 1); each target
    gets ``restarts`` runs on the examples no earlier target broke, so an example
    broken by any target counts as broken. Needs >= 4 classes.

    Args:
        eps, steps, restarts, rho, mode: as in :class:`APGD`.
        n_target_classes: how many of the highest-ranked wrong classes to target.
    """

    name = "apgd-t"

    def __init__(
        self,
        eps: float,
        *,
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        n_target_classes: int = 9,
        mode: ModelMode = "eval",
    ) -> None:
        super().__init__(eps, loss="dlr", steps=steps, restarts=restarts, rho=rho, mode=mode)
        check_positive("n_target_classes", n_target_classes)
        self.n_target_classes = n_target_classes

    def _perturb(self, model, images, labels, generator):  # type: ignore[override]
        with torch.no_grad():
            clean = model(images)
        num_classes = _check_classes(clean, 4, "APGD-T's targeted DLR loss")
        # Targets are ranked on the clean images, as in the reference.
        ranking = clean.argsort(dim=1)
        adversarial = images.clone()
        robust = clean.argmax(1) == labels
        for rank in range(2, min(self.n_target_classes, num_classes - 1) + 2):
            for _ in range(self.restarts):
                # The subset _attack_robust picks: ``robust`` does not change in between.
                chosen = robust.nonzero().squeeze(1)
                if chosen.numel() == 0:
                    return adversarial
                targets = ranking[chosen, -rank]

                def objective(logits, y, targets=targets):
                    return dlr_targeted(logits, y, targets)

                _attack_robust(
                    self, model, images, labels, robust, adversarial, objective, generator
                )
        return adversarial

    def __repr__(self) -> str:
        return (
            f"APGDT(eps={self.eps:g}, steps={self.steps}, restarts={self.restarts}, "
            f"rho={self.rho:g}, n_target_classes={self.n_target_classes})"
        )


def checkpoints(steps: int) -> list[int]:
    """Step counts after which APGD checks its step size (Croce & Hein 2020, Sec. 3.2):
    the first after 22% of the steps, each later interval 3% of the steps shorter than
    the one before, but at least 6% (each fraction at least one step, as in the
    reference). For 100 steps: 22, 41, 57, 70, 80, 87, 93, 99."""
    interval = max(int(FIRST_CHECKPOINT * steps), 1)
    shrink = max(int(CHECKPOINT_SHRINK * steps), 1)
    min_interval = max(int(MIN_INTERVAL * steps), 1)
    done, out = 0, []
    while done + interval <= steps:
        done += interval
        out.append(done)
        interval = max(interval - shrink, min_interval)
    return out


def _check_classes(outputs: torch.Tensor, needed: int, what: str) -> int:
    num_classes = outputs.shape[1]
    if num_classes < needed:
        raise ValueError(f"{what} needs at least {needed} classes, the model has {num_classes}")
    return num_classes


def _attack_robust(
    attack: APGD,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    robust: torch.Tensor,
    adversarial: torch.Tensor,
    objective: Objective,
    generator: torch.Generator | None,
) -> None:
    """One APGD run on the examples still ``robust``; write back the ones it breaks
    (``adversarial`` and ``robust`` are updated in place)."""
    chosen = robust.nonzero().squeeze(1)
    if chosen.numel() == 0:
        return
    broken, found = _single_run(
        model,
        images[chosen],
        labels[chosen],
        objective,
        eps=attack.eps,
        steps=attack.steps,
        rho=attack.rho,
        generator=generator,
    )
    adversarial[chosen[broken]] = found[broken]
    robust[chosen[broken]] = False


def _loss_and_grad(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, objective: Objective
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, per-example loss, input gradient of the summed loss), all detached."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = objective(logits, labels)
    # autograd.grad w.r.t. the input alone leaves the parameters' .grad untouched.
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return logits.detach(), loss.detach(), grad


def _single_run(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    objective: Objective,
    *,
    eps: float,
    steps: int,
    rho: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD run, L-inf (the reference's ``attack_single_run``).

    Returns (broken (N,) bool, adversarial (N, C, H, W)): for a broken example the
    last iterate at which it was misclassified.
    """
    n = len(x)
    per_example = (n,) + (1,) * (x.dim() - 1)
    lower, upper = ball(x, eps)

    def project(z: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(z, upper), lower)

    # Random start: uniform noise rescaled so its largest entry is exactly eps.
    noise = 2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1
    noise = noise / (noise.abs().flatten(1).amax(1).view(per_example) + 1e-12)
    x_adv = project(x + eps * noise)

    logits, loss, grad = _loss_and_grad(model, x_adv, labels, objective)
    broken = logits.argmax(1) != labels
    x_broken = x_adv.clone()  # the reference's x_best_adv
    x_best, loss_best, grad_best = x_adv.clone(), loss.clone(), grad.clone()

    step_size = torch.full(per_example, 2.0 * eps, device=x.device, dtype=x.dtype)
    checks = checkpoints(steps)
    last_check = 0
    increases = torch.zeros(n, device=x.device)  # steps whose loss rose since the check
    loss_prev = loss
    loss_best_at_check = loss_best.clone()
    # True at the start, so the "no improvement" condition cannot fire at the first check.
    reduced_at_check = torch.ones(n, dtype=torch.bool, device=x.device)

    x_prev = x_adv
    for i in range(steps):
        with torch.no_grad():
            move = x_adv - x_prev
            x_prev = x_adv
            weight = MOMENTUM if i > 0 else 1.0
            z = project(x_adv + step_size * grad.sign())
            x_adv = project(x_adv + weight * (z - x_adv) + (1.0 - weight) * move)

        logits, loss, grad = _loss_and_grad(model, x_adv, labels, objective)
        wrong = logits.argmax(1) != labels
        x_broken[wrong] = x_adv[wrong]
        broken |= wrong

        with torch.no_grad():
            improved = loss > loss_best
            x_best[improved] = x_adv[improved]
            grad_best[improved] = grad[improved]
            loss_best = torch.where(improved, loss, loss_best)
            increases += (loss > loss_prev).float()
            loss_prev = loss
            if i + 1 in checks:
                interval, last_check = i + 1 - last_check, i + 1
                oscillating = increases <= interval * rho
                stalled = ~reduced_at_check & (loss_best_at_check >= loss_best)
                reduce = oscillating | stalled
                reduced_at_check = reduce
                loss_best_at_check = loss_best.clone()
                if reduce.any():
                    step_size[reduce] /= 2.0
                    x_adv[reduce] = x_best[reduce]
                    grad[reduce] = grad_best[reduce]
                increases.zero_()
    return broken, x_broken
