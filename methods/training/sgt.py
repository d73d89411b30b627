"""Saliency-guided training, SGT (Ismail, Corrada Bravo, Feizi; NeurIPS 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.options import Options
from methods.saliency import (
    SaliencyMode,
    SaliencyTarget,
    bottom_k_mask,
    input_saliency,
    mask_with_noise,
)
from methods.training import _options
from methods.training._divergence import kl_from_logits
from methods.training.base import StepOutput, TrainingMethod


@dataclass(frozen=True)
class SGTOptions(Options):
    mask_ratio: float = _options.mask_ratio(0.5, "fraction of pixels masked by saliency")
    reg_weight: float = _options.reg_weight("KL term")
    absolute_saliency: bool = _options.absolute_saliency()
    saliency_target: str = _options.saliency_target()
    saliency_mode: str = _options.saliency_mode(
        "eval", "model mode of the saliency pass (SGT's code: eval)"
    )


class SGT(TrainingMethod):
    """Loss = CE(f(x), y) + reg_weight * KL(p(x) || p(x~)).

    x~ is x with the bottom ``mask_ratio`` fraction of pixels by saliency (the input
    gradient of the true label's logit or log-probability, averaged over channels)
    replaced by uniform noise in the image's [min, max], every channel of a masked
    pixel. (The released code's flat indexing masks only channel 0 on RGB inputs; a
    defect not copied here, docs/methods.md.)

    Args:
        mask_ratio: fraction of pixels masked, in (0, 1); the paper's MNIST setting is 0.5.
        reg_weight: weight of the KL term (the paper's lambda), >= 0.
        absolute_saliency: rank pixels by |gradient| instead of the signed gradient.
        saliency_target: ``"logit"`` or ``"log_prob"`` (the released MNIST network
            ends in log_softmax, so its saliency is d log p_y / dx).
        saliency_mode: model mode of the saliency pass; the released code switches to
            eval mode for it and back to train mode after.
    """

    name = "sgt"
    Options = SGTOptions
    draws_saliency = True

    def __init__(
        self,
        mask_ratio: float = 0.5,
        reg_weight: float = 1.0,
        *,
        absolute_saliency: bool = False,
        saliency_target: SaliencyTarget = "logit",
        saliency_mode: SaliencyMode = "eval",
    ) -> None:
        _check_ratio_and_weight(mask_ratio, reg_weight)
        self.mask_ratio = mask_ratio
        self.reg_weight = reg_weight
        self.absolute_saliency = absolute_saliency
        self.saliency_target = saliency_target
        self.saliency_mode = saliency_mode

    @classmethod
    def from_options(cls, options: SGTOptions) -> SGT:  # type: ignore[override]
        return cls(
            options.mask_ratio,
            options.reg_weight,
            absolute_saliency=options.absolute_saliency,
            saliency_target=options.saliency_target,  # type: ignore[arg-type]
            saliency_mode=options.saliency_mode,  # type: ignore[arg-type]
        )

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> StepOutput:
        saliency = self.saliency(model, images, labels)
        masked = mask_with_noise(images, bottom_k_mask(saliency, self.mask_ratio))
        logits = model(images)
        masked_logits = model(masked)
        ce = F.cross_entropy(logits, labels)
        kl = kl_from_logits(logits, masked_logits)
        return StepOutput(
            loss=ce + self.reg_weight * kl,
            logits=logits,
            terms={"ce": ce.detach(), "kl": kl.detach()},
        )

    def saliency(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
        """What the method masks by (also drawn in TensorBoard): (N, H, W)."""
        return input_saliency(
            model,
            images,
            labels,
            absolute=self.absolute_saliency,
            target=self.saliency_target,
            mode=self.saliency_mode,
        )

    def __repr__(self) -> str:
        return f"SGT(mask_ratio={self.mask_ratio}, reg_weight={self.reg_weight})"


def _check_ratio_and_weight(mask_ratio: float, reg_weight: float) -> None:
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in (0, 1), got {mask_ratio}")
    if reg_weight < 0:
        raise ValueError(f"reg_weight must be >= 0, got {reg_weight}")
