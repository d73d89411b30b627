"""Input-gradient saliency and bottom-k masking, shared by SGT and ASGT.

Saliency follows Ismail et al. (NeurIPS 2021) and their released code: the gradient
of the target output with respect to the input, averaged over channels (signed by
default; ``absolute=True`` takes |gradient| first). Which output, and in which model
mode, each method's source chooses (``docs/methods.md``): SGT's MNIST network ends in
log_softmax (``target="log_prob"``), its CIFAR ResNet in logits (``"logit"``); SGT
takes the gradient in eval mode, ASGT's code in train mode. In either mode the pass
leaves BatchNorm's running statistics as they were.

Masking replaces the bottom ``ratio`` fraction of pixels (all channels of each) with
uniform noise drawn in each image's own [min, max] (SGT), or in each channel's own
[min, max] (ASGT's ``per_channel``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks import model_mode, unwrap

__all__ = [
    "SALIENCY_MODES",
    "SALIENCY_TARGETS",
    "bottom_k_mask",
    "frozen_batchnorm_statistics",
    "input_saliency",
    "mask_with_noise",
]

SaliencyTarget = Literal["logit", "log_prob"]
SaliencyMode = Literal["eval", "train"]
SALIENCY_TARGETS: tuple[str, ...] = ("logit", "log_prob")
SALIENCY_MODES: tuple[str, ...] = ("eval", "train")


@contextmanager
def frozen_batchnorm_statistics(model: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm layer's running mean, variance and batch count on exit,
    so a forward pass in train mode that only serves a gradient leaves no trace."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [
        [b.detach().clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)]
        for m in layers
        if m.track_running_stats and m.running_mean is not None
    ]
    try:
        yield
    finally:
        tracked = [m for m in layers if m.track_running_stats and m.running_mean is not None]
        with torch.no_grad():
            for layer, (mean, var, count) in zip(tracked, saved, strict=True):
                layer.running_mean.copy_(mean)
                layer.running_var.copy_(var)
                layer.num_batches_tracked.copy_(count)


def input_saliency(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    absolute: bool = False,
    target: SaliencyTarget = "logit",
    mode: SaliencyMode | None = None,
) -> torch.Tensor:
    """d f_target(x) / dx averaged over channels: (N, H, W), detached.

    Args:
        target: ``"logit"`` (the target's logit) or ``"log_prob"`` (its log-softmax).
        mode: the model mode of the pass (restored afterwards); None keeps the current.

    Parameter gradients are neither computed nor touched (``autograd.grad`` with
    respect to the input alone), and BatchNorm's running statistics stay unchanged.
    """
    if target not in SALIENCY_TARGETS:
        raise ValueError(
            f"unknown saliency target {target!r}; valid: {', '.join(SALIENCY_TARGETS)}"
        )
    net = unwrap(model)
    x = images.detach().requires_grad_(True)
    switch = nullcontext() if mode is None else model_mode(net, mode)
    # Only a train-mode pass updates running statistics; this runs every training step
    # of SGT/ASGT, so eval mode skips the snapshot.
    in_train_mode = net.training if mode is None else mode == "train"
    freeze = frozen_batchnorm_statistics(net) if in_train_mode else nullcontext()
    with torch.enable_grad(), switch, freeze:
        out = net(x)
        if target == "log_prob":
            out = F.log_softmax(out, dim=1)
        chosen = out.gather(1, targets.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(chosen, x)
    if absolute:
        grad = grad.abs()
    return grad.mean(dim=1)


def bottom_k_mask(saliency: torch.Tensor, ratio: float) -> torch.Tensor:
    """(N, H, W) bool: exactly ``round(ratio * H * W)`` lowest-saliency pixels per image."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must lie in (0, 1), got {ratio}")
    flat = saliency.flatten(1)
    k = max(1, round(ratio * flat.shape[1]))
    lowest = flat.topk(k, dim=1, largest=False).indices
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, lowest, True)
    return mask.view_as(saliency)


def mask_with_noise(
    images: torch.Tensor,
    mask: torch.Tensor,
    *,
    per_channel: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``images`` (N, C, H, W) with the pixels of ``mask`` ((N, H, W) or (N, 1, H, W),
    every channel) replaced by uniform noise in each image's [min, max], or in each
    channel's own [min, max] with ``per_channel``."""
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    dims = (2, 3) if per_channel else (1, 2, 3)
    low = images.amin(dim=dims, keepdim=True)
    high = images.amax(dim=dims, keepdim=True)
    noise = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    noise = low + (high - low) * noise
    return torch.where(mask.bool(), noise, images)
