"""The base class of a training method: a method is its loss.

The loop owns data, optimizer, schedule, logging and checkpoints; a method only
turns a batch into a scalar loss. SGT, ASGT and LGR plug in here without touching
the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

__all__ = ["StepOutput", "TrainingMethod"]


@dataclass
class StepOutput:
    """What one training step produced.

    Attributes:
        loss: the scalar to back-propagate.
        logits: logits of the inputs the loss trains on (clean for ERM, adversarial
            for AT), used for the running training accuracy.
        terms: detached scalar parts of the loss, logged by name (e.g. ``ce``, ``kl``).
    """

    loss: torch.Tensor
    logits: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class TrainingMethod:
    """A training objective. Subclasses set ``name`` and implement ``loss``."""

    name: ClassVar[str]
    #: True when the method needs a per-image pixel mask with each batch (LGR).
    needs_masks: ClassVar[bool] = False

    @classmethod
    def from_options(cls, **options: object) -> TrainingMethod:
        """Build from a run's flat options, ignoring those this method does not use
        (``mask_ratio`` means nothing to ERM), so one config serves every method."""
        return cls()

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> StepOutput:
        """The loss on one batch: ``images`` (N, C, H, W) in [0,1], ``labels`` (N,)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
