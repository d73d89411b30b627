"""CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): the CIFAR-10 test set under 15 corruptions.

The published layout is `CIFAR-10-C/<corruption>.npy`, (50000, 32, 32, 3) uint8:
five severities of the 10,000 test images stacked, severity s in rows
(s-1)*10000 : s*10000, and `CIFAR-10-C/labels.npy`, (50000,). One file is
150 MB, so it is memory-mapped and only the requested severity is copied.
limelight cannot download it (it is a 2.9 GB archive on Zenodo).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from methods.data._base import DataNotFoundError, Dataset, ImageSplit, one_line, resolve_data_dir

logger = logging.getLogger(__name__)

CIFAR10C_URL = "https://zenodo.org/records/2535967"
CIFAR10C_FOLDER = "CIFAR-10-C"
SEVERITIES = (1, 2, 3, 4, 5)
CIFAR10C_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)


def _missing(root: Path, what: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"--data-dir: no {what} under {root} (expected {root / CIFAR10C_FOLDER}/<corruption>.npy "
        f"and labels.npy); limelight cannot download CIFAR-10-C: fetch CIFAR-10-C.tar from "
        f"{CIFAR10C_URL} and unpack it into {root}"
    )


def _open(path: Path, root: Path) -> np.ndarray:
    if not path.is_file():
        raise _missing(root, f"CIFAR-10-C file {path.name}")
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {one_line(err)}") from err


def load_cifar10c(
    root: str | Path, corruption: str, severity: int, limit: int | None = None
) -> ImageSplit:
    """The CIFAR-10 test images under one corruption at one severity.

    Args:
        root: folder holding `CIFAR-10-C/` (the same --data-dir as CIFAR-10).
        corruption: one of `CIFAR10C_CORRUPTIONS`.
        severity: 1 (mild) .. 5 (severe).
        limit: keep only the first `limit` images of the severity block.

    Returns:
        ImageSplit with uint8 images (n, 3, H, W) and int64 labels (n,), where
        n = min(limit, N // 5) for a file of N rows (N = 50000 for the real data).
    """
    if corruption not in CIFAR10C_CORRUPTIONS:
        raise ValueError(
            f"unknown corruption {corruption!r}; valid: {', '.join(CIFAR10C_CORRUPTIONS)}"
        )
    if (
        isinstance(severity, bool)
        or not isinstance(severity, int | np.integer)
        or severity not in SEVERITIES
    ):
        raise ValueError(f"severity must be one of 1, 2, 3, 4, 5, got {severity!r}")
    severity = int(severity)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images or None, got {limit}")
    root = Path(root).expanduser().absolute()
    folder = root / CIFAR10C_FOLDER
    image_path, label_path = folder / f"{corruption}.npy", folder / "labels.npy"
    images, labels = _open(image_path, root), _open(label_path, root)

    n = len(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{image_path}: expected (N, H, W, 3) uint8, got {images.dtype} {images.shape}"
        )
    if n == 0 or n % len(SEVERITIES) != 0:
        raise ValueError(f"{image_path}: {n} rows is not 5 severities of equal size")
    if labels.shape != (n,):
        raise ValueError(
            f"{label_path}: shape {labels.shape} does not match the {n} rows of {image_path}"
        )

    block = n // len(SEVERITIES)
    start = (severity - 1) * block
    stop = start + (block if limit is None else min(limit, block))
    # np.array copies just these rows out of the memory map
    x = torch.from_numpy(np.array(images[start:stop])).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.array(labels[start:stop]).astype(np.int64))
    logger.debug(
        "CIFAR-10-C %s severity %d: rows %d:%d of %s", corruption, severity, start, stop, image_path
    )
    return ImageSplit(x, y)


def load_cifar10c_dataset(*, data_dir: str | Path | None = None, download: bool = False) -> Dataset:
    """CIFAR-10 train/test from `data_dir`, with `corruption_root` set for `load_cifar10c`.

    CIFAR-10-C itself is checked for first: it cannot be downloaded, so a
    missing copy fails before a CIFAR-10 download starts.
    """
    from methods.data.torchvision_sets import load_cifar10  # torchvision costs ~1.5 s to import

    root = resolve_data_dir(data_dir)
    if not (root / CIFAR10C_FOLDER).is_dir():
        raise _missing(root, "CIFAR-10-C")
    base = load_cifar10(data_dir=root, download=download)
    return dataclasses.replace(base, name="cifar10c", corruption_root=root)
