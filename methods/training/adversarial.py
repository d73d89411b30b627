"""Adversarial training: PGD-AT (Madry et al. 2018) and FGSM-RS "fast AT" (Wong et al. 2020)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks import FGSM, PGD
from methods.options import Options, option
from methods.training import _options
from methods.training.base import StepOutput, TrainingMethod

TrainingAttack = Literal["pgd", "fgsm_rs"]


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
    """Loss = CE(f(x_adv), y), x_adv from the training attack at ``eps``.

    Args:
        eps: L-inf radius on the [0,1] scale.
        attack: ``"pgd"`` (PGD with random start, ``steps`` steps of 2.5 * eps / steps)
            or ``"fgsm_rs"`` (one step of 1.25 * eps from a random start).
        steps: PGD steps (ignored for ``fgsm_rs``).
    """

    name = "adversarial"
    Options = AdversarialOptions

    def __init__(self, eps: float, *, attack: TrainingAttack = "pgd", steps: int = 10) -> None:
        if attack == "pgd":
            self.attack: PGD = PGD(eps, steps=steps)
        elif attack == "fgsm_rs":
            self.attack = FGSM(eps, random_start=True)
        else:
            raise ValueError(f"unknown training attack {attack!r}; valid: pgd, fgsm_rs")

    @classmethod
    def from_options(cls, options: AdversarialOptions) -> AdversarialTraining:  # type: ignore[override]
        return cls(options.attack_eps, attack=options.training_attack, steps=options.attack_steps)

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

    def __repr__(self) -> str:
        return f"AdversarialTraining({self.attack!r})"
