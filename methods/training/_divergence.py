"""Helpers shared by the saliency-guided losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) between the softmax distributions of two logit batches, averaged over
    the batch (SGT's ``kl_div(log_softmax(masked), softmax(clean), 'batchmean')``)."""
    return F.kl_div(
        F.log_softmax(q_logits, dim=1),
        F.log_softmax(p_logits, dim=1),
        log_target=True,
        reduction="batchmean",
    )
