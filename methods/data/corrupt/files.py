"""The on-disk format of the generated CIFAR-10-C, and writing it safely.

Layout (what `load_cifar10c` reads): `<out>/CIFAR-10-C/<corruption>.npy`,
(5N, 32, 32, 3) uint8, severity s in rows (s-1)N : sN, and `labels.npy`, the N
test labels tiled five times, uint8. Each severity block is first written to
`CIFAR-10-C/.parts/` (an interrupted run resumes from the finished blocks); the
corruption's file is assembled once all five exist. Every file is written under
a temporary name and renamed, so no half-written file ever carries a final name.
`limelight_corrupt.json` records how each file was made.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from methods.data.cifar10c import SEVERITIES

logger = logging.getLogger(__name__)

PARTS_FOLDER = ".parts"
MANIFEST = "limelight_corrupt.json"


class OutputConflictError(ValueError):
    """An existing output file does not fit this run; the message names it and the fix."""


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """np.save under a temporary name in the same folder, then rename it to `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: leave nothing half-written
        tmp.unlink(missing_ok=True)
        raise


def _rows(path: Path) -> int | None:
    """Row count of an existing .npy file (from its header); None if missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return int(np.load(path, mmap_mode="r").shape[0])
    except (OSError, ValueError, IndexError):
        return None


def _part_path(folder: Path, corruption: str, severity: int, seed: int, n: int) -> Path:
    # seed and N in the name: blocks of another seed or size never mix into one file
    return folder / PARTS_FOLDER / f"{corruption}-s{severity}-seed{seed}-n{n}.npy"


def _conflict(path: Path, found: str, wanted: str) -> OutputConflictError:
    return OutputConflictError(
        f"--out: {path} {found}, this run writes {wanted}; pass --overwrite to replace it, "
        "or choose another --out"
    )


def _complete(folder: Path, corruptions: Sequence[str], tiled: np.ndarray) -> tuple[str, ...]:
    """The corruptions whose file exists with this run's row count.

    Raises:
        OutputConflictError: a file (or labels.npy) that this run would not write as it
            is: another row count, unreadable, or other labels. Checked before any work.
    """
    wanted = f"{len(tiled)} rows ({len(tiled) // len(SEVERITIES)} images x 5 severities)"
    complete = []
    for name in corruptions:
        path = folder / f"{name}.npy"
        if path.exists():
            rows = _rows(path)
            if rows != len(tiled):
                raise _conflict(
                    path, "is unreadable" if rows is None else f"has {rows} rows", wanted
                )
            complete.append(name)
    labels = folder / "labels.npy"
    if labels.exists():
        rows = _rows(labels)
        if rows != len(tiled):
            raise _conflict(labels, "is unreadable" if rows is None else f"has {rows} rows", wanted)
        if not np.array_equal(np.load(labels), tiled):
            raise _conflict(labels, "holds other labels", "this CIFAR-10 test set's labels")
    return tuple(complete)


def _write_manifest(folder: Path, corruption: str, entry: dict) -> None:
    """Record how `<corruption>.npy` was made in `limelight_corrupt.json` (atomically)."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        manifest = {}
    try:
        package = metadata.version("imagecorruptions-imaug")
    except metadata.PackageNotFoundError:
        package = None
    manifest[corruption] = {
        **entry,
        "recipe": "CIFAR-10-C parameters of make_cifar_c.py (hendrycks/robustness)",
        "imagecorruptions_imaug": package,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _assemble(folder: Path, corruption: str, seed: int, n: int) -> tuple[int, ...]:
    """Write `<corruption>.npy` from its five blocks when all are there; then drop them.

    A block missing from `.parts/` is taken from the existing `<corruption>.npy` when
    it has this run's size (an --overwrite of some severities keeps the others).

    Returns:
        The severities still missing (empty when the file was written).
    """
    path = folder / f"{corruption}.npy"
    parts = {s: _part_path(folder, corruption, s, seed, n) for s in SEVERITIES}
    kept = [s for s, p in parts.items() if not p.exists()]
    if kept and _rows(path) != len(SEVERITIES) * n:
        return tuple(kept)
    blocks = []
    for s, part in parts.items():
        if s in kept:  # copied out of the memory map before the file is replaced
            blocks.append(np.array(np.load(path, mmap_mode="r")[(s - 1) * n : s * n]))
        else:
            blocks.append(np.load(part))
    _atomic_save(path, np.concatenate(blocks))
    entry = {"seed": seed, "images": n}
    if kept:
        entry["severities_kept_from_the_previous_file"] = kept
    _write_manifest(folder, corruption, entry)
    for part in parts.values():
        part.unlink(missing_ok=True)
    logger.info("%s: wrote %s", corruption, path)
    return ()
