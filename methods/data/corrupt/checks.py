"""Validation of CIFAR-10-C corruption names and severities (the CLI's flags, the
generator's arguments)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from methods.data.cifar10c import CIFAR10C_CORRUPTIONS, SEVERITIES


def check_corruptions(names: Iterable[str]) -> tuple[str, ...]:
    """The names, in CIFAR-10-C's order, or ValueError naming a bad one and the valid ones."""
    names = tuple(names)
    for name in names:
        if name not in CIFAR10C_CORRUPTIONS:
            raise ValueError(
                f"unknown corruption {name!r}; valid: {', '.join(CIFAR10C_CORRUPTIONS)}"
            )
    if not names:
        raise ValueError(f"name at least one corruption; valid: {', '.join(CIFAR10C_CORRUPTIONS)}")
    return tuple(c for c in CIFAR10C_CORRUPTIONS if c in names)


def check_severities(values: Iterable[int]) -> tuple[int, ...]:
    """The severities, sorted and unique, or ValueError unless each is one of 1..5."""
    values = tuple(values)
    for s in values:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s not in SEVERITIES:
            raise ValueError(f"severity must be one of 1, 2, 3, 4, 5, got {s!r}")
    if not values:
        raise ValueError("name at least one severity of 1, 2, 3, 4, 5")
    return tuple(sorted({int(s) for s in values}))
