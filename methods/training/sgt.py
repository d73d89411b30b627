"""Saliency-guided training, SGT (Ismail, Corrada Bravo, Feizi; NeurIPS 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from methods.options import Options
from methods.saliency import bottom_k_mask, input_saliency, mask_with_noise
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

    Options (``SGTOptions``):
        mask_ratio: fraction of pixels masked, in (0, 1); the paper's MNIST setting is 0.5.
        reg_weight: weight of the KL term (the paper's lambda), >= 0.
        absolute_saliency: rank pixels by |gradient| instead of the signed gradient.
        saliency_target: ``"logit"`` or ``"log_prob"`` (the released MNIST network
            ends in log_softmax, so its saliency is d log p_y / dx).
        saliency_mode: model mode of the saliency pass; the released code switches to
            eval mode for it and back to train mode after.

    ASGT subclasses this class: its saliency and masking go through ``saliency_of``
    and ``masked``, which read these options, so an option added here reaches it.
    """

    name = "sgt"
    Options = SGTOptions
    options: SGTOptions
    draws_saliency = True
    #: Noise in each channel's own [min, max] (ASGT's code) instead of the image's.
    noise_per_channel: ClassVar[bool] = False

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> StepOutput:
        masked = self.masked(images, self.saliency(model, images, labels))
        logits = model(images)
        masked_logits = model(masked)
        ce = F.cross_entropy(logits, labels)
        kl = kl_from_logits(logits, masked_logits)
        return StepOutput(
            loss=ce + self.options.reg_weight * kl,
            logits=logits,
            terms={"ce": ce.detach(), "kl": kl.detach()},
        )

    def saliency(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
        """What the method masks by (also drawn in TensorBoard): (N, H, W)."""
        return self.saliency_of(model, images, labels)

    def saliency_of(
        self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """The saliency of ``inputs`` for ``targets`` as the options define it: (N, H, W)."""
        return input_saliency(
            model,
            inputs,
            targets,
            absolute=self.options.absolute_saliency,
            target=self.options.saliency_target,  # type: ignore[arg-type]
            mode=self.options.saliency_mode,  # type: ignore[arg-type]
        )

    def masked(self, images: torch.Tensor, saliency: torch.Tensor) -> torch.Tensor:
        """``images`` with the bottom ``mask_ratio`` of pixels by ``saliency`` replaced
        by uniform noise (``noise_per_channel``: in each channel's range)."""
        mask = bottom_k_mask(saliency, self.options.mask_ratio)
        return mask_with_noise(images, mask, per_channel=self.noise_per_channel)
