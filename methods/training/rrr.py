"""Right for the Right Reasons, RRR (Ross, Hughes, Doshi-Velez; IJCAI 2017,
"Right for the Right Reasons: Training Differentiable Models by Constraining their
Explanations", arXiv 1703.03717; released code github.com/dtak/rrr).

The paper's loss over a batch of N images with annotation masks A (1 on the pixels an
expert marks as a wrong reason):

    sum_n CE(f(x_n), y_n) + lambda_1 sum_n sum_d (A_nd d/dx_nd sum_k log p_k(x_n))^2
                          + lambda_2 sum_i theta_i^2

The input gradient is that of the log-probabilities summed over the classes k (the
release's ``input_gradients(scale='log', y='sum')``), not of the true label's. Here
both sums over the batch are means (the loss divided by N: ``--lr`` means what it
means for the other methods) and lambda_2 is the run's ``--weight-decay``;
docs/methods.md lists each choice against the release.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.options import Options, option
from methods.training import _options
from methods.training._gradient_penalty import input_gradient_penalty
from methods.training.base import StepOutput, TrainingMethod

__all__ = ["RRR", "RRROptions", "annotation_gradient_penalty"]


@dataclass(frozen=True)
class RRROptions(Options):
    """The penalty's weight, and the weights training starts from (read by the run path)."""

    reg_weight: float = _options.reg_weight(
        "squared input gradient of the summed log-probabilities on the annotated pixels "
        "(the paper's lambda_1, on [0,1] inputs)"
    )
    start_checkpoint: str | None = option(
        None, help="checkpoint to start from (default: train from scratch)", metavar="PATH"
    )


def annotation_gradient_penalty(
    model: nn.Module, images: torch.Tensor, masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, mean over the images of sum over the masked pixels and the channels of
    (d sum_k log p_k(x) / dx)^2).

    ``masks`` (N, 1, H, W), 1 on annotated pixels, applies to every channel. The graph
    is kept (``create_graph``), so the penalty trains the parameters (double
    back-propagation).
    """

    def summed_log_probs(logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits, dim=1).sum()

    return input_gradient_penalty(model, images, masks, summed_log_probs, "sum")


class RRR(TrainingMethod):
    """Loss = CE(f(x), y) + reg_weight * ||(d sum_k log p_k(x) / dx) * A||^2 per image,
    both averaged over the batch; A is the data set's annotation mask (``needs_masks``:
    the run path gives the training split's, ``methods.data.ANNOTATED_DATASETS``).

    Options (``RRROptions``):
        reg_weight: the paper's lambda_1 on [0,1] inputs, >= 0 (default 1: at 10 the
            default SGD at lr 0.05 diverged on digits_shortcut; Adam at 1e-3 trains
            it, docs/methods.md). The release's Decoy MNIST setting, 1000 on 0..255
            pixels, is 1000 / 255^2 ~ 0.015 here.
        start_checkpoint: weights to start from (read by the run path, not the loss);
            None trains from scratch.
    """

    name = "rrr"
    Options = RRROptions
    options: RRROptions
    needs_masks = True
    annotation_masks = True

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> StepOutput:
        if masks is None:
            raise ValueError("RRR needs the annotation mask of every image with each batch")
        logits, penalty = annotation_gradient_penalty(model, images, masks)
        ce = F.cross_entropy(logits, labels)
        return StepOutput(
            loss=ce + self.options.reg_weight * penalty,
            logits=logits,
            terms={"ce": ce.detach(), "grad_penalty": penalty.detach()},
        )
