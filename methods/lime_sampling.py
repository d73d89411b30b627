"""Mask samplers for LIME that keep LIME's estimand but spend fewer forward passes.

LIME's surrogate (``methods.lime.fit_surrogate``) is a kernel-weighted ridge regression on
binary superpixel masks drawn i.i.d. uniform (each superpixel kept with probability 1/2),
row 0 being the all-ones mask. Its estimand is the population problem

    minimize  w(1) (f(1) - a - b.1)^2 + (n - 1) E_uniform[w(z) (f(z) - a - b.z)^2] + |b|^2

with ``w`` the cosine kernel (width 0.25) and the ridge penalty alpha = 1. Every sampler
here draws rows 1..n-1 so that their weighted sums are unbiased for that expectation;
they differ only in how the rows depend on each other, which is where the variance is:

- ``iid``: ``iid_masks``, bit for bit (the ``lime`` package's design).
- ``paired``: each uniform mask followed by its complement (Covert & Lee, AISTATS 2021;
  shap's KernelExplainer). A complement of a uniform mask is uniform, so every row is
  still uniform; the pair, not the row, is the independent unit. Even-order parts of
  the model's response cancel within a pair when the weights of the two rows agree;
  LIME's kernel weights k and S-k kept segments differently, so they cancel only partly.
- ``stratified``: the number of kept segments k is stratified (Rashid et al., AAAI 2024,
  for LIME on images). Strata are drawn with probability ``q_k`` proportional to
  ``binom(S, k) 2^-S w(k)`` (the kernel's share of each stratum, the allocation that
  equalizes the rows' effective weights) along a golden-ratio sequence with a random
  start, so every prefix holds each stratum's expected count to within a row or two;
  within a stratum the kept set is a uniform k-subset. Each row carries the
  Horvitz-Thompson correction ``p_k / q_k`` (``p_k`` the binomial probability of the
  stratum), multiplied into its kernel weight: that makes the weighted sums unbiased for
  the i.i.d. ones at every n, and the corrections average 1, so the ridge penalty keeps
  its relative strength.
- ``orthogonal``: randomized Hadamard designs with their foldovers. A Hadamard matrix of
  order N > S (Sylvester, N a power of 2, or Paley, N = q + 1 with q a prime = 3 mod 4:
  20 runs for 16 segments, 60 for 49) gives N - 1 balanced, pairwise orthogonal 0/1
  columns; each design takes a random S of them in random order, XORs every row with a
  random 0/1 vector (so each row is marginally uniform) and appends its complement (the
  foldover: main effects become orthogonal to two-factor interactions). Designs repeat
  while 2N rows fit, then one unfolded design if N rows fit, and the rest are i.i.d.
  (the ``iid`` stream's rows, so the two samplers share random numbers).

Every sampler keeps row 0 as the all-ones mask and draws everything from one generator
seeded by ``(seed, index)`` exactly as ``iid_masks`` does, so an image's
masks do not depend on batching. ``iid`` and ``paired`` masks at n samples are the first
n rows of those at any larger n (the pitfall of comparing against a reference drawn with
the same seed: its first rows are the run's own rows), and so are ``stratified``'s.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
import torch

from methods.options import ConfigError

__all__ = [
    "DEFAULT_SAMPLER",
    "SAMPLERS",
    "generator_seed",
    "iid_masks",
    "kernel_weights",
    "sample_masks",
]

log = logging.getLogger(__name__)

SAMPLERS = ("iid", "paired", "stratified", "orthogonal")
#: Measured by benchmarks/lime_efficiency.py (docs/explain.md): the same median
#: fidelity from about half the forward passes of ``iid``.
DEFAULT_SAMPLER = "orthogonal"

#: The golden-ratio step of the stratum sequence: its points spread over [0, 1) evenly
#: for every prefix (three-distance theorem), so stratum counts stay balanced at any n.
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def generator_seed(seed: int, index: int) -> int:
    """The torch generator seed of image ``index``'s masks: the one
    ``iid_masks`` uses, so two runs share rows exactly when
    ``(seed, index)`` pairs coincide (seeds and indices below 1,000,003 never collide
    otherwise)."""
    return seed * 1_000_003 + index


def iid_masks(num_segments: int, num_samples: int, seed: int, index: int) -> torch.Tensor:
    """(num_samples, S) uniform binary masks; row 0 keeps everything (as in ``lime``)."""
    generator = torch.Generator().manual_seed(generator_seed(seed, index))
    z = torch.randint(0, 2, (num_samples, num_segments), generator=generator, dtype=torch.uint8)
    z[0] = 1
    return z


def kernel_weights(kept: np.ndarray, num_segments: int, kernel_width: float) -> np.ndarray:
    """LIME's sample weights ``sqrt(exp(-d^2 / width^2))`` of masks keeping ``kept``
    segments, ``d`` the cosine distance to the all-ones mask: 1 - k / (sqrt(k) sqrt(S)),
    and 1 for the empty mask (scikit-learn's convention, which lime inherits)."""
    distance = 1.0 - np.sqrt(np.asarray(kept, dtype=np.float64) / num_segments)
    return np.sqrt(np.exp(-(distance**2) / kernel_width**2))


def sample_masks(
    sampler: str,
    num_segments: int,
    num_samples: int,
    seed: int,
    index: int,
    *,
    kernel_width: float = 0.25,
) -> tuple[torch.Tensor, np.ndarray | None]:
    """Masks for one image's LIME explanation.

    Args:
        sampler: one of ``SAMPLERS``.
        num_segments: S, the superpixels.
        num_samples: n, rows (forward passes) including the all-ones row 0.
        seed, index: the run's seed and the image's index (as in ``LimeSettings.seed``).
        kernel_width: the kernel the ``stratified`` allocation is tuned to; another width
            at fit time costs efficiency, never correctness (the corrections use only
            the design's own probabilities).

    Returns:
        ``(masks, row_weights)``: (n, S) uint8 0/1 masks, row 0 all ones, and (n,) float64
        corrections to multiply into the kernel weights (``stratified`` only; None for
        the others, whose rows are all uniform).

    Raises:
        ConfigError: an unknown sampler (field ``sampler``).
        ValueError: fewer than one segment or sample.
    """
    if sampler not in SAMPLERS:
        raise ConfigError("sampler", f"unknown value {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if num_segments < 1 or num_samples < 1:
        raise ValueError(
            f"need num_segments >= 1 and num_samples >= 1, got {num_segments}, {num_samples}"
        )
    if sampler == "iid":
        return iid_masks(num_segments, num_samples, seed, index), None
    generator = torch.Generator().manual_seed(generator_seed(seed, index))
    rows = num_samples - 1
    if sampler == "paired":
        body, weights = _paired(num_segments, rows, generator), None
    elif sampler == "stratified":
        body, weights = _stratified(num_segments, rows, generator, kernel_width)
    else:
        body, weights = _orthogonal(num_segments, rows, generator, seed, index), None
    masks = torch.cat([torch.ones(1, num_segments, dtype=torch.uint8), body])
    if weights is not None:
        weights = np.concatenate([[1.0], weights])  # row 0 is outside the design, as in iid
    return masks, weights


# ----------------------------------------------------------------------------- paired


def _paired(num_segments: int, rows: int, generator: torch.Generator) -> torch.Tensor:
    """``rows`` masks z1, 1-z1, z2, 1-z2, ... (an odd count ends with an unpaired z)."""
    halves = torch.randint(
        0, 2, ((rows + 1) // 2, num_segments), generator=generator, dtype=torch.uint8
    )
    return torch.stack([halves, 1 - halves], dim=1).reshape(-1, num_segments)[:rows]


# ----------------------------------------------------------------------------- stratified


def _stratified(
    num_segments: int, rows: int, generator: torch.Generator, kernel_width: float
) -> tuple[torch.Tensor, np.ndarray]:
    """Masks whose kept counts are stratified, and their corrections p_k / q_k."""
    p, q = _strata(num_segments, kernel_width)
    start = float(torch.rand((), generator=generator, dtype=torch.float64))
    points = np.mod(start + _GOLDEN * np.arange(1, rows + 1), 1.0)
    # Each point is uniform (the start is), so each row's stratum has law q exactly.
    kept = np.minimum(np.searchsorted(np.cumsum(q), points, side="right"), num_segments)
    # A uniform k-subset: the k segments with the smallest of S uniform keys.
    keys = torch.rand((rows, num_segments), generator=generator, dtype=torch.float64)
    ranks = keys.argsort(dim=1).argsort(dim=1).numpy()
    masks = (ranks < kept[:, None]).astype(np.uint8)
    return torch.from_numpy(masks), p[kept] / q[kept]


@functools.lru_cache(maxsize=64)
def _strata(num_segments: int, kernel_width: float) -> tuple[np.ndarray, np.ndarray]:
    """(p, q) over k = 0..S: the binomial law of k under uniform masks and the sampling
    law proportional to p times the kernel weight (read-only arrays)."""
    k = np.arange(num_segments + 1)
    log_p = np.array(
        [
            math.lgamma(num_segments + 1) - math.lgamma(i + 1) - math.lgamma(num_segments - i + 1)
            for i in k
        ]
    ) - num_segments * math.log(2.0)
    p = np.exp(log_p)
    q = p * kernel_weights(k, num_segments, kernel_width)
    q /= q.sum()
    p.setflags(write=False)
    q.setflags(write=False)
    return p, q


# ----------------------------------------------------------------------------- orthogonal


def _orthogonal(
    num_segments: int, rows: int, generator: torch.Generator, seed: int, index: int
) -> torch.Tensor:
    """Foldover Hadamard designs, then one unfolded design if it fits, then i.i.d. rows."""
    order = design_order(num_segments)
    columns = _hadamard01(order)[:, 1:]  # (N, N-1): the balanced, orthogonal columns
    parts: list[torch.Tensor] = []
    left = rows
    while left >= order:
        choice = torch.randperm(order - 1, generator=generator)[:num_segments]
        flip = torch.randint(0, 2, (num_segments,), generator=generator, dtype=torch.uint8)
        design = columns[:, choice] ^ flip
        parts.append(design)
        left -= order
        if left >= order:
            parts.append(1 - design)
            left -= order
    if left:
        # The iid sampler's stream (skipping its row 0, which lime overwrites with ones).
        parts.append(iid_masks(num_segments, left + 1, seed, index)[1:])
    return torch.cat(parts) if parts else torch.zeros(0, num_segments, dtype=torch.uint8)


def design_order(num_segments: int) -> int:
    """The smallest Hadamard order N > S this module builds: a power of 2 or q + 1 for a
    prime q = 3 mod 4 (Paley). Small orders matter: a design must fit the budget."""
    order = num_segments + 1
    while not (order & (order - 1) == 0 or (_is_prime(order - 1) and (order - 1) % 4 == 3)):
        order += 1
    return order


@functools.lru_cache(maxsize=16)
def _hadamard01(order: int) -> torch.Tensor:
    """A Hadamard matrix of ``order`` normalized to a first column of +1, as 0/1 uint8
    (1 for +1). Its other columns are balanced and pairwise orthogonal."""
    if order & (order - 1) == 0:
        h = np.ones((1, 1), dtype=np.int64)
        while len(h) < order:
            h = np.block([[h, h], [h, -h]])
    else:
        q = order - 1
        residues = {(i * i) % q for i in range(1, q)}
        chi = np.array([0] + [1 if i in residues else -1 for i in range(1, q)])
        jacobsthal = chi[(np.arange(q)[None, :] - np.arange(q)[:, None]) % q]
        core = np.zeros((order, order), dtype=np.int64)
        core[0, 1:] = 1
        core[1:, 0] = -1
        core[1:, 1:] = jacobsthal
        h = core + np.eye(order, dtype=np.int64)
    h = h * h[:, :1]  # rows scaled so that the first column is all +1
    if not np.array_equal(h @ h.T, order * np.eye(order, dtype=np.int64)):
        raise AssertionError(f"Hadamard construction of order {order} failed")
    return torch.from_numpy((h > 0).astype(np.uint8))


def _is_prime(value: int) -> bool:
    return value >= 2 and all(value % d for d in range(2, math.isqrt(value) + 1))
