"""LIME-guided refinement, LGR (Nayyem, Rakin, Wang; arXiv 2412.18952, 2601.00968): the loss.

The rounds (explain, flag, refine, explain again) are driven by
``orchestrator.lgr``; here is one refinement step on images that carry a mask of
flagged (spurious) pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks import PGD
from methods.lime import SPURIOUS_STRATEGIES
from methods.options import Options, option
from methods.saliency import mask_with_noise
from methods.training import _options
from methods.training.base import StepOutput, TrainingMethod

#: How the rounds flag superpixels: the LIME strategies, or the data set's ground truth.
SPURIOUS = (*SPURIOUS_STRATEGIES, "annotated")


@dataclass(frozen=True)
class LGROptions(Options):
    """The refinement loss's options, then those of the rounds around it
    (``orchestrator.lgr``: explain, flag, refine)."""

    attack_eps: float | None = _options.attack_eps()
    attack_steps: int = _options.attack_steps()
    reg_weight: float = _options.reg_weight("input-gradient penalty on flagged pixels")
    feature_masking: bool = option(
        True, help="replace flagged pixels with noise before the forward pass"
    )
    mask_ratio: float = _options.mask_ratio(0.2, "fraction of superpixels flagged per image")
    rounds: int = option(2, help="explain-flag-refine rounds", low=1)
    spurious: str = option(
        "low_relevance",
        help="which superpixels to flag: low_relevance (bottom-k LIME weights), "
        "high_relevance (top-k), annotated (the data set's ground-truth masks; "
        "digits_shortcut)",
        choices=SPURIOUS,
    )
    explain_fraction: float = option(
        1.0,
        help="share of the training set explained each round",
        low=0.0,
        high=1.0,
        open_low=True,
    )
    lime_samples: int = option(1000, help="LIME perturbations per image", low=2)
    start_checkpoint: str | None = option(
        None, help="checkpoint to refine (default: pretrain with ERM first)", metavar="PATH"
    )
    pretrain_epochs: int | None = option(
        None,
        help="ERM epochs before the rounds when no --start-checkpoint (default: --epochs)",
        low=1,
    )

    def resolved(self, *, default_eps: float, epochs: int) -> LGROptions:
        options = super().resolved(default_eps=default_eps, epochs=epochs)
        if self.start_checkpoint is None and self.pretrain_epochs is None:
            options = replace(options, pretrain_epochs=epochs)
        return options  # type: ignore[return-value]


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
    Options = LGROptions
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
    def from_options(cls, options: LGROptions) -> LGR:  # type: ignore[override]
        return cls(
            options.attack_eps,
            options.reg_weight,
            steps=options.attack_steps,
            feature_masking=options.feature_masking,
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
