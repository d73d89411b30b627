"""Writers of small data files in the published on-disk formats (CIFAR pickles,
MNIST IDX, the CIFAR-10-C .npy layout), so tests load them through the real loaders."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def _cifar_rows(n: int, offset: int) -> np.ndarray:
    """(n, 3072) uint8 rows: 1024 R, then 1024 G, then 1024 B values, each plane row-major."""
    rng = np.random.default_rng(offset)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _pickle(path: Path, obj: dict) -> None:
    # the published files are Python 2 pickles with str keys; torchvision reads
    # them with encoding="latin1", which gives str keys, as a Python 3 pickle does
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, n: int = 4) -> dict[str, np.ndarray]:
    """`cifar-10-batches-py/` with five train batches and a test batch of n images each."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        data = _cifar_rows(n, i)
        labels = [(i + j) % 10 for j in range(n)]
        _pickle(folder / name, {"batch_label": name, "data": data, "labels": labels})
        written[name] = data
    _pickle(folder / "batches.meta", {"label_names": [f"c{k}" for k in range(10)], "num_vis": 3072})
    return written


def write_cifar100(root: Path, n: int = 6) -> dict[str, np.ndarray]:
    """`cifar-100-python/` with train, test and meta."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate(["train", "test"]):
        data = _cifar_rows(n, 10 + i)
        fine = [(17 * j + i) % 100 for j in range(n)]
        entry = {"data": data, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine]}
        _pickle(folder / name, entry)
        written[name] = data
    names = {"fine_label_names": [f"f{k}" for k in range(100)], "coarse_label_names": []}
    _pickle(folder / "meta", names)
    return written


def _idx(path: Path, magic: int, array: np.ndarray) -> None:
    """IDX: big-endian int32 magic, big-endian int32 dims, then the uint8 values."""
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(7)
    written = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        _idx(raw / f"{prefix}-images-idx3-ubyte", 0x00000803, images)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", 0x00000801, labels)
        written[prefix] = images
        written[prefix + "_labels"] = labels
    return written


def write_cifar10c(
    root: Path, n: int = 3, corruption: str = "fog", rows: int | None = None
) -> None:
    """`CIFAR-10-C/<corruption>.npy` with 5 severities of n images; pixel [0,0,0] = 10*s + i."""
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True, exist_ok=True)
    total = 5 * n if rows is None else rows
    images = np.zeros((total, 32, 32, 3), dtype=np.uint8)
    for r in range(total):
        images[r, 0, 0, 0] = 10 * (r // n + 1) + r % n
    np.save(folder / f"{corruption}.npy", images)
    np.save(folder / "labels.npy", (np.arange(total) % n).astype(np.uint8))
