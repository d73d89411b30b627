"""L-inf evasion attacks on images in [0,1]: FGSM, PGD, APGD-CE, APGD-T and Square.

One attack per module behind the small base class in ``base`` (the contract: inputs
and outputs in [0,1], ``eps`` on that scale, model mode restored per submodule,
``attack(model, images, labels, *, generator=None)``); the names are re-exported
flat. ``ATTACKS`` maps registry names to constructors, ``build_attack`` builds one by
name. docs/attacks.md gives each attack's source, defaults and deviations.
"""

from __future__ import annotations

from collections.abc import Callable

from methods.attacks.apgd import APGD, APGDT
from methods.attacks.base import Attack, ModelMode, model_mode, unwrap
from methods.attacks.pgd import FGSM, PGD
from methods.attacks.square import Square

__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "FGSM",
    "PGD",
    "Attack",
    "ModelMode",
    "Square",
    "build_attack",
    "model_mode",
    "unwrap",
]

# Name -> constructor taking (eps, **options); "apgd-ce", "apgd-t" and "square" are
# AutoAttack's names (APGD(eps, loss="dlr") is its APGD-DLR, kept out of the registry).
ATTACKS: dict[str, Callable[..., Attack]] = {
    "fgsm": FGSM,
    "pgd": PGD,
    "apgd-ce": APGD,
    "apgd-t": APGDT,
    "square": Square,
}


def build_attack(name: str, eps: float, **options: object) -> Attack:
    """An attack by registry name; unknown names raise ``ValueError`` listing the valid ones."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    return ATTACKS[name](eps, **options)
