"""Data sets for limelight: in-memory image splits with [0,1] accessors and a name registry.

Usage: `ds = load_dataset("digits"); x, y = ds.train.tensors()` gives float32
(1437, 1, 8, 8) images in [0,1] and int64 (1437,) labels.
"""

from methods.data._base import DataNotFoundError, Dataset, ImageSplit, split_validation
from methods.data.cifar10c import CIFAR10C_CORRUPTIONS, load_cifar10c
from methods.data.digits import planted_class, shortcut_positions
from methods.data.registry import ANNOTATED_DATASETS, DATASETS, load_dataset

__all__ = [
    "ANNOTATED_DATASETS",
    "CIFAR10C_CORRUPTIONS",
    "DATASETS",
    "DataNotFoundError",
    "Dataset",
    "ImageSplit",
    "load_cifar10c",
    "load_dataset",
    "planted_class",
    "shortcut_positions",
    "split_validation",
]
