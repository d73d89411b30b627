"""Batched LIME for images (Ribeiro et al., KDD 2016), with the ``lime`` package's semantics.

For each image: segment it into superpixels, draw ``num_samples`` binary masks over
the segments (the first keeps every segment), replace hidden segments by a fill
(the segment's mean colour, as ``lime`` does, or a constant), run the model, and fit
a weighted ridge regression from masks to the target class probability. Sample
weights are ``sqrt(exp(-d^2 / width^2))`` of the cosine distance ``d`` between a mask
and the all-ones mask, width 0.25; the ridge has ``alpha = 1`` and an unpenalized
intercept, exactly ``lime``'s defaults. The result is one signed weight per segment.

What differs from ``lime`` is speed: perturbations are built with one gather per
image in torch, and forward passes are batched across samples *and* images in
chunks of ``batch_size``, on the model's device. Segmentation and the ridge fit (a
closed-form solve of a ~50x50 system) stay on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from methods.attacks import model_mode
from methods.lime_sampling import DEFAULT_SAMPLER, SAMPLERS, kernel_weights, sample_masks
from methods.options import ConfigError, option, validate

__all__ = [
    "SEGMENTATIONS",
    "SPURIOUS_STRATEGIES",
    "Explanation",
    "LimeExplainer",
    "LimeSettings",
    "default_batch_size",
    "flagged_mask",
    "flagged_segments",
    "samples_option",
    "segment",
    "segment_means",
    "top_segments",
    "unstable_segments",
]

log = logging.getLogger(__name__)

SEGMENTATIONS = ("auto", "slic", "quickshift", "grid")
#: Strategies that flag from one explanation's weights.
SPURIOUS_STRATEGIES = ("low_relevance", "high_relevance", "irrelevant")


def samples_option(default: int, help: str) -> Any:
    """LIME's sample count as an ``option`` field, declared here once for every record
    that carries one (``LimeSettings``, LGR's options, the shortcut benchmark's plan):
    at least 2, the all-kept image and one perturbation."""
    return option(default, help=help, low=2, metavar="N")


@dataclass(frozen=True)
class LimeSettings:
    """Everything that determines an explanation (and keys the mask store).

    Attributes:
        num_samples: perturbed images per explanation (``lime``'s default is 1000).
        segmentation: ``slic`` (~``n_segments`` superpixels; default for 32x32 and
            larger), ``quickshift`` (kernel_size=1, max_dist=5: ``lime``'s defaults
            give 1-2 segments on 32x32), ``grid`` (square cells; default below 32x32,
            e.g. 8x8 digits and 28x28 MNIST) or ``auto`` (by image size).
        n_segments: target segment count for ``slic``.
        grid_cell: cell side in pixels for ``grid``; 0 picks 2 below 16 px, else 4.
        fill: ``"mean"`` (each hidden segment takes its mean colour) or a float in
            [0,1] painted over hidden segments.
        kernel_width: width of the exponential kernel on cosine distance.
        ridge_alpha: L2 penalty of the surrogate.
        seed: base seed; image ``i`` uses ``(seed, i)``, so results do not depend on
            how images are split across batches or actors.
    """

    num_samples: int = samples_option(1000, "perturbed images per explanation")
    segmentation: str = option(
        "auto",
        help="superpixels: slic (32x32 and up), grid (smaller), quickshift; auto picks by "
        "image size",
        choices=SEGMENTATIONS,
    )
    n_segments: int = option(50, help="target segment count for slic", low=2)
    grid_cell: int = option(0, help="grid cell side in pixels; 0 picks by image size", low=0)
    fill: str | float = option("mean", help="'mean' (each segment's mean colour) or a gray level")
    kernel_width: float = option(
        0.25, help="width of the kernel on cosine distance", low=0.0, open_low=True
    )
    ridge_alpha: float = option(1.0, help="L2 penalty of the surrogate", low=0.0)
    seed: int = option(0, help="seed of the LIME masks", low=0)
    sampler: str = option(
        DEFAULT_SAMPLER,
        help="how the masks are drawn: orthogonal (randomized Hadamard designs with "
        "foldovers: the same explanation from about half the samples, "
        "docs/explain.md), paired (each mask and its complement), stratified (by kept "
        "count), iid (as the lime package)",
        choices=SAMPLERS,
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.fill != "mean" and not (
            isinstance(self.fill, (int, float)) and 0.0 <= self.fill <= 1.0
        ):
            raise ConfigError("fill", f"must be 'mean' or a number in [0, 1], got {self.fill!r}")

    def resolved(self, image_size: int) -> LimeSettings:
        """``auto`` segmentation and ``grid_cell = 0`` made concrete for an image size."""
        segmentation = self.segmentation
        if segmentation == "auto":
            segmentation = "slic" if image_size >= 32 else "grid"
        cell = self.grid_cell or (2 if image_size < 16 else 4)
        return LimeSettings(**{**asdict(self), "segmentation": segmentation, "grid_cell": cell})

    def digest(self) -> str:
        """A short stable hash of the settings (for store keys)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Explanation:
    """One image's explanation.

    Attributes:
        segments: (H, W) int array of segment ids 0..S-1.
        weights: (S,) float64 surrogate coefficient per segment for ``target``.
        intercept: surrogate intercept.
        score: weighted R^2 of the surrogate on its samples (``lime``'s ``score``).
        target: the explained class.
        predicted: the model's class on the unperturbed image.
    """

    segments: np.ndarray
    weights: np.ndarray
    intercept: float
    score: float
    target: int
    predicted: int

    @property
    def num_segments(self) -> int:
        return len(self.weights)


# ----------------------------------------------------------------------------- segmentation


def _relabel(segments: np.ndarray) -> np.ndarray:
    """Segment ids as 0..S-1 in order of first appearance, int32."""
    _, inverse = np.unique(segments, return_inverse=True)
    return inverse.reshape(segments.shape).astype(np.int32)


def segment(image: np.ndarray, settings: LimeSettings) -> np.ndarray:
    """Superpixels of one image (C, H, W) float in [0,1] -> (H, W) int32 ids 0..S-1."""
    channels, height, width = image.shape
    settings = settings.resolved(min(height, width))
    if settings.segmentation == "grid":
        cell = settings.grid_cell
        rows = np.arange(height) // cell
        cols = np.arange(width) // cell
        return _relabel(rows[:, None] * (width // cell + 1) + cols[None, :])
    hwc = np.ascontiguousarray(image.transpose(1, 2, 0), dtype=np.float64)
    if settings.segmentation == "slic":
        from skimage.segmentation import slic

        segments = slic(
            hwc if channels > 1 else hwc[..., 0],
            n_segments=settings.n_segments,
            compactness=10 if channels > 1 else 0.1,
            start_label=0,
            channel_axis=-1 if channels > 1 else None,
        )
        return _relabel(segments)
    from skimage.segmentation import quickshift

    rgb = hwc if channels == 3 else np.repeat(hwc[..., :1], 3, axis=-1)
    return _relabel(quickshift(rgb, kernel_size=1, max_dist=5, ratio=0.2))


# ----------------------------------------------------------------------------- explainer


def default_batch_size(device: torch.device) -> int:
    # Mid-sized batches win on CPU (benchmarks/lime.py, 2 idle cores, 3x32x32: tiny_cnn
    # forwards peak at batch 100, small_cnn at 50; batches over ~32 MiB of activations
    # page-fault on every call under glibc's malloc). GPUs want large ones.
    return 1024 if device.type == "cuda" else 100


class LimeExplainer:
    """Batched LIME over a model that maps (N, C, H, W) in [0,1] to logits.

    Args:
        model: the classifier; run in eval mode, its mode restored afterwards.
        batch_size: images per forward pass; default by device (``default_batch_size``).
    """

    def __init__(self, model: nn.Module, *, batch_size: int | None = None) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size or default_batch_size(self.device)

    @torch.no_grad()
    def explain(
        self,
        images: torch.Tensor,
        targets: torch.Tensor | Sequence[int] | None = None,
        settings: LimeSettings | None = None,
        *,
        indices: Sequence[int] | None = None,
        segments: Sequence[np.ndarray] | None = None,
    ) -> list[Explanation]:
        """Explain ``images`` (N, C, H, W) in [0,1] for class ``targets`` (N,).

        Args:
            targets: classes to explain; default the predicted classes.
            settings: ``LimeSettings`` (defaults if None).
            indices: data set index of each image, used to seed its masks (default
                0..N-1); pass them so an image's explanation is the same in any batch.
            segments: precomputed segmentations, one (H, W) int array per image.

        Returns:
            One ``Explanation`` per image, in order.
        """
        settings = settings or LimeSettings()
        images = images.detach().to(torch.float32)
        n = len(images)
        indices = list(range(n)) if indices is None else [int(i) for i in indices]
        if len(indices) != n:
            raise ValueError(f"indices has {len(indices)} entries for {n} images")
        if segments is None:
            cpu = images.cpu().numpy()
            segments = [segment(cpu[i], settings) for i in range(n)]
        with model_mode(self.model, "eval"):
            predicted = self._predict(images.to(self.device)).argmax(1).cpu()
            targets = predicted if targets is None else torch.as_tensor(targets).cpu()
            # Enough images per group that each group fills several forward batches.
            group = max(1, math.ceil(4 * self.batch_size / settings.num_samples))
            out: list[Explanation] = []
            for start in range(0, n, group):
                part = slice(start, min(start + group, n))
                out += self._explain_group(
                    images[part],
                    targets[part],
                    predicted[part],
                    indices[part],
                    segments[part],
                    settings,
                )
        return out

    def _predict(self, images: torch.Tensor) -> torch.Tensor:
        probs = [
            torch.softmax(self.model(images[i : i + self.batch_size]).float(), dim=1)
            for i in range(0, len(images), self.batch_size)
        ]
        return torch.cat(probs)

    def _explain_group(self, images, targets, predicted, indices, segments, settings):
        masks, perturbed = [], []
        for image, index, seg in zip(images, indices, segments, strict=True):
            z, corrections = sample_masks(
                settings.sampler,
                int(seg.max()) + 1,
                settings.num_samples,
                settings.seed,
                index,
                kernel_width=settings.kernel_width,
            )
            masks.append((z, corrections))
            perturbed.append(_perturb(image, torch.from_numpy(seg), z, settings.fill))
        stacked = torch.cat(perturbed).to(self.device, non_blocking=True)
        probs = self._predict(stacked).cpu().double().view(len(images), settings.num_samples, -1)
        explanations = []
        # One BLAS thread for the tiny ridge solves: OpenBLAS's own thread pool otherwise
        # wakes between forward passes and fights torch's threads for the cores
        # (benchmarks/lime.py: 0.58 -> ~0.87 of the forward-pass bound on 2 cores).
        with threadpool_limits(limits=1, user_api="blas"):
            explanations = self._fit_all(masks, segments, targets, predicted, probs, settings)
        return explanations

    @staticmethod
    def _fit_all(masks, segments, targets, predicted, probs, settings) -> list[Explanation]:
        explanations = []
        for i, ((z, corrections), seg) in enumerate(zip(masks, segments, strict=True)):
            target = int(targets[i])
            weights, intercept, score = fit_surrogate(
                z.double().numpy(), probs[i, :, target].numpy(), settings, corrections
            )
            explanations.append(
                Explanation(seg, weights, intercept, score, target, int(predicted[i]))
            )
        return explanations


def _perturb(
    image: torch.Tensor, segments: torch.Tensor, masks: torch.Tensor, fill: str | float
) -> torch.Tensor:
    """(num_samples, C, H, W): ``image`` with the segments a mask row hides replaced by fill."""
    channels = image.shape[0]
    flat_seg = segments.reshape(-1).long().to(image.device)
    flat = image.reshape(channels, -1)
    if fill == "mean":
        count = torch.bincount(flat_seg, minlength=masks.shape[1]).clamp_(min=1).to(image.dtype)
        sums = torch.zeros(channels, masks.shape[1], dtype=image.dtype, device=image.device)
        sums.index_add_(1, flat_seg, flat)
        filler = (sums / count)[:, flat_seg]  # each pixel's segment mean
    else:
        filler = torch.full_like(flat, float(fill))
    keep = masks.to(image.device, image.dtype)[:, flat_seg]  # (n, H*W)
    out = filler.unsqueeze(0) + keep.unsqueeze(1) * (flat - filler).unsqueeze(0)
    return out.view(len(masks), *image.shape)


def fit_surrogate(
    masks: np.ndarray,
    target_probs: np.ndarray,
    settings: LimeSettings,
    row_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, float, float]:
    """``lime``'s weighted ridge, in closed form.

    Args:
        masks: (n, S) 0/1 samples; row 0 is the all-ones mask.
        target_probs: (n,) model probability of the target class on each sample.
        row_weights: a sampler's corrections (``methods.lime_sampling``: ``stratified``),
            multiplied into the kernel weights so that its design fits the same weighted
            ridge as i.i.d. masks; None for uniform rows.

    Returns:
        (weights (S,), intercept, weighted R^2).
    """
    num_segments = masks.shape[1]
    sample_weight = kernel_weights(masks.sum(1), num_segments, settings.kernel_width)
    if row_weights is not None:
        sample_weight = sample_weight * row_weights
    total = sample_weight.sum()
    x_mean = sample_weight @ masks / total
    y_mean = sample_weight @ target_probs / total
    xc = masks - x_mean
    yc = target_probs - y_mean
    gram = (xc * sample_weight[:, None]).T @ xc + settings.ridge_alpha * np.eye(num_segments)
    weights = np.linalg.solve(gram, (xc * sample_weight[:, None]).T @ yc)
    intercept = float(y_mean - x_mean @ weights)
    residual = yc - xc @ weights
    total_ss = float(sample_weight @ yc**2)
    score = 1.0 - float(sample_weight @ residual**2) / total_ss if total_ss > 0 else 0.0
    return weights, intercept, score


# ----------------------------------------------------------------------------- flags


def flagged_segments(
    weights: np.ndarray, strategy: str, ratio: float, *, threshold: float | None = None
) -> np.ndarray:
    """Segment ids to flag from one explanation's weights.

    ``low_relevance`` takes the bottom ``ratio`` fraction by signed weight (misleading
    first, then irrelevant), ``high_relevance`` the top fraction (over-reliance),
    ``irrelevant`` the bottom fraction by |weight| (or every segment with |weight|
    below ``threshold`` when given, possibly none). Otherwise at least one is flagged.
    """
    if strategy not in SPURIOUS_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(SPURIOUS_STRATEGIES)}")
    _check_ratio(ratio)
    if strategy == "irrelevant":
        if threshold is not None:
            return np.flatnonzero(np.abs(weights) < threshold)
        return _bottom(np.abs(weights), ratio)
    k = max(1, round(ratio * len(weights)))
    order = np.argsort(weights, kind="stable")
    return order[:k] if strategy == "low_relevance" else order[::-1][:k]


def unstable_segments(weight_runs: np.ndarray, ratio: float) -> np.ndarray:
    """Segment ids whose weight varies most across re-explanations of one image:
    ``weight_runs`` is (R, S), one row per re-explanation; the top ``ratio`` fraction
    by standard deviation is flagged."""
    _check_ratio(ratio)
    runs = np.asarray(weight_runs)
    if runs.ndim != 2 or runs.shape[0] < 2:
        raise ValueError(f"need (R >= 2, S) weights of re-explanations, got {runs.shape}")
    return _top(runs.std(axis=0), ratio)


def segment_means(values: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """(S,) mean of ``values`` (H, W) over each segment id 0..S-1 of ``segments``."""
    count = int(segments.max()) + 1
    sums = np.bincount(segments.ravel(), weights=values.ravel(), minlength=count)
    sizes = np.bincount(segments.ravel(), minlength=count)
    return sums / np.maximum(sizes, 1)


def top_segments(scores: np.ndarray, ratio: float) -> np.ndarray:
    """The top ``ratio`` fraction of segments by ``scores`` (at least one)."""
    _check_ratio(ratio)
    return _top(np.asarray(scores), ratio)


def _check_ratio(ratio: float) -> None:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must lie in (0, 1), got {ratio}")


def _bottom(scores: np.ndarray, ratio: float) -> np.ndarray:
    k = max(1, round(ratio * len(scores)))
    return np.argsort(scores, kind="stable")[:k]


def _top(scores: np.ndarray, ratio: float) -> np.ndarray:
    k = max(1, round(ratio * len(scores)))
    return np.argsort(-scores, kind="stable")[:k]


def flagged_mask(
    explanation: Explanation, strategy: str, ratio: float, *, threshold: float | None = None
) -> np.ndarray:
    """(H, W) bool pixel mask of the flagged segments."""
    flagged = flagged_segments(explanation.weights, strategy, ratio, threshold=threshold)
    return np.isin(explanation.segments, flagged)
