"""Shortcut metrics on a data set with a planted spurious feature (`digits_shortcut`'s
patch, `mnist5k_decoy`'s swatch): how often a model follows it, and how well a set of
flagged pixels finds it.

The test splits of those data sets already hold the images these need: the feature
codes a class drawn independently of the label (`digits_shortcut`: each class's test
images carry the patch at every class position about equally often; `mnist5k_decoy`:
the swatch's shade is a uniformly drawn class's), so ~90% of them carry a WRONG
class's feature. A model that reads the digit predicts the label there; a model that
reads the feature predicts the planted class. Nothing here depends on how the class is
coded (a position, a shade): `planted` is the data set's record of it
(`methods.data.planted_class(split)`).

- `follow_rate`: on the test images whose feature codes a wrong class (planted !=
  label), the share of predictions equal to the planted class. A model blind to the
  feature follows it only when its error happens to land on that class (about 1/9 of
  its error rate on those images); one that reads only the feature, ~1.
- `flag_precision_recall`: pixel-level precision and recall of flagged pixels (LGR's
  masks) against the true feature's masks, micro-averaged over images.

    from methods.data import load_dataset, planted_class
    test = load_dataset("digits_shortcut").test
    images, labels = test.tensors()
    rate = follow_rate(model, images, labels, planted_class(test))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from methods.attacks import model_mode

__all__ = [
    "ShortcutScores",
    "flag_precision_recall",
    "follow_rate",
    "follow_share",
    "predict",
    "shortcut_scores",
]

#: Images per forward pass: 8x8 or 28x28 inputs, so memory is never the limit.
BATCH_SIZE = 512


@dataclass(frozen=True)
class ShortcutScores:
    """A model on a planted-patch split: fractions in [0, 1]."""

    accuracy: float  # on every image of the split
    follow_rate: float  # on the images whose patch is at a wrong class's position
    wrong_patch_images: int  # how many images the follow rate is over


def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = BATCH_SIZE,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The model's predicted classes, int64 (N,) on the CPU, in eval mode (restored after).

    Args:
        images: (N, C, H, W) float in [0, 1] (normalization is the model's job).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    device = torch.device(device)
    out = []
    with model_mode(model, "eval"), torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device)
            out.append(model(batch).argmax(dim=1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)


def follow_share(predicted: torch.Tensor, labels: torch.Tensor, planted: torch.Tensor) -> float:
    """Among images with planted != label, the share with predicted == planted.

    Raises:
        ValueError: shapes differ, or no image carries a wrong class's patch (the rate
            is then undefined, not 0).
    """
    if not predicted.shape == labels.shape == planted.shape or predicted.dim() != 1:
        raise ValueError(
            "predicted, labels and planted must be (N,) each, got "
            f"{tuple(predicted.shape)}, {tuple(labels.shape)}, {tuple(planted.shape)}"
        )
    wrong = planted != labels
    if not bool(wrong.any()):
        raise ValueError(
            "no image carries a wrong class's patch (planted == labels everywhere): "
            "the follow rate needs images with planted != label, e.g. the test split of "
            "digits_shortcut or mnist5k_decoy"
        )
    return (predicted[wrong] == planted[wrong]).double().mean().item()


def follow_rate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    planted: torch.Tensor,
    *,
    batch_size: int = BATCH_SIZE,
    device: torch.device | str = "cpu",
) -> float:
    """Shortcut reliance: on images whose planted feature codes a wrong class
    (``planted != labels``), the share of predictions equal to the planted class.

    Args:
        images: (N, C, H, W) float in [0, 1], each carrying one planted feature (a
            digits_shortcut patch, an mnist5k_decoy swatch).
        labels: (N,) true classes.
        planted: (N,) the class each image's feature codes for
            (``methods.data.planted_class(split)``).

    Returns:
        A fraction in [0, 1]. Raises ``ValueError`` when no image has planted != label.
    """
    predicted = predict(model, images, batch_size=batch_size, device=device)
    return follow_share(predicted, labels.cpu(), planted.cpu())


def shortcut_scores(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    planted: torch.Tensor,
    *,
    batch_size: int = BATCH_SIZE,
    device: torch.device | str = "cpu",
) -> ShortcutScores:
    """Accuracy on all images and the follow rate, from one pass of predictions."""
    predicted = predict(model, images, batch_size=batch_size, device=device)
    labels, planted = labels.cpu(), planted.cpu()
    return ShortcutScores(
        accuracy=(predicted == labels).double().mean().item(),
        follow_rate=follow_share(predicted, labels, planted),
        wrong_patch_images=int((planted != labels).sum()),
    )


def flag_precision_recall(
    flag_masks: torch.Tensor, true_masks: torch.Tensor
) -> tuple[float | None, float | None]:
    """Pixel-level (precision, recall) of flagged pixels against the true masks.

    Micro-averaged: the pixel counts are summed over all images before dividing, so
    precision = |flagged & true| / |flagged| and recall = |flagged & true| / |true|,
    over every pixel of every image (an image that flags nothing adds to neither
    numerator nor the precision's denominator, but its true pixels count as missed).

    Empty cases: precision is None when no pixel is flagged anywhere (no claim was
    made, so there is nothing to be precise about); recall is None when no pixel is
    true anywhere. Neither is ever NaN.

    Args:
        flag_masks, true_masks: bool (or 0/1) tensors of the same shape, e.g.
            (N, 1, H, W).
    """
    if flag_masks.shape != true_masks.shape:
        raise ValueError(
            f"flag_masks {tuple(flag_masks.shape)} and true_masks {tuple(true_masks.shape)} "
            "must have the same shape"
        )
    flagged, true = flag_masks.bool(), true_masks.bool()
    hits = int((flagged & true).sum())
    n_flagged, n_true = int(flagged.sum()), int(true.sum())
    precision = hits / n_flagged if n_flagged else None
    recall = hits / n_true if n_true else None
    return precision, recall
