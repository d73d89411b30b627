"""Option fields shared by several methods, declared once so their flags agree."""

from __future__ import annotations

from typing import Any

from methods.options import option
from methods.saliency import SALIENCY_MODES, SALIENCY_TARGETS

TRAINING_ATTACKS = ("pgd", "fgsm_rs")
EPS_SCALE = "L-inf on the [0,1] pixel scale"


def attack_eps() -> Any:
    return option(
        None,
        help="L-inf eps of the training attack on the [0,1] scale (default: the data "
        "set's: 0.1 digits, 0.3 mnist, 8/255 cifar)",
        low=0.0,
        high=1.0,
        note=EPS_SCALE,
    )


def attack_steps() -> Any:
    return option(10, help="PGD steps of the training attack", low=1)


def reg_weight(what: str) -> Any:
    return option(1.0, help=f"weight of the {what}", low=0.0)


def mask_ratio(default: float, what: str) -> Any:
    return option(default, help=what, low=0.0, high=1.0, open_low=True, open_high=True)


def absolute_saliency() -> Any:
    return option(False, help="rank pixels by |gradient| instead of the signed gradient")


def saliency_target() -> Any:
    return option(
        "logit",
        help="output whose input gradient is the saliency: logit, or log_prob (SGT's "
        "MNIST network ends in log_softmax)",
        choices=SALIENCY_TARGETS,
    )


def saliency_mode(default: str, what: str) -> Any:
    return option(default, help=what, choices=SALIENCY_MODES)
