"""The base class of a training method: a method is its loss.

The loop owns data, optimizer, schedule, logging and checkpoints; a method only
turns a batch into a scalar loss. SGT, ASGT and LGR plug in here without touching
the loop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from methods.options import ConfigError, Options

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
    """A training objective that holds its options.

    Subclasses set ``name``, declare their hyperparameters once as a frozen ``Options``
    dataclass of ``option`` fields, and implement ``loss``, reading them from
    ``self.options``. A method is built from an options record or from keywords named
    like its fields (the defaults and ranges are the fields'):

        SGT()                                  # every default
        SGT(mask_ratio=0.3)                    # SGTOptions(mask_ratio=0.3)
        SGT(SGTOptions(mask_ratio=0.3))        # the same record
        SGT.from_options(options)              # the same, for the orchestrator

    Anything derived from the options (an attack object) is built in ``__init__``
    after ``super().__init__``; no subclass restates a default, a range check, or
    ``from_options``.

    Registering the class (``methods.training.register_method``) is all it takes for
    the CLI to get a validated flag per option, for configs to resolve its defaults,
    and for other methods to refuse its options.
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]] = Options
    #: The method needs a per-image pixel mask with each batch (LGR, RRR).
    needs_masks: ClassVar[bool] = False
    #: Its masks are the data set's ground-truth annotations (RRR): the run path hands
    #: over the training split's and refuses a data set without them. A ``needs_masks``
    #: method without it makes its own masks (LGR's rounds: explain, flag, refine).
    annotation_masks: ClassVar[bool] = False
    #: The method masks by an input saliency it can draw (``saliency``; SGT, ASGT).
    draws_saliency: ClassVar[bool] = False

    options: Options

    def __init__(self, options: Options | None = None, /, **overrides: Any) -> None:
        """``options`` (this class's ``Options``; default: all defaults), with
        ``overrides`` replacing fields by name. The record is validated when built
        (``Options.__post_init__``: ranges and choices of the ``option`` fields).

        Raises:
            ConfigError: another record type, an unknown or invalid field, or a
                training attack without its eps (``attack_eps`` None: resolve it first).
        """
        cls = type(self)
        if options is None:
            options = cls.Options()
        elif type(options) is not cls.Options:
            raise ConfigError(
                "options",
                f"{cls.__name__} takes {cls.Options.__name__} or keyword options, "
                f"got {type(options).__name__} {options!r}",
            )
        if overrides:
            known = cls.Options.field_names()
            for key in overrides:
                if key not in known:
                    raise ConfigError(
                        key,
                        f"not an option of {cls.name}; its options: {', '.join(known) or 'none'}",
                    )
            options = dataclasses.replace(options, **overrides)
        if cls.trains_with_attack() and getattr(options, "attack_eps", None) is None:
            raise ConfigError("attack_eps", f"{cls.name} needs the eps of its training attack")
        self.options = options

    @classmethod
    def from_options(cls, options: Options) -> TrainingMethod:
        """Build from resolved options (``attack_eps`` filled in): ``cls(options)``.
        Generic: subclasses build everything in ``__init__`` and do not override it."""
        return cls(options)

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
        values = ", ".join(
            f"{f.name}={getattr(self.options, f.name)!r}" for f in dataclasses.fields(self.options)
        )
        return f"{type(self).__name__}({values})"
