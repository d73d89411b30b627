"""The driver: `generate_cifar10c` computes the requested severity blocks (in a pool of
processes when asked), writes them in the layout of `methods.data.corrupt.files`, and
returns a `GenerationReport`; `read_cifar10_test` reads the images it corrupts."""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from methods.data._base import DataNotFoundError, resolve_data_dir
from methods.data.cifar10c import CIFAR10C_CORRUPTIONS, CIFAR10C_FOLDER, SEVERITIES
from methods.data.corrupt.checks import check_corruptions, check_severities
from methods.data.corrupt.extra import require_extra
from methods.data.corrupt.files import (
    PARTS_FOLDER,
    _assemble,
    _atomic_save,
    _complete,
    _part_path,
    _rows,
)
from methods.data.corrupt.recipes import DEFAULT_SEED, corrupt_images

logger = logging.getLogger(__name__)

CHUNK = 250  # images per task of a worker pool and per progress update (~0.25 s of work)


def read_cifar10_test(
    data_dir: str | Path | None, *, download: bool = False, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-10 test images (N, 32, 32, 3) uint8 RGB and labels (N,) int64.

    Reads `<data_dir>/cifar-10-batches-py` with the same reader (and the same one-line
    `DataNotFoundError`s) as the `cifar10` data set; `limit` keeps the first N.
    """
    from methods.data.torchvision_sets import _CIFAR10, _read  # torchvision: ~1.5 s

    root = resolve_data_dir(data_dir)
    expected = root / _CIFAR10.base_folder
    if not download and not expected.is_dir():
        raise DataNotFoundError(
            f"--data-dir: no CIFAR-10 under {root} (expected {expected}); fetch it with: "
            f"limelight corrupt --data-dir {shlex.quote(str(root))} --download"
        )
    _, test = _read(_CIFAR10, "cifar10", "CIFAR-10", _CIFAR10.base_folder, root, download)
    images = np.ascontiguousarray(test.data[:limit])
    labels = np.asarray(test.targets[:limit], dtype=np.int64)
    return images, labels


@dataclass(frozen=True)
class GenerationReport:
    """What `generate_cifar10c` did.

    Attributes:
        folder: the CIFAR-10-C folder written.
        written: corruptions whose `<corruption>.npy` this call wrote.
        skipped: corruptions whose complete file already existed (kept: no overwrite).
        pending: corruption -> its severities still missing; the finished blocks wait
            in `.parts/`, and a run with the missing severities completes the file.
        images: test images per severity block (N).
        blocks: (corruption, severity) blocks computed by this call.
        seconds: wall time of the call.
    """

    folder: Path
    written: tuple[str, ...]
    skipped: tuple[str, ...]
    pending: dict[str, tuple[int, ...]]
    images: int
    blocks: int
    seconds: float


def _block(
    images: np.ndarray,
    corruption: str,
    severity: int,
    seed: int,
    chunk: int,
    pool: ProcessPoolExecutor | None,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """One severity block, `chunk` images at a time (in the pool when given)."""
    starts = range(0, len(images), chunk)
    if pool is None:
        chunks: Iterable[np.ndarray] = (
            corrupt_images(images[s : s + chunk], corruption, severity, seed=seed, start=s)
            for s in starts
        )
    else:
        futures = [
            pool.submit(
                corrupt_images, images[s : s + chunk], corruption, severity, seed=seed, start=s
            )
            for s in starts
        ]
        chunks = (f.result() for f in futures)
    out = []
    for done in chunks:
        out.append(done)
        if progress is not None:
            progress(len(done))
    return np.concatenate(out)


def _pool(workers: int) -> ProcessPoolExecutor | None:
    if workers == 1:
        return None
    import multiprocessing

    # spawn, not fork: the parent may hold torch or OpenCV threads, which fork does not copy
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def generate_cifar10c(
    images: np.ndarray,
    labels: np.ndarray,
    out: str | Path,
    *,
    corruptions: Sequence[str] = CIFAR10C_CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    seed: int = DEFAULT_SEED,
    overwrite: bool = False,
    workers: int = 1,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> GenerationReport:
    """Write CIFAR-10-C for `images` under `<out>/CIFAR-10-C/` (layout: `corrupt.files`).

    Args:
        images: (N, 32, 32, 3) uint8 RGB test images; labels: (N,) their classes.
        out: the folder to hold `CIFAR-10-C/` (a `--data-dir` for `load_cifar10c`).
        corruptions: which of `CIFAR10C_CORRUPTIONS` to make (default all 15).
        severities: which severity blocks to compute now (default 1..5); a corruption's
            file is written once all five blocks exist.
        seed: the generation's seed (default 0).
        overwrite: recompute the requested blocks and replace existing files; without
            it a complete file is skipped and a finished block in `.parts/` reused.
        workers: processes corrupting chunks of images (1: this process).
        chunk: images per chunk (a task of the pool, a step of the progress).
        progress: called with the number of images just corrupted.

    Raises:
        ValueError: bad names or arguments. MissingExtraError: imagecorruptions-imaug
            missing. OutputConflictError: an existing file this run would not write as it
            is (no overwrite); raised before any work.
    """
    corruptions = check_corruptions(corruptions)
    severities = check_severities(severities)
    if workers < 1 or chunk < 1:
        raise ValueError(f"workers and chunk must be >= 1, got {workers} and {chunk}")
    n = len(images)
    if n == 0 or labels.shape != (n,):
        raise ValueError(f"need N >= 1 images and N labels, got {images.shape}, {labels.shape}")
    require_extra()
    started = time.perf_counter()
    folder = Path(out).expanduser().absolute() / CIFAR10C_FOLDER
    tiled = np.tile(labels, len(SEVERITIES)).astype(np.uint8)  # the published dtype
    skipped = () if overwrite else _complete(folder, corruptions, tiled)
    (folder / PARTS_FOLDER).mkdir(parents=True, exist_ok=True)
    label_path = folder / "labels.npy"
    if overwrite or not label_path.exists():
        _atomic_save(label_path, tiled)

    written, pending, blocks = [], {}, 0
    pool = _pool(workers)
    try:
        for corruption in corruptions:
            if corruption in skipped:
                logger.info("%s: %s exists, skipped", corruption, folder / f"{corruption}.npy")
                if progress is not None:
                    progress(n * len(severities))
                continue
            for severity in severities:
                part = _part_path(folder, corruption, severity, seed, n)
                if not overwrite and _rows(part) == n:
                    logger.info("%s severity %d: reusing %s", corruption, severity, part)
                    if progress is not None:
                        progress(n)
                    continue
                tick = time.perf_counter()
                block = _block(images, corruption, severity, seed, chunk, pool, progress)
                _atomic_save(part, block)
                blocks += 1
                logger.info(
                    "%s severity %d: %d images in %.1fs",
                    corruption, severity, n, time.perf_counter() - tick,
                )  # fmt: skip
            missing = _assemble(folder, corruption, seed, n)
            if missing:
                pending[corruption] = missing
            else:
                written.append(corruption)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if not any((folder / PARTS_FOLDER).iterdir()):
        (folder / PARTS_FOLDER).rmdir()
    return GenerationReport(
        folder=folder,
        written=tuple(written),
        skipped=tuple(skipped),
        pending=pending,
        images=n,
        blocks=blocks,
        seconds=time.perf_counter() - started,
    )
