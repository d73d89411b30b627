"""Adversarial training: PGD-AT (Madry et al. 2018) and FGSM-RS "fast AT" (Wong et al. 2020)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks import FGSM, PGD
from methods.options import Options, option
from methods.training import _options
from methods.training.base import StepOutput, TrainingMethod


@dataclass(frozen=True)
class AdversarialOptions(Options):
    attack_eps: float | None = _options.attack_eps()
    training_attack: str = option(
        "pgd",
        help="pgd (random start, 2.5 eps / steps a step) or fgsm_rs (fast AT)",
        choices=_options.TRAINING_ATTACKS,
    )
    attack_steps: int = _options.attack_steps()


class AdversarialTraining(TrainingMethod):
    """Loss = CE(f(x_adv), y), x_adv from the training attack at ``attack_eps``.

    Options (``AdversarialOptions``):
        attack_eps: L-inf radius on the [0,1] scale.
        training_attack: ``"pgd"`` (PGD with random start, ``attack_steps`` steps of
            2.5 * eps / steps) or ``"fgsm_rs"`` (one step of 1.25 * eps from a random
            start).
        attack_steps: PGD steps (ignored for ``fgsm_rs``).
    """

    name = "adversarial"
    Options = AdversarialOptions
    options: AdversarialOptions

    def __init__(self, options: AdversarialOptions | None = None, /, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        eps = self.options.attack_eps
        if self.options.training_attack == "pgd":
            self.attack: PGD = PGD(eps, steps=self.options.attack_steps)
        else:  # "fgsm_rs", the only other choice
            self.attack = FGSM(eps, random_start=True)

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> StepOutput:
        adversarial = self.attack(model, images, labels)
        logits = model(adversarial)
        ce = F.cross_entropy(logits, labels)
        return StepOutput(loss=ce, logits=logits, terms={"ce_adv": ce.detach()})
