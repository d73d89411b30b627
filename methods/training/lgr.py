"""LIME-guided refinement, LGR (Nayyem, Rakin, Wang; arXiv 2412.18952, 2601.00968): the loss.

The rounds (explain, flag, refine, explain again) are driven by
``orchestrator.lgr``; here is one refinement step on images that carry a mask of
flagged (spurious) pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks import PGD
from methods.saliency import mask_with_noise
from methods.training.base import StepOutput, TrainingMethod


def masked_gradient_penalty(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, ||d log p_y(x) / dx * m||^2 summed per image, averaged over the batch).

    The graph is kept (``create_graph``), so the penalty trains the parameters
    (double back-propagation, Ross & Doshi-Velez 2018's "right for the right reasons").
    """
    x = images.detach().requires_grad_(True)
    logits = model(x)
    log_p = F.log_softmax(logits, dim=1).gather(1, labels.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(log_p, x, create_graph=True)
    penalty = (grad * masks).pow(2).sum(dim=(1, 2, 3)).mean()
    return logits, penalty


class LGR(TrainingMethod):
    """Loss = CE(f(x'), y) + reg_weight * ||(d log p_y(x') / dx') * m||^2 + CE(f(x_adv'), y).

    x' is x with its flagged pixels (mask m, (N, 1, H, W)) replaced by uniform noise in
    the image's range (feature masking); x_adv' is PGD on x' at ``eps`` (adversarial
    training; left out when ``eps`` is 0).

    Args:
        eps: L-inf radius of the training attack on the [0,1] scale.
        reg_weight: weight of the input-gradient penalty on flagged pixels, >= 0.
        steps: PGD steps.
        feature_masking: replace flagged pixels with noise before the forward pass.
    """

    name = "lgr"
    needs_masks = True

    def __init__(
        self,
        eps: float,
        reg_weight: float = 1.0,
        *,
        steps: int = 10,
        feature_masking: bool = True,
    ) -> None:
        if reg_weight < 0:
            raise ValueError(f"reg_weight must be >= 0, got {reg_weight}")
        self.attack = PGD(eps, steps=steps) if eps > 0 else None
        self.reg_weight = reg_weight
        self.feature_masking = feature_masking

    @classmethod
    def from_options(  # type: ignore[override]
        cls,
        *,
        attack_eps: float,
        reg_weight: float | None = None,
        attack_steps: int = 10,
        feature_masking: bool = True,
        **_: object,
    ) -> LGR:
        return cls(
            attack_eps,
            1.0 if reg_weight is None else reg_weight,
            steps=attack_steps,
            feature_masking=feature_masking,
        )

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> StepOutput:
        if masks is None:
            raise ValueError("LGR needs a mask of flagged pixels with every batch")
        refined = mask_with_noise(images, masks) if self.feature_masking else images
        logits, penalty = masked_gradient_penalty(model, refined, labels, masks)
        ce = F.cross_entropy(logits, labels)
        loss = ce + self.reg_weight * penalty
        terms = {"ce": ce.detach(), "grad_penalty": penalty.detach()}
        if self.attack is not None:
            adversarial = self.attack(model, refined, labels)
            ce_adv = F.cross_entropy(model(adversarial), labels)
            loss = loss + ce_adv
            terms["ce_adv"] = ce_adv.detach()
        return StepOutput(loss=loss, logits=logits, terms=terms)

    def __repr__(self) -> str:
        return f"LGR({self.attack!r}, reg_weight={self.reg_weight})"
