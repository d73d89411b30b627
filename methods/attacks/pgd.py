"""FGSM and PGD: fixed-step gradient-sign attacks (cross-entropy or margin loss)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks._utils import margin
from methods.attacks.base import Attack, ModelMode

__all__ = ["FGSM", "PGD"]

PGDLoss = Literal["ce", "margin"]


class PGD(Attack):
    """Projected gradient descent (Madry et al., ICLR 2018).

    Args:
        eps: L-inf radius on the [0,1] scale.
        steps: gradient-sign steps per restart.
        step_size: size of each step; default ``2.5 * eps / steps`` (Madry et al.),
            which lets a walk from a random start reach any corner of the ball.
        random_start: start from a uniform point in the eps-ball.
        restarts: independent runs; an example counts as broken if any run breaks it.
        loss: "ce" (cross-entropy, Madry et al.) or "margin" (the Carlini-Wagner loss
            on logits, max_{j != y} z_j - z_y, as in PGD-CW).
        mode: the model mode during the attack ("eval": BatchNorm uses running stats,
            dropout is off).
    """

    name = "pgd"

    def __init__(
        self,
        eps: float,
        *,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        loss: PGDLoss = "ce",
        mode: ModelMode = "eval",
    ) -> None:
        super().__init__(eps, mode=mode)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {restarts}")
        if restarts > 1 and not random_start:
            raise ValueError("restarts > 1 needs random_start=True (otherwise every run is equal)")
        if loss not in ("ce", "margin"):
            raise ValueError(f"loss must be 'ce' or 'margin', got {loss!r}")
        self.steps = steps
        self.step_size = 2.5 * self.eps / steps if step_size is None else float(step_size)
        self.random_start = random_start
        self.restarts = restarts
        self.loss: PGDLoss = loss

    def _perturb(self, model, images, labels, generator):  # type: ignore[override]
        adversarial = self._run(model, images, labels, generator)
        if self.restarts == 1:
            return adversarial
        broken = self._misclassified(model, adversarial, labels)
        for _ in range(self.restarts - 1):
            candidate = self._run(model, images, labels, generator)
            # Keep the first run that breaks an example; unbroken ones take the latest run.
            take = ~broken
            adversarial[take] = candidate[take]
            broken |= self._misclassified(model, candidate, labels)
        return adversarial

    def _objective(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Sum, not mean: only the sign is used, and the sum keeps per-example
        # gradients independent of the batch size.
        if self.loss == "ce":
            return F.cross_entropy(logits, labels, reduction="sum")
        return -margin(logits, labels).sum()

    def _run(self, model, images, labels, generator) -> torch.Tensor:
        lower = (images - self.eps).clamp_(min=0.0)
        upper = (images + self.eps).clamp_(max=1.0)
        if self.random_start:
            noise = torch.empty_like(images).uniform_(-self.eps, self.eps, generator=generator)
            adversarial = (images + noise).clamp_(0.0, 1.0)
        else:
            adversarial = images.clone()
        for _ in range(self.steps):
            adversarial.requires_grad_(True)
            loss = self._objective(model(adversarial), labels)
            # autograd.grad w.r.t. the input alone skips the weight gradients and
            # leaves the parameters' .grad untouched.
            (grad,) = torch.autograd.grad(loss, adversarial)
            adversarial = adversarial.detach().add_(grad.sign_(), alpha=self.step_size)
            adversarial = torch.maximum(torch.minimum(adversarial, upper), lower)
        return adversarial

    @staticmethod
    @torch.no_grad()
    def _misclassified(model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
        return model(images).argmax(1) != labels

    def __repr__(self) -> str:
        loss = "" if self.loss == "ce" else f", loss={self.loss!r}"
        return (
            f"PGD(eps={self.eps:g}, steps={self.steps}, step_size={self.step_size:g}, "
            f"random_start={self.random_start}, restarts={self.restarts}{loss})"
        )


class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al., ICLR 2015): one step of size eps.

    With ``random_start=True`` it is FGSM-RS, the attack of "fast" adversarial
    training (Wong et al., ICLR 2020): a uniform start in the eps-ball, then one step
    of ``1.25 * eps`` projected back onto the ball.
    """

    name = "fgsm"

    def __init__(
        self,
        eps: float,
        *,
        random_start: bool = False,
        step_size: float | None = None,
        mode: ModelMode = "eval",
    ) -> None:
        if step_size is None:
            step_size = 1.25 * eps if random_start else eps
        super().__init__(eps, steps=1, step_size=step_size, random_start=random_start, mode=mode)

    def __repr__(self) -> str:
        return f"FGSM(eps={self.eps:g}, random_start={self.random_start})"
