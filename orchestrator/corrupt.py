"""`limelight corrupt`: make CIFAR-10-C from a local CIFAR-10 (argparse and printing only).

The generation itself is `methods.data.corrupt.generate_cifar10c`. Bad input (a
corruption or severity name, a missing CIFAR-10, the missing optional package, an
existing file of another size) is one line on stderr and exit code 2, before any
image is corrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from methods.data._base import DataNotFoundError
from methods.data.cifar10c import CIFAR10C_CORRUPTIONS, CIFAR10C_FOLDER, SEVERITIES
from methods.options import ConfigError
from orchestrator.flags import flag_name

if TYPE_CHECKING:
    import numpy as np

    from methods.data.corrupt import GenerationReport

__all__ = ["add_corrupt_parser", "corrupt_command"]

EXIT_OK, EXIT_USAGE = 0, 2
PROG = "limelight corrupt"


def add_corrupt_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the `corrupt` verb to `limelight`'s sub-parsers (its handler: `corrupt_command`)."""
    corrupt = verbs.add_parser(
        "corrupt",
        help="make CIFAR-10-C (15 corruptions x 5 severities) from a local CIFAR-10",
        description="Corrupt the CIFAR-10 test set (DATA_DIR/cifar-10-batches-py) with the "
        "15 CIFAR-10-C corruptions at severities 1-5, using the parameters of the "
        "authors' make_cifar_c.py, and write the published layout "
        f"OUT/{CIFAR10C_FOLDER}/<corruption>.npy (50000 x 32 x 32 x 3 uint8, severity s "
        "in rows (s-1)*10000 to s*10000) and labels.npy. OUT defaults to DATA_DIR, beside "
        "CIFAR-10, where limelight evaluate --dataset cifar10c --data-dir DATA_DIR finds "
        "both. Seeded: the same seed gives the "
        "same files. Existing files are kept (an interrupted run resumes) unless "
        "--overwrite. Needs the optional package: pip install 'limelight[corrupt]'.",
    )
    corrupt.add_argument(
        "--data-dir",
        default="data",
        metavar="DIR",
        help="folder holding cifar-10-batches-py/ (default: data)",
    )
    corrupt.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help=f"write DIR/{CIFAR10C_FOLDER}/ (default: --data-dir, where the cifar10c "
        "data set looks for it beside CIFAR-10)",
    )
    corrupt.add_argument(
        "--corruptions",
        default=",".join(CIFAR10C_CORRUPTIONS),
        metavar="C[,C...]",
        help="corruptions to make (default: all 15)",
    )
    corrupt.add_argument(
        "--severities",
        default=",".join(map(str, SEVERITIES)),
        metavar="S[,S...]",
        help="severity blocks to compute now, of 1-5 (default: all); a corruption's file "
        "is written once all five exist",
    )
    corrupt.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="corrupt only the first N test images (a quick check; default: all 10000)",
    )
    corrupt.add_argument(
        "--seed", type=int, default=0, help="seed of the corruptions' random draws (default: 0)"
    )
    corrupt.add_argument(
        "--workers", type=int, default=1, help="processes corrupting images (default: 1)"
    )
    corrupt.add_argument(
        "--overwrite", action="store_true", help="recompute and replace existing files"
    )
    corrupt.add_argument(
        "--download", action="store_true", help="download CIFAR-10 into --data-dir if missing"
    )
    corrupt.add_argument("-v", "--verbose", action="store_true", help="log every block")
    corrupt.set_defaults(handler=corrupt_command)


def _names(text: str) -> list[str]:
    return [v for v in text.replace(",", " ").split() if v]


def _checked(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The corruptions and severities, or ConfigError naming the flag and the valid values."""
    from methods.data.corrupt import check_corruptions, check_severities

    try:
        corruptions = check_corruptions(_names(args.corruptions))
    except ValueError as error:
        raise ConfigError("corruptions", str(error)) from None
    try:
        severities = check_severities(int(v) for v in _names(args.severities))
    except ValueError:
        raise ConfigError(
            "severities", f"expected some of 1,2,3,4,5 separated by commas, got {args.severities!r}"
        ) from None
    for field in ("limit", "workers"):
        value = getattr(args, field)
        if value is not None and value < 1:
            raise ConfigError(field, f"must be >= 1, got {value}")
    if args.seed < 0:
        raise ConfigError("seed", f"must be >= 0, got {args.seed}")
    return corruptions, severities


def corrupt_command(args: argparse.Namespace) -> int:
    """Run `limelight corrupt` for parsed `args`; returns the exit code (0, or 2 on bad input)."""
    from methods.data import corrupt

    try:
        corruptions, severities = _checked(args)
        corrupt.require_extra()
        images, labels = corrupt.read_cifar10_test(
            args.data_dir, download=args.download, limit=args.limit
        )
        report = _generate(args, images, labels, corruptions, severities)
    except ConfigError as error:
        return _usage(f"{flag_name(error.field)}: {error.message}")
    except (DataNotFoundError, corrupt.MissingExtraError, corrupt.OutputConflictError) as error:
        return _usage(str(error))
    done = len(report.written) + len(report.skipped)
    print(
        f"{report.folder}: {done} of {len(corruptions)} corruptions complete "
        f"({len(report.written)} written, {len(report.skipped)} already there), "
        f"{report.images} images a severity, {report.blocks} blocks computed in "
        f"{report.seconds:.1f}s, seed {args.seed}"
    )
    for corruption, missing in report.pending.items():
        print(
            f"{corruption}: waiting for severities {','.join(map(str, missing))} "
            f"(--severities; the finished ones are kept in {report.folder / '.parts'})"
        )
    return EXIT_OK


def _generate(
    args: argparse.Namespace,
    images: np.ndarray,
    labels: np.ndarray,
    corruptions: tuple[str, ...],
    severities: tuple[int, ...],
) -> GenerationReport:
    from tqdm.auto import tqdm

    from methods.data.corrupt import generate_cifar10c

    total = len(images) * len(severities) * len(corruptions)
    with tqdm(total=total, unit="img", desc="corrupt", disable=None) as bar:
        return generate_cifar10c(
            images,
            labels,
            args.out if args.out is not None else args.data_dir,
            corruptions=corruptions,
            severities=severities,
            seed=args.seed,
            overwrite=args.overwrite,
            workers=args.workers,
            progress=bar.update,
        )


def _usage(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE
