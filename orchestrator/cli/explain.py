"""``limelight explain``: LIME over Ray actors into the mask store."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from methods.data import DATASETS
from methods.lime import LimeSettings
from methods.options import ConfigError, option, validate
from orchestrator.config import RunSettings
from orchestrator.flags import add_fields, from_flags

__all__ = ["DESCRIPTION", "ExplainRequest", "add_arguments", "run"]

DESCRIPTION = (
    "Explain images of a split for their true labels with batched LIME, spread over Ray "
    "actors. Results go to the mask store STORAGE/explanations/<key>/ (Parquet), keyed by "
    "data set, split, checkpoint and LIME settings: a second request reads the store, and "
    "an interrupted run continues where it stopped."
)


@dataclass(frozen=True)
class ExplainRequest:
    """What to explain and how the actors run (LIME's own settings: ``LimeSettings``)."""

    checkpoint: Path = option(help="checkpoint file written by limelight train", metavar="C")
    dataset: str | None = option(
        None, help="data set (default: the checkpoint's)", choices=DATASETS
    )
    split: str = option("train", help="split to explain", choices=("train", "test"))
    limit: int | None = option(
        None, help="explain the first N images only (default: all)", low=1, metavar="N"
    )
    cpus_per_actor: float = option(
        1.0, help="CPUs per actor, also its torch threads", low=0.0, open_low=True
    )
    gpus_per_actor: float = option(
        0.0, help="GPU share per actor; 0.25 packs four on a GPU", low=0.0
    )
    chunk: int = option(8, help="images per actor call", low=1)
    png: Path | None = option(
        None, help="write overlays (image, segments, weights) of the first images", metavar="DIR"
    )
    png_count: int = option(8, help="how many overlays --png writes", low=0)

    def __post_init__(self) -> None:
        validate(self)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, ExplainRequest)
    add_fields(
        parser.add_argument_group("LIME"),
        LimeSettings,
        include=("num_samples", "segmentation", "n_segments", "seed", "sampler"),
    )
    add_fields(parser, RunSettings, exclude=("out", "workers", "gpus_per_worker"))


def run(args: argparse.Namespace) -> int:
    from methods.data import load_dataset
    from orchestrator.checkpoints import CheckpointError, check_fits, read_checkpoint
    from orchestrator.explain.actors import connect, explain_split
    from orchestrator.explain.store import MaskStore

    request = from_flags(args, ExplainRequest)
    lime = from_flags(args, LimeSettings)
    settings = from_flags(args, RunSettings)
    try:
        state = read_checkpoint(request.checkpoint)
    except CheckpointError as error:
        raise ConfigError("checkpoint", str(error)) from error
    dataset = load_dataset(
        request.dataset or state["meta"]["dataset"],
        data_dir=settings.data_dir,
        download=settings.download,
    )
    try:
        check_fits(state["meta"], dataset)
    except CheckpointError as error:
        raise ConfigError("checkpoint", f"{request.checkpoint}: {error}") from error
    connect(settings.address)
    report = explain_split(
        str(request.checkpoint),
        dataset,
        split=request.split,
        settings=lime,
        limit=request.limit,
        actors=settings.actors,
        cpus_per_actor=request.cpus_per_actor,
        gpus_per_actor=request.gpus_per_actor,
        chunk=request.chunk,
        storage=settings.storage,
    )
    print(
        f"explained {report.computed} images ({report.reused} already in the store) "
        f"in {report.seconds:.1f}s, {report.images_per_s:.1f} images/s; "
        f"mean surrogate R^2 {report.mean_score:.3f}"
    )
    print(f"mask store: {report.store}")
    if request.png is not None:
        store = MaskStore(settings.storage, report.key)
        written = _write_overlays(request, dataset, store)
        print(
            f"overlays: {len(written)} PNG files in {request.png}; "
            f"tensorboard --logdir {Path(report.store) / '_tensorboard'}"
        )
    return 0


def _write_overlays(request: ExplainRequest, dataset, store) -> list[Path]:
    from torch.utils.tensorboard import SummaryWriter

    from orchestrator.figures.overlays import save_explanation_pngs

    explanations = store.explanations()
    split = dataset.train if request.split == "train" else dataset.test
    first = sorted(explanations)[: request.png_count]
    images = {i: split.tensors(slice(i, i + 1))[0][0].numpy() for i in first}
    with SummaryWriter(str(Path(store.path) / "_tensorboard")) as writer:
        return save_explanation_pngs(images, explanations, request.png, writer=writer)
