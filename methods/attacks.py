"""L-inf evasion attacks: FGSM and PGD.

The contract (after torchattacks): inputs and outputs are images in [0,1], ``eps``
is on that scale, attacks are untargeted, and the model's train/eval mode (per
submodule) is restored after the call. Attacks take their settings at
construction and the model at call time, so one attack object serves a training
method across epochs, DDP wrappers and evaluation alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ATTACKS", "FGSM", "PGD", "Attack", "build_attack", "model_mode", "unwrap"]

ModelMode = Literal["eval", "train"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (else ``model``).

    Input gradients (attacks, saliency) need no gradient sync across workers, and a
    DDP forward whose backward never reaches the parameters leaves DDP's reducer
    waiting for a reduction that never comes; the weights are the same on every rank.
    """
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@contextmanager
def model_mode(model: nn.Module, mode: ModelMode) -> Iterator[None]:
    """Put ``model`` in ``mode`` and restore every submodule's own mode afterwards.

    Restoring per submodule (not ``model.train(was_training)``) keeps deliberately
    frozen parts, such as BatchNorm layers held in eval mode, as the caller left them.
    """
    saved = [(m, m.training) for m in model.modules()]
    model.train(mode == "train")
    try:
        yield
    finally:
        for module, training in saved:
            module.training = training


class Attack:
    """Base class: validates settings, handles eps = 0 and the model's mode."""

    name: ClassVar[str]

    def __init__(self, eps: float, *, mode: ModelMode = "eval") -> None:
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"eps must lie in [0, 1] (L-inf on the [0,1] pixel scale), got {eps}")
        if mode not in ("eval", "train"):
            raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
        self.eps = float(eps)
        self.mode: ModelMode = mode

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Adversarial examples for ``images`` (N, C, H, W) in [0,1] with true ``labels`` (N,).

        Returns a detached tensor of the same shape, within ``eps`` of ``images`` and in [0,1].
        ``generator`` seeds the random start (on the images' device).
        """
        images = images.detach()
        model = unwrap(model)
        if self.eps == 0.0:
            return images.clone()
        with model_mode(model, self.mode), torch.enable_grad():
            return self._perturb(model, images, labels, generator).detach()

    def _perturb(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps:g})"


class PGD(Attack):
    """Projected gradient descent on the cross-entropy (Madry et al., ICLR 2018).

    Args:
        eps: L-inf radius on the [0,1] scale.
        steps: gradient-sign steps per restart.
        step_size: size of each step; default ``2.5 * eps / steps`` (Madry et al.),
            which lets a walk from a random start reach any corner of the ball.
        random_start: start from a uniform point in the eps-ball.
        restarts: independent runs; an example counts as broken if any run breaks it.
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
        mode: ModelMode = "eval",
    ) -> None:
        super().__init__(eps, mode=mode)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {restarts}")
        if restarts > 1 and not random_start:
            raise ValueError("restarts > 1 needs random_start=True (otherwise every run is equal)")
        self.steps = steps
        self.step_size = 2.5 * self.eps / steps if step_size is None else float(step_size)
        self.random_start = random_start
        self.restarts = restarts

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
            # Sum, not mean: only the sign is used, and the sum keeps per-example
            # gradients independent of the batch size.
            loss = F.cross_entropy(model(adversarial), labels, reduction="sum")
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
        return (
            f"PGD(eps={self.eps:g}, steps={self.steps}, step_size={self.step_size:g}, "
            f"random_start={self.random_start}, restarts={self.restarts})"
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


ATTACKS: dict[str, type[PGD]] = {"fgsm": FGSM, "pgd": PGD}


def build_attack(name: str, eps: float, **options: object) -> Attack:
    """An attack by registry name; unknown names raise ``ValueError`` listing the valid ones."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    return ATTACKS[name](eps, **options)  # type: ignore[arg-type]
