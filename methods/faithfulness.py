"""Faithfulness of an explanation: the masked-accuracy curve of Saliency-Guided Training.

Ismail et al. (NeurIPS 2021) measure interpretability by removing the features a
saliency map calls most important and watching accuracy fall (their
``maskedAcc_MNIST.py``): rank each image's pixels by the model's own saliency
(|gradient| of the true label's output, averaged over channels), replace the top
0%, 10%, ..., 90% of pixels with the image's background value (its top-left pixel),
and record accuracy at each step; a random order of pixels is the baseline. The
faster accuracy falls, the more the ranked features are the ones the model uses.

Here the curve is summarised by its normalized area (``faithfulness_auc``; lower:
more faithful) and compared with the random order (``gap = auc - random_auc``;
negative: the explanation beats chance). ``lime_masked_accuracy_curve`` runs the
same measurement for LIME explanations, removing whole superpixels in order of their
weight. Choices, the source's lines and our deviations: ``docs/faithfulness.md``.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from methods.attacks import model_mode, unwrap
from methods.batching import batches
from methods.lime import Explanation
from methods.results import FaithfulnessCurve
from methods.saliency import SALIENCY_TARGETS, SaliencyTarget, input_saliency

__all__ = [
    "BACKGROUNDS",
    "DEFAULT_FRACTIONS",
    "FaithfulnessCurve",
    "faithfulness_auc",
    "lime_masked_accuracy_curve",
    "masked_accuracy_curve",
]

log = logging.getLogger(__name__)

#: The script's ``drop=[0 ,10,20,30,40,50,60,70,80,90]`` (percent of pixels removed).
DEFAULT_FRACTIONS: tuple[float, ...] = tuple(d / 100 for d in range(0, 100, 10))
#: Named fill values; a number in [0,1] paints that constant instead. ``corner`` is the
#: script's default ``maskAccType="trueMask"``: each image's top-left pixel.
BACKGROUNDS: tuple[str, ...] = ("corner",)

#: (B, HW) bool mask of the pixels to remove, given how many pixels to remove.
MaskFn = Callable[[int], torch.Tensor]


def faithfulness_auc(fractions: Sequence[float], acc: Sequence[float]) -> float:
    """Area under ``acc`` over ``fractions`` (trapezoid rule) divided by the fraction
    span, so a curve at a constant ``c`` has AUC ``c`` and the result of accuracies in
    [0,1] lies in [0,1]. Lower: accuracy falls faster as features are removed."""
    f = np.asarray(fractions, dtype=np.float64)
    a = np.asarray(acc, dtype=np.float64)
    if f.ndim != 1 or f.shape != a.shape:
        raise ValueError(
            f"fractions and acc must be 1-D of equal length, got {f.shape} and {a.shape}"
        )
    _check_fractions(f)
    area = float(np.sum((a[1:] + a[:-1]) / 2 * np.diff(f)))
    return area / float(f[-1] - f[0])


# ----------------------------------------------------------------------------- helpers


def _check_fractions(fractions: np.ndarray) -> None:
    if len(fractions) < 2:
        raise ValueError(f"fractions needs at least 2 points for an area, got {len(fractions)}")
    if not np.all(np.isfinite(fractions)) or fractions.min() < 0 or fractions.max() > 1:
        raise ValueError(f"fractions must lie in [0, 1], got {fractions.tolist()}")
    if not np.all(np.diff(fractions) > 0):
        raise ValueError(f"fractions must be strictly increasing, got {fractions.tolist()}")


def _check_inputs(
    images: torch.Tensor,
    labels: torch.Tensor,
    fractions: Sequence[float],
    background: str | float,
    batch_size: int,
) -> tuple[float, ...]:
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(
            f"images must be float (N, C, H, W) in [0,1], got {images.dtype} {tuple(images.shape)}"
        )
    if len(images) == 0:
        raise ValueError("images is empty; the curve needs at least one image")
    if labels.shape != (len(images),):
        raise ValueError(
            f"labels must have shape ({len(images)},), one per image, got {tuple(labels.shape)}"
        )
    if isinstance(background, str):
        if background not in BACKGROUNDS:
            raise ValueError(
                f"unknown background {background!r}; valid: {', '.join(BACKGROUNDS)} "
                "or a number in [0, 1]"
            )
    elif not (
        isinstance(background, numbers.Real)
        and not isinstance(background, bool)
        and 0.0 <= float(background) <= 1.0
    ):
        raise ValueError(f"background must be 'corner' or a number in [0, 1], got {background!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    values = np.asarray([float(f) for f in fractions], dtype=np.float64)
    _check_fractions(values)
    return tuple(values.tolist())


def _pixels_removed(fraction: float, pixels: int) -> int:
    """The script's ``k = max(1, int(H*W * percentage))`` for a fraction above 0 (it
    skips masking at 0). The 1e-9 only absorbs float noise such as 0.29 * 100 =
    28.999999999999996; for the script's own fractions the count is unchanged."""
    if fraction == 0:
        return 0
    return min(pixels, max(1, math.floor(fraction * pixels + 1e-9)))


def _fill_values(images: torch.Tensor, background: str | float) -> torch.Tensor:
    """(B, C, 1, 1) value painted over removed pixels."""
    if background == "corner":
        # The script's trueMask reads input_image[0,0,0] (one channel: MNIST); each
        # channel's own top-left pixel extends it to colour images.
        return images[:, :, :1, :1]
    return torch.full_like(images[:, :, :1, :1], float(background))


@torch.no_grad()
def _hits(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None,
    fill: torch.Tensor,
) -> torch.Tensor:
    """Number of correct predictions (a 0-d tensor on the batch's device, no sync)."""
    if mask is not None:
        images = torch.where(mask.view(len(images), 1, *images.shape[2:]), fill, images)
    return (net(images).argmax(1) == labels).sum()


def _ranks(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation per row: ``ranks[i, order[i, r]] = r``."""
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def _pixel_removal(scores: torch.Tensor) -> MaskFn:
    """Remove the ``k`` highest-scoring pixels of each row of ``scores`` (B, HW); ties
    go to the lower pixel index (a stable sort), so the result is deterministic."""
    rank = _ranks(scores.argsort(dim=1, descending=True, stable=True))
    return lambda k: rank < k


def _segment_removal(segments: torch.Tensor, keys: torch.Tensor, sizes: torch.Tensor) -> MaskFn:
    """Remove whole segments in descending ``keys`` order until at least ``k`` pixels are
    gone: the fewest leading segments whose pixels reach ``k``.

    Args:
        segments: (B, HW) segment id of each pixel.
        keys: (B, S) order key per segment; padding segments carry -inf (last).
        sizes: (B, S) pixels per segment (0 for padding).
    """
    order = keys.argsort(dim=1, descending=True, stable=True)
    position = _ranks(order).gather(1, segments)  # each pixel's segment's place in order
    reached = sizes.gather(1, order).cumsum(1)  # pixels removed after each segment

    def mask(k: int) -> torch.Tensor:
        # Segments needed: those whose running total is still short of k, plus the one
        # that reaches it. The real segments cover all HW >= k pixels, so padding
        # (size 0, ordered last) is never taken.
        needed = (reached < k).sum(1, keepdim=True) + 1
        return position < needed

    return mask


def _fraction_generator(seed: int, fraction: float) -> torch.Generator:
    """A CPU generator per (seed, fraction): the random baseline at a fraction is the
    same whatever the device, the batch size or the other fractions asked for."""
    state = np.random.SeedSequence([seed, round(fraction * 10**6)]).generate_state(1, np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


def _curve(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    fractions: tuple[float, ...],
    background: str | float,
    batch_size: int,
    device: torch.device | str,
    seed: int,
    order: str,
    ranked: Callable[[slice, torch.Tensor, torch.Tensor], MaskFn],
    shuffled: Callable[[slice, torch.Generator, torch.device], MaskFn],
) -> FaithfulnessCurve:
    """The shared loop: per batch, one ranking (``ranked``) and, per fraction, one fresh
    random ranking (``shuffled``), each evaluated at every fraction's pixel count."""
    device = torch.device(device)
    net = unwrap(model)
    pixels = images.shape[2] * images.shape[3]
    counts = [_pixels_removed(f, pixels) for f in fractions]
    generators = [_fraction_generator(seed, f) for f in fractions]
    hits = torch.zeros(2, len(fractions), dtype=torch.long, device=device)
    with model_mode(net, "eval"):
        for part in batches(len(images), batch_size):
            x = images[part].to(device, non_blocking=True)
            y = labels[part].to(device, non_blocking=True).long()
            fill = _fill_values(x, background)
            removal = ranked(part, x, y)
            clean: torch.Tensor | None = None
            for j, k in enumerate(counts):
                if k == 0:  # nothing removed: both curves start at clean accuracy
                    clean = _hits(net, x, y, None, fill) if clean is None else clean
                    hits[:, j] += clean
                    continue
                hits[0, j] += _hits(net, x, y, removal(k), fill)
                hits[1, j] += _hits(net, x, y, shuffled(part, generators[j], device)(k), fill)
    acc = (hits.double() / len(images)).cpu().tolist()
    curve = FaithfulnessCurve(
        fractions=fractions,
        acc=tuple(acc[0]),
        random_acc=tuple(acc[1]),
        auc=faithfulness_auc(fractions, acc[0]),
        random_auc=faithfulness_auc(fractions, acc[1]),
        order=order,
    )
    log.debug("faithfulness (%s): auc %.4f random %.4f", order, curve.auc, curve.random_auc)
    return curve


# ----------------------------------------------------------------------------- public


def masked_accuracy_curve(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    background: str | float = "corner",
    saliency_target: SaliencyTarget = "log_prob",
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> FaithfulnessCurve:
    """SGT's masked-accuracy curve: remove each image's most salient pixels first.

    Saliency is |d out_y / dx| averaged over channels, for the true label ``y``, in eval
    mode, computed once per image on the clean input; removing a fraction replaces
    ``max(1, floor(fraction * H * W))`` pixels (every channel of each) by the
    background. The baseline removes as many pixels chosen at random, drawn afresh at
    each fraction as the script does.

    Args:
        model: maps (N, C, H, W) in [0,1] to logits; lives on ``device``. Run in eval
            mode, its modes restored afterwards; parameter gradients are not touched.
        images, labels: (N, C, H, W) in [0,1] and (N,) class indices; may be on the CPU.
        fractions: shares of pixels removed, strictly increasing in [0, 1]; default
            the script's 0.0, 0.1, ..., 0.9.
        background: ``"corner"`` (each image's, each channel's top-left pixel: the
            script's ``trueMask``) or a constant in [0,1].
        saliency_target: ``"log_prob"`` (the script's MNIST network ends in
            log_softmax) or ``"logit"``.
        seed: the random baseline's draws (the same on every device and batch size).

    Returns:
        ``FaithfulnessCurve`` with ``order="saliency"``.
    """
    if saliency_target not in SALIENCY_TARGETS:
        raise ValueError(
            f"unknown saliency_target {saliency_target!r}; valid: {', '.join(SALIENCY_TARGETS)}"
        )
    fractions = _check_inputs(images, labels, fractions, background, batch_size)
    pixels = images.shape[2] * images.shape[3]

    def ranked(part: slice, x: torch.Tensor, y: torch.Tensor) -> MaskFn:
        saliency = input_saliency(model, x, y, absolute=True, target=saliency_target)
        return _pixel_removal(saliency.flatten(1))

    def shuffled(part: slice, generator: torch.Generator, device: torch.device) -> MaskFn:
        keys = torch.rand(part.stop - part.start, pixels, generator=generator)
        return _pixel_removal(keys.to(device))

    return _curve(
        model,
        images,
        labels,
        fractions=fractions,
        background=background,
        batch_size=batch_size,
        device=device,
        seed=seed,
        order="saliency",
        ranked=ranked,
        shuffled=shuffled,
    )


def _segment_tables(
    explanations: Sequence[Explanation], n_images: int, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stacked (N, HW) segment ids, (N, S) LIME weights (-inf padding) and (N, S) sizes."""
    if len(explanations) != n_images:
        raise ValueError(
            f"explanations must hold one Explanation per image ({n_images}), "
            f"got {len(explanations)}"
        )
    most = max(e.num_segments for e in explanations)
    segments = np.empty((n_images, height * width), dtype=np.int64)
    weights = np.full((n_images, most), -np.inf, dtype=np.float64)
    for i, e in enumerate(explanations):
        if e.segments.shape != (height, width):
            raise ValueError(
                f"explanations[{i}].segments has shape {e.segments.shape}; "
                f"the images are {height}x{width}"
            )
        if e.segments.min() < 0 or e.segments.max() >= e.num_segments:
            raise ValueError(
                f"explanations[{i}].segments must hold ids 0..{e.num_segments - 1}, one per weight"
            )
        if not np.all(np.isfinite(e.weights)):
            raise ValueError(f"explanations[{i}].weights must be finite")
        segments[i] = e.segments.reshape(-1)
        weights[i, : e.num_segments] = e.weights
    segments_t = torch.from_numpy(segments)
    sizes = torch.zeros(n_images, most, dtype=torch.long)
    sizes.scatter_add_(1, segments_t, torch.ones_like(segments_t))
    return segments_t, torch.from_numpy(weights), sizes


def lime_masked_accuracy_curve(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    explanations: Sequence[Explanation],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    background: str | float = "corner",
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> FaithfulnessCurve:
    """The masked-accuracy curve for LIME: remove superpixels in order of LIME weight.

    Superpixels go most supportive first (descending signed weight; ties by segment
    id). A fraction ``f`` removes whole superpixels, in that order, until at least
    ``max(1, floor(f * H * W))`` pixels are gone, so the share removed is the nominal
    one or more by less than one superpixel. The baseline removes whole superpixels in
    a random order (drawn afresh at each fraction) by the same rule, so the two curves
    remove the same pixel budget at the same granularity.

    Args:
        explanations: one ``methods.lime.Explanation`` per image, in order; its
            ``segments`` (H, W) and ``weights`` (S,) are used.
        Others as in ``masked_accuracy_curve``.

    Returns:
        ``FaithfulnessCurve`` with ``order="lime"``.
    """
    fractions = _check_inputs(images, labels, fractions, background, batch_size)
    segments, weights, sizes = _segment_tables(explanations, len(images), *images.shape[2:])
    padding = sizes == 0

    def ranked(part: slice, x: torch.Tensor, y: torch.Tensor) -> MaskFn:
        return _segment_removal(
            segments[part].to(x.device), weights[part].to(x.device), sizes[part].to(x.device)
        )

    def shuffled(part: slice, generator: torch.Generator, device: torch.device) -> MaskFn:
        keys = torch.rand(weights[part].shape, generator=generator, dtype=torch.float64)
        keys = keys.masked_fill(padding[part], -math.inf)
        return _segment_removal(segments[part].to(device), keys.to(device), sizes[part].to(device))

    return _curve(
        model,
        images,
        labels,
        fractions=fractions,
        background=background,
        batch_size=batch_size,
        device=device,
        seed=seed,
        order="lime",
        ranked=ranked,
        shuffled=shuffled,
    )
