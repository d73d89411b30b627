"""Adversarial saliency-guided training, ASGT (Guesmi, Aswani, Shafique; arXiv 2405.06278)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks import PGD
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
from methods.training.sgt import SGTOptions, _check_ratio_and_weight


@dataclass(frozen=True)
class ASGTOptions(SGTOptions):
    """SGT's options (the saliency pass in train mode, as ASGT's code takes it), then
    the training attack's."""

    saliency_mode: str = _options.saliency_mode(
        "train", "model mode of the saliency pass (ASGT's code never leaves train mode)"
    )
    attack_eps: float | None = _options.attack_eps()
    attack_steps: int = _options.attack_steps()


class ASGT(TrainingMethod):
    """Loss = CE(f(x), y) + CE(f(x_adv), y) + reg_weight * KL(p(x_adv) || p(x~_adv)).

    x_adv is PGD at ``eps``; x~_adv masks the bottom ``mask_ratio`` of x_adv's pixels
    by saliency for x_adv's *predicted* label (the paper's choice: on an adversarial
    example the true label's gradient says little about what the model uses), with
    noise drawn in each channel's own [min, max] as ASGT's code does.

    Args:
        eps: L-inf radius of the training attack on the [0,1] scale.
        mask_ratio: fraction of pixels masked, in (0, 1).
        reg_weight: weight of the KL term, >= 0.
        steps: PGD steps (step size 2.5 * eps / steps, random start).
        saliency_target: ``"logit"`` or ``"log_prob"``.
        saliency_mode: model mode of the saliency pass; ASGT's code never switches,
            so it is train mode there (BatchNorm's running statistics stay unchanged).
    """

    name = "asgt"
    Options = ASGTOptions
    draws_saliency = True

    def __init__(
        self,
        eps: float,
        mask_ratio: float = 0.5,
        reg_weight: float = 1.0,
        *,
        steps: int = 10,
        absolute_saliency: bool = False,
        saliency_target: SaliencyTarget = "logit",
        saliency_mode: SaliencyMode = "train",
    ) -> None:
        _check_ratio_and_weight(mask_ratio, reg_weight)
        self.attack = PGD(eps, steps=steps)
        self.mask_ratio = mask_ratio
        self.reg_weight = reg_weight
        self.absolute_saliency = absolute_saliency
        self.saliency_target = saliency_target
        self.saliency_mode = saliency_mode

    @classmethod
    def from_options(cls, options: ASGTOptions) -> ASGT:  # type: ignore[override]
        return cls(
            options.attack_eps,
            options.mask_ratio,
            options.reg_weight,
            steps=options.attack_steps,
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
        adversarial = self.attack(model, images, labels)
        logits = model(images)
        adv_logits = model(adversarial)
        predicted = adv_logits.detach().argmax(1)
        saliency = self._saliency_of(model, adversarial, predicted)
        masked = mask_with_noise(
            adversarial, bottom_k_mask(saliency, self.mask_ratio), per_channel=True
        )
        masked_logits = model(masked)
        ce = F.cross_entropy(logits, labels)
        ce_adv = F.cross_entropy(adv_logits, labels)
        kl = kl_from_logits(adv_logits, masked_logits)
        return StepOutput(
            loss=ce + ce_adv + self.reg_weight * kl,
            logits=adv_logits,
            terms={"ce": ce.detach(), "ce_adv": ce_adv.detach(), "kl": kl.detach()},
        )

    def saliency(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
        """Saliency of the adversarial example for its predicted label: (N, H, W)."""
        adversarial = self.attack(model, images, labels)
        with torch.no_grad():
            predicted = model(adversarial).argmax(1)
        return self._saliency_of(model, adversarial, predicted)

    def _saliency_of(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor):
        return input_saliency(
            model,
            inputs,
            targets,
            absolute=self.absolute_saliency,
            target=self.saliency_target,
            mode=self.saliency_mode,
        )

    def __repr__(self) -> str:
        return f"ASGT({self.attack!r}, mask_ratio={self.mask_ratio}, reg_weight={self.reg_weight})"
