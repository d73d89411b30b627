"""Empirical risk minimization: plain cross-entropy, the clean baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.training.base import StepOutput, TrainingMethod


class ERM(TrainingMethod):
    """Loss = CE(f(x), y)."""

    name = "erm"

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> StepOutput:
        logits = model(images)
        ce = F.cross_entropy(logits, labels)
        return StepOutput(loss=ce, logits=logits, terms={"ce": ce.detach()})
