"""Losses on logits and small helpers shared by the attacks.

Every loss here is invariant to adding a constant to an example's logits, so a model
that ends in ``log_softmax`` (the SGT MNIST network) gives the same values as one that
returns raw logits; cross-entropy is too, since ``log_softmax`` is idempotent.
"""

from __future__ import annotations

import torch
from torch import nn


def true_logit(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z_y per example, (N,)."""
    return logits.gather(1, labels[:, None]).squeeze(1)


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j per example, (N,): positive while the example is classified
    correctly. Its negative is the Carlini-Wagner loss that PGD's ``loss="margin"``
    ascends; Square descends it."""
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true_logit(logits, labels) - others.amax(1)


def dlr(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020, eq. 6), (N,), ascended by APGD-DLR:

    -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12), pi sorting the logits in
    decreasing order. Needs at least 3 classes.
    """
    ordered, order = logits.sort(dim=1)
    top_is_true = order[:, -1] == labels
    best_other = torch.where(top_is_true, ordered[:, -2], ordered[:, -1])
    return -(true_logit(logits, labels) - best_other) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


def dlr_targeted(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce & Hein 2020, eq. 7), (N,), ascended by APGD-T:

    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12). Needs at least 4 classes.
    """
    ordered = logits.sort(dim=1).values
    scale = ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4]) + 1e-12
    return -(true_logit(logits, labels) - true_logit(logits, targets)) / scale


def ball(images: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel (lower, upper) bounds of the eps-ball intersected with [0,1]."""
    return (images - eps).clamp_(min=0.0), (images + eps).clamp_(max=1.0)


@torch.no_grad()
def predicts(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Predicted class per example, (N,)."""
    return model(images).argmax(1)


def check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def check_fraction(name: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {value}")
