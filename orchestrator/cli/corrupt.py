"""``limelight corrupt``: make CIFAR-10-C from a local CIFAR-10 (flags and printing only).

The generation itself is ``methods.data.corrupt.generate_cifar10c``. Bad input (a
corruption or severity name, a missing CIFAR-10, the missing optional package, an
existing file of another size) is one line on stderr and exit code 2, before any
image is corrupted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from methods.data.cifar10c import CIFAR10C_CORRUPTIONS, CIFAR10C_FOLDER, SEVERITIES
from methods.options import ConfigError, option, validate
from orchestrator.flags import add_fields, flag_name, from_flags

if TYPE_CHECKING:
    import numpy as np

    from methods.data.corrupt import GenerationReport

__all__ = ["DESCRIPTION", "CorruptRequest", "add_arguments", "run"]

DESCRIPTION = (
    "Corrupt the CIFAR-10 test set (DATA_DIR/cifar-10-batches-py) with the 15 CIFAR-10-C "
    "corruptions at severities 1-5, using the parameters of the authors' make_cifar_c.py, "
    f"and write the published layout OUT/{CIFAR10C_FOLDER}/<corruption>.npy (50000 x 32 x "
    "32 x 3 uint8, severity s in rows (s-1)*10000 to s*10000) and labels.npy. OUT defaults "
    "to DATA_DIR, beside CIFAR-10, where limelight evaluate --dataset cifar10c --data-dir "
    "DATA_DIR finds both. Seeded: the same seed gives the same files. Existing files are "
    "kept (an interrupted run resumes) unless --overwrite. Needs the optional package: "
    "pip install 'limelight[corrupt]'."
)


@dataclass(frozen=True)
class CorruptRequest:
    """One generation. ``corruptions`` and ``severities`` also take text ("fog,snow");
    the record keeps them in CIFAR-10-C's order (severities sorted, without repeats) and
    raises ``ConfigError`` naming the field and what is allowed."""

    data_dir: str = option("data", help="folder holding cifar-10-batches-py/", metavar="DIR")
    out: str | None = option(
        None,
        help=f"write DIR/{CIFAR10C_FOLDER}/ (default: --data-dir, where the cifar10c "
        "data set looks for it beside CIFAR-10)",
        metavar="DIR",
    )
    corruptions: tuple[str, ...] = option(
        CIFAR10C_CORRUPTIONS, help="corruptions to make (default: all 15)", metavar="C[,C...]"
    )
    severities: tuple[int, ...] = option(
        SEVERITIES,
        help="severity blocks to compute now, of 1-5 (default: all); a corruption's file "
        "is written once all five exist",
        metavar="S[,S...]",
    )
    limit: int | None = option(
        None,
        help="corrupt only the first N test images (a quick check; default: all 10000)",
        low=1,
        metavar="N",
    )
    seed: int = option(0, help="seed of the corruptions' random draws", low=0)
    workers: int = option(1, help="processes corrupting images", low=1)
    overwrite: bool = option(False, help="recompute and replace existing files")
    download: bool = option(False, help="download CIFAR-10 into --data-dir if missing")

    def __post_init__(self) -> None:
        from methods.data import corrupt

        try:
            corruptions = corrupt.check_corruptions(_names(self.corruptions))
        except ValueError as error:
            raise ConfigError("corruptions", str(error)) from None
        given = _names(self.severities)
        try:
            severities = corrupt.check_severities(
                int(v) if isinstance(v, str) else v for v in given
            )
        except ValueError:
            valid = ",".join(map(str, SEVERITIES))
            text = self.severities
            if not isinstance(text, str):  # a flag's list: as the user typed it
                text = ",".join(map(str, given))
            raise ConfigError(
                "severities", f"expected some of {valid} separated by commas, got {text!r}"
            ) from None
        object.__setattr__(self, "corruptions", corruptions)
        object.__setattr__(self, "severities", severities)
        validate(self)

    @property
    def folder(self) -> str:
        """Where ``CIFAR-10-C/`` is written: ``out``, else ``data_dir``."""
        return self.out if self.out is not None else self.data_dir


def _names(values: str | Sequence[Any]) -> list[Any]:
    if isinstance(values, str):
        return [v for v in values.replace(",", " ").split() if v]
    return list(values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, CorruptRequest)


def run(args: argparse.Namespace) -> int:
    """Run ``limelight corrupt`` for parsed ``args``; bad input raises ``ConfigError``
    (or ``DataNotFoundError``, ``methods.data.corrupt.MissingExtraError``)."""
    from methods.data import corrupt

    request = from_flags(args, CorruptRequest)
    corrupt.require_extra()
    images, labels = corrupt.read_cifar10_test(
        request.data_dir, download=request.download, limit=request.limit
    )
    try:
        report = _generate(request, images, labels)
    except corrupt.OutputConflictError as error:
        # Its message names --out itself: the line stays what it says.
        raise ConfigError("out", str(error).removeprefix(f"{flag_name('out')}: ")) from error
    done = len(report.written) + len(report.skipped)
    print(
        f"{report.folder}: {done} of {len(request.corruptions)} corruptions complete "
        f"({len(report.written)} written, {len(report.skipped)} already there), "
        f"{report.images} images a severity, {report.blocks} blocks computed in "
        f"{report.seconds:.1f}s, seed {request.seed}"
    )
    for corruption, missing in report.pending.items():
        print(
            f"{corruption}: waiting for severities {','.join(map(str, missing))} "
            f"(--severities; the finished ones are kept in {report.folder / '.parts'})"
        )
    return 0


def _generate(request: CorruptRequest, images: np.ndarray, labels: np.ndarray) -> GenerationReport:
    from tqdm.auto import tqdm

    from methods.data import corrupt

    total = len(images) * len(request.severities) * len(request.corruptions)
    with tqdm(total=total, unit="img", desc="corrupt", disable=None) as bar:
        return corrupt.generate_cifar10c(
            images,
            labels,
            request.folder,
            corruptions=request.corruptions,
            severities=request.severities,
            seed=request.seed,
            overwrite=request.overwrite,
            workers=request.workers,
            progress=bar.update,
        )
