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

from methods.options import Options

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
    """A training objective. Subclasses set ``name``, declare their hyperparameters as a
    frozen ``Options`` dataclass of ``option`` fields, and implement ``from_options``
    and ``loss``.

    Registering the class (``methods.training.register_method``) is all it takes for
    the CLI to get a validated flag per option, for configs to resolve its defaults,
    and for other methods to refuse its options.
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]] = Options
    #: The method needs a per-image pixel mask with each batch (LGR).
    needs_masks: ClassVar[bool] = False
    #: The method masks by an input saliency it can draw (``saliency``; SGT, ASGT).
    draws_saliency: ClassVar[bool] = False

    @classmethod
    def from_options(cls, options: Options) -> TrainingMethod:
        """Build from resolved options (``attack_eps`` filled in)."""
        return cls()

    @classmethod
    def trains_with_attack(cls) -> bool:
        """Whether the method has a training attack (an ``attack_eps`` option)."""
        return "attack_eps" in cls.Options.field_names()

    def loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> StepOutput:
        """The loss on one batch: ``images`` (N, C, H, W) in [0,1], ``labels`` (N,)."""
        raise NotImplementedError

    def saliency(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor):
        """What the method masks by, (N, H, W), for methods that ``draws_saliency``."""
        raise NotImplementedError(f"{self.name} draws no saliency")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
