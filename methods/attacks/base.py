"""The attack contract shared by every attack in this package.

The contract (after torchattacks): inputs and outputs are images in [0,1], ``eps``
is L-inf on that scale, attacks are untargeted, and the model's train/eval mode (per
submodule) is restored after the call. Attacks take their settings at
construction and the model at call time, so one attack object serves a training
method across epochs, DDP wrappers and evaluation alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar, Literal

import torch
from torch import nn

__all__ = ["Attack", "ModelMode", "model_mode", "unwrap"]

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
        ``generator`` seeds every random draw (on the images' device).
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
