"""The squared input gradient on masked pixels, shared by LGR and RRR (which differ in
the output they differentiate and in how they reduce over the batch)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

#: ``sum``: per image, then the batch mean; ``flagged``: the mean over the batch's
#: masked elements (0 when none is masked); ``mean``: the mean over every element.
REDUCTIONS = ("sum", "flagged", "mean")


def input_gradient_penalty(
    model: nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    output: Callable[[torch.Tensor], torch.Tensor],
    reduction: str = "sum",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, the squared gradient of ``output(logits)`` (a scalar) with respect to
    the inputs, on the pixels of ``masks`` ((N, 1, H, W), every channel)). The graph is
    kept (``create_graph``), so the penalty trains the parameters (double
    back-propagation)."""
    x = images.detach().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(output(logits), x, create_graph=True)
    squared = (grad * masks.to(grad.dtype)).pow(2)
    if reduction == "sum":
        return logits, squared.sum(dim=(1, 2, 3)).mean()
    if reduction == "flagged":
        flagged = masks.to(grad.dtype).expand_as(grad).sum()
        return logits, squared.sum() / flagged.clamp_min(1.0)
    return logits, squared.mean()
