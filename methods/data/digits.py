"""The embedded 8x8 `digits` data set and its planted-shortcut variant `digits_shortcut`.

`digits` is scikit-learn's copy of the UCI handwritten digits (1797 images,
8x8, values 0..16), so a laptop run needs no download. The train/test split is
fixed (stratified, random_state 0) and does not depend on the run's seed: all
runs are scored on the same 360 test images.

`digits_shortcut` plants a 2x2 patch of 1.0 on a border column. In the train
split the patch sits at the label's own position in `train_share` (97%) of the
images, so a model can learn the patch instead of the digit; in the test split
it sits at a random class position (each position equally often within each
class), so following it is wrong about 90% of the time.
`masks` marks the patch and `planted` records which class position it is
(`planted_class(split)`). Shortcut reliance = share of predictions equal to a
wrong-class patch.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch

from methods.data._base import Dataset, ImageSplit, make_dataset

logger = logging.getLogger(__name__)

NUM_CLASSES = 10
TEST_SIZE = 360  # images; leaves 1437 for training
SPLIT_SEED = 0  # the train/test split, shared by every run
TEST_PATCH_SEED = 1_000_003  # the test split's patch positions, shared by every run
SHORTCUT_TRAIN_SHARE = 0.97  # fraction of train images with the label's own patch position
PATCH = 2  # patch side, pixels
DIGITS_EPS = 0.1  # Linf training eps: at 0.3 every method is near 0% on 8x8 digits
DIGITS_EVAL_EPS = (0.05, 0.1, 0.2)

# Top-left (row, col) of each class's patch: even classes on the left border
# (columns 0-1), odd classes on the right (6-7), so classes y and y+1 never
# share a side; rows differ within a side, so all ten positions are distinct
# and a mask identifies its class.
_ROWS = (0, 1, 3, 4, 6)
_POSITIONS: dict[int, tuple[int, int]] = {
    y: (_ROWS[y // 2], 0 if y % 2 == 0 else 8 - PATCH) for y in range(NUM_CLASSES)
}


def shortcut_positions() -> dict[int, tuple[int, int]]:
    """Top-left (row, col) of the 2x2 shortcut patch for each class 0..9 (a fresh copy)."""
    return dict(_POSITIONS)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) as read-only numpy arrays."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    images = (raw.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8), exact k/16
    labels = raw.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED
    )
    arrays = (images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _digits_splits() -> tuple[ImageSplit, ImageSplit]:
    xtr, ytr, xte, yte = _digits_arrays()
    # torch.tensor copies, so callers never share memory with the cache
    train = ImageSplit(torch.tensor(xtr), torch.tensor(ytr))
    test = ImageSplit(torch.tensor(xte), torch.tensor(yte))
    return train, test


def load_digits(*, seed: int = 0) -> Dataset:
    """The 8x8 digits: train (1437, 1, 8, 8) / test (360, 1, 8, 8) float32 in [0,1].

    Args:
        seed: unused; the split is fixed so that all runs share one test set.
    """
    del seed
    train, test = _digits_splits()
    return make_dataset(
        "digits",
        train,
        test,
        num_classes=NUM_CLASSES,
        default_eps=DIGITS_EPS,
        eval_eps=DIGITS_EVAL_EPS,
    )


def _plant(split: ImageSplit, planted: np.ndarray) -> ImageSplit:
    """Copy of `split` with a 2x2 patch of 1.0 at class `planted[i]`'s position in image i."""
    images = split.images.clone()
    masks = torch.zeros(len(split), 1, *images.shape[2:], dtype=torch.bool)
    planted_t = torch.as_tensor(planted)
    for cls, (r, c) in _POSITIONS.items():
        rows = planted_t == cls
        images[rows, :, r : r + PATCH, c : c + PATCH] = 1.0
        masks[rows, :, r : r + PATCH, c : c + PATCH] = True
    return ImageSplit(images, split.labels, masks, planted_t)


def _train_positions(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """The label's own class for round(share * N) images, a random other class for the rest."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    off = rng.choice(n, size=round((1.0 - share) * n), replace=False)
    planted = labels.copy()
    # adding 1..9 mod 10 draws uniformly among the other nine classes
    planted[off] = (labels[off] + rng.integers(1, NUM_CLASSES, size=len(off))) % NUM_CLASSES
    return planted


def _test_positions(labels: np.ndarray) -> np.ndarray:
    """Each class's test images spread evenly over the ten positions, in a fixed random order.

    Balanced rather than i.i.d. so that every (digit, patch) pair is present
    about equally often and the label-coded share is ~10%, not 10% +- 1.6 points.
    """
    rng = np.random.default_rng(TEST_PATCH_SEED)
    planted = np.empty_like(labels)
    for cls in range(NUM_CLASSES):
        rows = np.flatnonzero(labels == cls)
        planted[rows] = rng.permutation((np.arange(len(rows)) + cls) % NUM_CLASSES)
    return planted


def load_digits_shortcut(*, seed: int = 0, train_share: float = SHORTCUT_TRAIN_SHARE) -> Dataset:
    """`digits` with a planted 2x2 shortcut patch; `masks` marks it in both splits.

    Args:
        seed: draws which train images carry a wrong-class patch and which class.
            The test split's patches do not depend on it.
        train_share: fraction in [0, 1] of train images whose patch is at the
            label's own position; the rest get a uniformly drawn other class's
            position. 0.1 is the random-position control (uniform over all ten).
    """
    if not 0.0 <= train_share <= 1.0:
        raise ValueError(f"train_share must be a fraction in [0, 1], got {train_share}")
    train, test = _digits_splits()
    planted_train = _train_positions(train.labels.numpy(), train_share, seed)
    planted_test = _test_positions(test.labels.numpy())
    logger.debug(
        "digits_shortcut: %.3f of train patches label-coded (seed %d)",
        float((planted_train == train.labels.numpy()).mean()),
        seed,
    )
    return make_dataset(
        "digits_shortcut",
        _plant(train, planted_train),
        _plant(test, planted_test),
        num_classes=NUM_CLASSES,
        default_eps=DIGITS_EPS,
        eval_eps=DIGITS_EVAL_EPS,
    )


def planted_class(split: ImageSplit) -> torch.Tensor:
    """Which class each image's planted spurious feature codes for, int64 (N,).

    The split's own record where it has one (`split.planted`: digits_shortcut's patch
    position, mnist5k_decoy's swatch shade; a copy). A split rebuilt from images,
    labels and masks alone is decoded as digits_shortcut's: the first marked pixel in
    row-major order is the patch's top-left corner. Shortcut reliance on the test split
    is `((pred == planted) & (planted != labels)).sum() / (planted != labels).sum()`.
    """
    if split.planted is not None:
        return split.planted.clone()
    if split.masks is None:
        raise ValueError(
            "planted_class needs a split with masks and a planted class "
            "(a digits_shortcut or mnist5k_decoy split)"
        )
    flat = split.masks.flatten(1)
    width = split.masks.shape[-1]
    first = flat.to(torch.uint8).argmax(dim=1)  # argmax returns the first maximum
    lookup = torch.full((flat.shape[1],), -1, dtype=torch.int64)
    for cls, (r, c) in _POSITIONS.items():
        lookup[r * width + c] = cls
    planted = lookup[first]
    if bool((planted < 0).any()) or not bool(flat.any(dim=1).all()):
        raise ValueError("a mask is not one of the shortcut_positions() patches")
    return planted
