"""Adversarial saliency-guided training, ASGT (Guesmi, Aswani, Shafique; arXiv 2405.06278)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks import PGD
from methods.training import _options
from methods.training._divergence import kl_from_logits
from methods.training.base import StepOutput
from methods.training.sgt import SGT, SGTOptions


@dataclass(frozen=True)
class ASGTOptions(SGTOptions):
    """SGT's options (the saliency pass in train mode, as ASGT's code takes it), then
    the training attack's."""

    saliency_mode: str = _options.saliency_mode(
        "train", "model mode of the saliency pass (ASGT's code never leaves train mode)"
    )
    attack_eps: float | None = _options.attack_eps()
    attack_steps: int = _options.attack_steps()


class ASGT(SGT):
    """Loss = CE(f(x), y) + CE(f(x_adv), y) + reg_weight * KL(p(x_adv) || p(x~_adv)).

    x_adv is PGD at ``attack_eps``; x~_adv masks the bottom ``mask_ratio`` of x_adv's
    pixels by saliency for x_adv's *predicted* label (the paper's choice: on an
    adversarial example the true label's gradient says little about what the model
    uses), with noise drawn in each channel's own [min, max] as ASGT's code does.

    Options (``ASGTOptions``): SGT's (its saliency and masking are SGT's code paths,
    ``saliency_of`` and ``masked``), with ``saliency_mode`` defaulting to train mode
    (ASGT's code never switches; BatchNorm's running statistics stay unchanged), and:
        attack_eps: L-inf radius of the training attack on the [0,1] scale.
        attack_steps: PGD steps (step size 2.5 * eps / steps, random start).
    """

    name = "asgt"
    Options = ASGTOptions
    options: ASGTOptions
    noise_per_channel = True

    def __init__(self, options: ASGTOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self.attack = PGD(self.options.attack_eps, steps=self.options.attack_steps)

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> StepOutput:
        adversarial = self.attack(model, images, labels)
        logits = model(images)
        adv_logits = model(adversarial)
        predicted = adv_logits.detach().argmax(1)
        masked = self.masked(adversarial, self.saliency_of(model, adversarial, predicted))
        masked_logits = model(masked)
        ce = F.cross_entropy(logits, labels)
        ce_adv = F.cross_entropy(adv_logits, labels)
        kl = kl_from_logits(adv_logits, masked_logits)
        return StepOutput(
            loss=ce + ce_adv + self.options.reg_weight * kl,
            logits=adv_logits,
            terms={"ce": ce.detach(), "ce_adv": ce_adv.detach(), "kl": kl.detach()},
        )

    def saliency(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
        """Saliency of the adversarial example for its predicted label: (N, H, W)."""
        adversarial = self.attack(model, images, labels)
        with torch.no_grad():
            predicted = model(adversarial).argmax(1)
        return self.saliency_of(model, adversarial, predicted)
