"""Slicing N examples into batches, shared by the evaluation loops."""

from __future__ import annotations

__all__ = ["batches"]


def batches(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``0 .. n - 1``."""
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
