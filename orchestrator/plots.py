"""Figures: explanation overlays (image, segments, signed weights as a heat map)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on clusters

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from methods.lime import Explanation

__all__ = ["explanation_figure", "flags_figure", "saliency_figure", "save_explanation_pngs"]


def _show(ax, image: np.ndarray) -> None:
    """(C, H, W) in [0,1] on an axis, gray for one channel."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.transpose(1, 2, 0).clip(0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


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
    heat = explanation.weights[explanation.segments]
    bound = float(np.abs(explanation.weights).max()) or 1.0
    _show(axes[2], image)
    shown = axes[2].imshow(heat, cmap="RdBu_r", vmin=-bound, vmax=bound, alpha=0.75)
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
        overlay = np.zeros((*mask.shape, 4))
        overlay[mask.astype(bool)] = (1.0, 0.1, 0.1, 0.6)
        ax.imshow(overlay)
        ax.set_title(f"{100 * mask.mean():.0f}% flagged", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
