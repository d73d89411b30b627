"""Input-gradient saliency and bottom-k masking, shared by SGT and ASGT.

Saliency follows Ismail et al. (NeurIPS 2021) and their released code: the gradient
of the target logit with respect to the input, averaged over channels (signed by
default; ``absolute=True`` takes |gradient| first). Masking replaces the bottom
``ratio`` fraction of pixels (all channels of each) with uniform noise drawn in each
image's own [min, max].
"""

from __future__ import annotations

import torch
from torch import nn

from methods.attacks import unwrap

__all__ = ["bottom_k_mask", "input_saliency", "mask_with_noise"]


def input_saliency(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, absolute: bool = False
) -> torch.Tensor:
    """d f_target(x) / dx averaged over channels: (N, H, W), detached.

    The model keeps its current mode; parameter gradients are neither computed nor
    touched (``autograd.grad`` with respect to the input alone).
    """
    x = images.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = unwrap(model)(x)
        chosen = logits.gather(1, targets.view(-1, 1)).sum()
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
    images: torch.Tensor, mask: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``images`` (N, C, H, W) with the pixels of ``mask`` ((N, H, W) or (N, 1, H, W),
    every channel) replaced by uniform noise in each image's [min, max]."""
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    noise = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    noise = low + (high - low) * noise
    return torch.where(mask.bool(), noise, images)
