"""Explanation overlays: an image, its segments and signed weights as a heat map; LGR's
flagged pixels; saliency maps; LIME weights before and after refinement."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from methods.lime import Explanation

__all__ = [
    "explanation_figure",
    "flags_figure",
    "refinement_figure",
    "saliency_figure",
    "save_explanation_pngs",
]

#: Flagged pixels: translucent red over the image.
FLAG_RGBA = (1.0, 0.1, 0.1, 0.6)


def _show(ax: Axes, image: np.ndarray) -> None:
    """(C, H, W) in [0,1] on an axis, gray for one channel; pixels stay square blocks."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(image.transpose(1, 2, 0).clip(0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _weights_panel(ax: Axes, image: np.ndarray, explanation: Explanation, bound: float):
    """The image under each segment's LIME weight, a diverging map centred on zero
    (red supports the target, blue opposes it) in [-bound, bound]; returns the artist
    for a colour bar."""
    _show(ax, image)
    heat = explanation.weights[explanation.segments]
    return ax.imshow(
        heat, cmap="RdBu_r", vmin=-bound, vmax=bound, alpha=0.75, interpolation="nearest"
    )


def _bound(*explanations: Explanation) -> float:
    """One symmetric colour range for several explanations (1 when all weights are 0)."""
    return max(float(np.abs(e.weights).max()) for e in explanations) or 1.0


def _flags_overlay(ax: Axes, mask: np.ndarray) -> None:
    overlay = np.zeros((*mask.shape, 4))
    overlay[mask.astype(bool)] = FLAG_RGBA
    ax.imshow(overlay, interpolation="nearest")


def explanation_figure(image: np.ndarray, explanation: Explanation, title: str = "") -> Figure:
    """Three panels: the image, its segments, and each segment's LIME weight painted
    on it with a diverging map centred on zero (red supports the target, blue opposes)."""
    from skimage.segmentation import mark_boundaries

    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    _show(axes[0], image)
    axes[0].set_title(f"label {explanation.target}, pred {explanation.predicted}", fontsize=9)
    rgb = image.transpose(1, 2, 0)
    rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb
    # Upscale small images (nearest) so one-pixel boundaries do not cover them.
    scale = max(1, 96 // rgb.shape[0])
    big = np.kron(rgb.clip(0, 1), np.ones((scale, scale, 1)))
    big_segments = np.kron(explanation.segments, np.ones((scale, scale), dtype=int))
    axes[1].imshow(mark_boundaries(big, big_segments, color=(1, 1, 0)))
    axes[1].set_title(f"{explanation.num_segments} segments", fontsize=9)
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    shown = _weights_panel(axes[2], image, explanation, _bound(explanation))
    axes[2].set_title(f"LIME weights (R² {explanation.score:.2f})", fontsize=9)
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_explanation_pngs(
    images: dict[int, np.ndarray],
    explanations: dict[int, Explanation],
    out_dir: str | Path,
    writer=None,
) -> list[Path]:
    """One PNG per image index in ``images`` (and the same figure to TensorBoard when a
    ``SummaryWriter`` is given). Returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, image in images.items():
        fig = explanation_figure(image, explanations[index], title=f"image {index}")
        path = out_dir / f"explanation_{index:06d}.png"
        fig.savefig(path, dpi=100)
        if writer is not None:
            writer.add_figure(f"explanations/image_{index:06d}", fig, global_step=0)
        plt.close(fig)
        written.append(path)
    return written


def saliency_figure(images: np.ndarray, saliency: np.ndarray, title: str = "") -> Figure:
    """Images (N, C, H, W) over their saliency maps (N, H, W), a diverging map per
    image centred on zero (red raises the target logit, blue lowers it)."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 2.8), squeeze=False)
    for i in range(n):
        _show(axes[0, i], images[i])
        bound = float(np.abs(saliency[i]).max()) or 1.0
        axes[1, i].imshow(saliency[i], cmap="RdBu_r", vmin=-bound, vmax=bound)
        axes[1, i].set_xticks([])
        axes[1, i].set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def flags_figure(images: np.ndarray, masks: np.ndarray, title: str = "") -> Figure:
    """Training images (N, C, H, W) with their flagged pixels (N, H, W) painted red:
    what an LGR round penalizes and masks."""
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(1.9 * n, 2.2), squeeze=False)
    for ax, image, mask in zip(axes[0], images, masks, strict=True):
        _show(ax, image)
        _flags_overlay(ax, mask)
        ax.set_title(f"{100 * mask.mean():.0f}% flagged", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def refinement_figure(
    images: np.ndarray,
    labels: Sequence[int],
    before: Sequence[Explanation],
    after: Sequence[Explanation],
    *,
    flags: np.ndarray | None = None,
    flags_title: str = "flagged",
    after_title: str = "after",
    title: str = "",
) -> Figure:
    """One row per image (N, C, H, W): the image, optionally the pixels the first round
    flagged (N, H, W), and the LIME weights of the model before refinement and after it.
    Panel titles stay short (a panel is ~2 inches wide); ``title`` says the rest.

    Both weight panels of a row share one colour range, so a weight that shrinks after
    refinement looks paler; red supports the explained class, blue opposes it.
    """
    n = len(images)
    columns = 4 if flags is not None else 3
    fig = Figure(figsize=(2.3 * columns + 0.6, 2.25 * n + 0.5), layout="constrained")
    axes = fig.subplots(n, columns, squeeze=False)
    for row in range(n):
        ax = iter(axes[row])
        image, first, last = images[row], before[row], after[row]
        panel = next(ax)
        _show(panel, image)
        panel.set_title(
            f"label {labels[row]}, pred {first.predicted} → {last.predicted}", fontsize=9
        )
        if flags is not None:
            panel = next(ax)
            _show(panel, image)
            _flags_overlay(panel, flags[row])
            panel.set_title(f"{flags_title}: {100 * flags[row].mean():.0f}%", fontsize=9)
        bound = _bound(first, last)
        for explanation, name in ((first, "before"), (last, after_title)):
            panel = next(ax)
            shown = _weights_panel(panel, image, explanation, bound)
            panel.set_title(f"{name} (R² {explanation.score:.2f})", fontsize=9)
        fig.colorbar(shown, ax=axes[row, -1], fraction=0.08, pad=0.03, label="LIME weight")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
