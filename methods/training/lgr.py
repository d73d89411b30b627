"""LIME-guided refinement, LGR (Nayyem, Rakin, Wang; arXiv 2412.18952, 2601.00968): the loss.

The rounds (explain, flag, refine, explain again) are driven by
``orchestrator.run.lgr``; here is one refinement step on images that carry a mask of
flagged (spurious) pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.attacks import FGSM, PGD, Attack
from methods.lime import SPURIOUS_STRATEGIES, samples_option
from methods.lime_sampling import DEFAULT_SAMPLER, SAMPLERS
from methods.options import ConfigError, Options, option
from methods.saliency import mask_with_noise
from methods.training import _options
from methods.training._gradient_penalty import input_gradient_penalty
from methods.training.base import StepOutput, TrainingMethod

#: How the rounds flag superpixels: from LIME weights (one explanation, or the spread
#: of several), from input gradients, or the data set's ground truth. A tuple of them
#: flags the union, each member its own share.
SPURIOUS = (*SPURIOUS_STRATEGIES, "unstable", "gradient", "annotated")
FILLS = ("noise", "mean", "zero")
PENALTY_TARGETS = ("log_prob", "logit_predicted")
PENALTY_REDUCTIONS = ("flagged", "sum", "mean")
REFINE_ATTACKS = ("pgd", "fgsm")


@dataclass(frozen=True)
class LGROptions(Options):
    """The refinement loss's options, then those of the rounds around it
    (``orchestrator.run.lgr``: explain, flag, refine)."""

    attack_eps: float | None = _options.attack_eps()
    attack_steps: int = _options.attack_steps()
    refine_attack: str = option(
        "pgd",
        help="attack of the adversarial term: pgd (random start, --attack-steps) or fgsm "
        "(one step of eps, no random start; Adversarial_XAI's augmentation)",
        choices=REFINE_ATTACKS,
    )
    reg_weight: float = _options.reg_weight("input-gradient penalty on flagged pixels")
    penalty_target: str = option(
        "log_prob",
        help="output whose input gradient is penalized: log_prob (log p of the true "
        "label) or logit_predicted (the predicted class's logit, as Adversarial_XAI)",
        choices=PENALTY_TARGETS,
    )
    penalty_reduction: str = option(
        "flagged",
        help="flagged (the squared gradient averaged over the batch's flagged pixels: one "
        "scale whatever the image size or share flagged), sum (summed per image, averaged "
        "over the batch: the papers' squared norm; it can collapse a refinement, "
        "docs/methods.md) or mean (averaged over every element, as Adversarial_XAI)",
        choices=PENALTY_REDUCTIONS,
    )
    feature_masking: bool = option(
        True, help="replace flagged pixels (see --fill) before the forward pass"
    )
    fill: str = option(
        "zero",
        help="what replaces flagged pixels: zero (the background of digits and MNIST), "
        "noise (uniform in the image's range: the papers'; where the flags follow the label "
        "the noise's position codes it, docs/shortcut.md) or mean (the image's per-channel "
        "mean)",
        choices=FILLS,
    )
    mask_ratio: float = _options.mask_ratio(
        0.2, "fraction of superpixels flagged per image by each --spurious strategy"
    )
    rounds: int = option(2, help="explain-flag-refine rounds", low=1)
    spurious: tuple[str, ...] = option(
        ("low_relevance",),
        help="which superpixels to flag, one strategy or a union (a,b): low_relevance "
        "(bottom-k LIME weights), high_relevance (top-k), irrelevant (bottom-k |weight|), "
        "unstable (top-k spread of the weight across --reexplanations), gradient (top-k "
        "mean |input gradient|), annotated (the data set's ground-truth masks; "
        "digits_shortcut)",
        choices=SPURIOUS,
        metavar="S[,S...]",
    )
    reexplanations: int = option(
        3, help="unstable: LIME explanations of each image, each with its own seed", low=2
    )
    irrelevant_threshold: float | None = option(
        None,
        help="irrelevant: flag every superpixel with |weight| below this instead of the "
        "bottom --mask-ratio",
        low=0.0,
    )
    global_mask_share: float | None = option(
        None,
        help="flag one global mask instead: the pixels flagged in more than this share of "
        "the explained images, applied to every image",
        low=0.0,
        high=1.0,
        open_high=True,
    )
    explain_label: str = option(
        "true",
        help="class LIME explains: true (the label) or predicted (the model's class)",
        choices=("true", "predicted"),
    )
    explain_fraction: float = option(
        1.0,
        help="share of the training set explained each round",
        low=0.0,
        high=1.0,
        open_low=True,
    )
    lime_samples: int = samples_option(1000, "LIME perturbations per image")
    lime_sampler: str = option(
        DEFAULT_SAMPLER,
        help="how LIME draws its masks: orthogonal (about half the samples for the same "
        "explanation, docs/explain.md), paired, stratified, iid (as the lime package)",
        choices=SAMPLERS,
    )
    start_checkpoint: str | None = option(
        None, help="checkpoint to refine (default: pretrain with ERM first)", metavar="PATH"
    )
    pretrain_epochs: int | None = option(
        None,
        help="ERM epochs before the rounds when no --start-checkpoint (default: --epochs)",
        low=1,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.spurious:
            raise ConfigError("spurious", f"name at least one; valid: {', '.join(SPURIOUS)}")

    def resolved(self, *, default_eps: float, epochs: int) -> LGROptions:
        options = super().resolved(default_eps=default_eps, epochs=epochs)
        if self.start_checkpoint is None and self.pretrain_epochs is None:
            options = replace(options, pretrain_epochs=epochs)
        return options  # type: ignore[return-value]

    @property
    def uses_lime(self) -> bool:
        return any(strategy != "annotated" for strategy in self.spurious)


def masked_gradient_penalty(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    *,
    target: str = "log_prob",
    reduction: str = "sum",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, the squared input gradient on the masked pixels).

    ``target``: ``log_prob`` differentiates log p_y(x) of the true label,
    ``logit_predicted`` the logit of the predicted class. ``reduction``: ``sum`` sums
    per image and averages over the batch, ``flagged`` averages over the masked
    elements of the batch (every channel of a masked pixel; 0 when none is masked),
    ``mean`` averages over every element. (LGR's option defaults to ``flagged``: the
    ``sum`` grows with the number of flagged pixels, and on a trained model its
    parameter gradient was 10-60 times the cross-entropy's, which collapsed refinements;
    docs/methods.md.)
    The graph is kept (``create_graph``), so the penalty trains the parameters
    (double back-propagation, Ross & Doshi-Velez 2018's "right for the right reasons").
    """

    def chosen(logits: torch.Tensor) -> torch.Tensor:
        if target == "log_prob":
            return F.log_softmax(logits, dim=1).gather(1, labels.view(-1, 1)).sum()
        return logits.gather(1, logits.detach().argmax(1, keepdim=True)).sum()

    return input_gradient_penalty(model, images, masks, chosen, reduction)


def fill_masked(images: torch.Tensor, masks: torch.Tensor, fill: str) -> torch.Tensor:
    """``images`` with the pixels of ``masks`` ((N, 1, H, W), every channel) replaced."""
    if fill == "noise":
        return mask_with_noise(images, masks)
    value = images.mean(dim=(2, 3), keepdim=True) if fill == "mean" else torch.zeros(())
    return torch.where(masks.bool(), value.to(images), images)


class LGR(TrainingMethod):
    """Loss = CE(f(x'), y) + reg_weight * P + CE(f(x_adv'), y), P = the squared input
    gradient (d log p_y(x') / dx')^2 on the flagged pixels, averaged over them.

    x' is x with its flagged pixels (mask m, (N, 1, H, W)) replaced (feature masking;
    ``fill``: zero by default); x_adv' is PGD (or FGSM) on x' at ``attack_eps``
    (adversarial training; left out when ``attack_eps`` is 0). ``penalty_reduction``
    ``sum`` makes P the papers' squared norm per image instead.

    Options (``LGROptions``; the loss reads the first eight, the rounds of
    ``orchestrator.run.lgr`` the rest):
        attack_eps: L-inf radius of the training attack on the [0,1] scale.
        attack_steps: PGD steps.
        refine_attack: ``"pgd"`` or ``"fgsm"`` (one step of eps, no random start).
        reg_weight: weight of the input-gradient penalty on flagged pixels, >= 0.
        penalty_target, penalty_reduction, fill: the choices of ``LGROptions``
            (target: the papers'; reduction and fill: chosen by measurement,
            docs/methods.md; the papers' and Adversarial_XAI's are the alternatives).
        feature_masking: replace flagged pixels before the forward pass.
    """

    name = "lgr"
    Options = LGROptions
    options: LGROptions
    needs_masks = True

    def __init__(self, options: LGROptions | None = None, /, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        eps = self.options.attack_eps
        self.attack: Attack | None = None
        if eps > 0:
            if self.options.refine_attack == "pgd":
                self.attack = PGD(eps, steps=self.options.attack_steps)
            else:  # "fgsm", the only other choice
                self.attack = FGSM(eps)

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> StepOutput:
        if masks is None:
            raise ValueError("LGR needs a mask of flagged pixels with every batch")
        options = self.options
        refined = fill_masked(images, masks, options.fill) if options.feature_masking else images
        logits, penalty = masked_gradient_penalty(
            model,
            refined,
            labels,
            masks,
            target=options.penalty_target,
            reduction=options.penalty_reduction,
        )
        ce = F.cross_entropy(logits, labels)
        loss = ce + options.reg_weight * penalty
        terms = {"ce": ce.detach(), "grad_penalty": penalty.detach()}
        if self.attack is not None:
            adversarial = self.attack(model, refined, labels)
            ce_adv = F.cross_entropy(model(adversarial), labels)
            loss = loss + ce_adv
            terms["ce_adv"] = ce_adv.detach()
        return StepOutput(loss=loss, logits=logits, terms=terms)
