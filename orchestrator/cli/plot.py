"""``limelight plot KIND``: figures from a results root's leaderboard (robust curves,
Pareto front, faithfulness) or from an LGR run directory (explanations before and after
refinement), as PNG files and optionally in a TensorBoard event file.

Every input is checked before anything is drawn; a bad one is a ``ConfigError`` naming
the flag and what is allowed (``limelight`` exits 2 with that one line).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from methods.options import ConfigError, option, validate
from orchestrator.figures.results import (
    LEADERBOARD_KINDS,
    PARETO_METRICS,
    figure_plan,
    save_figure,
    save_figures,
)
from orchestrator.figures.tables import DEFAULT_GROUP, ok_rows
from orchestrator.flags import add_fields, from_flags
from orchestrator.leaderboard import FOLDER, SCHEMA, query, read_leaderboard
from orchestrator.storage import DEFAULT_STORAGE, STORAGE_ENV, default_root, is_uri

__all__ = [
    "DESCRIPTION",
    "EPILOG",
    "FORMATTER",
    "KINDS",
    "PlotRequest",
    "add_arguments",
    "run",
]

log = logging.getLogger(__name__)

KINDS = (*LEADERBOARD_KINDS, "explanations", "all")
#: What each kind needs in the leaderboard, for the error when no row has it.
_NEEDS = {
    "curves": "a robust_curve",
    "pareto": "clean_acc and the --metric column",
    "faithfulness": "a faithfulness_curve",
}
#: Flags only ``explanations`` (and ``all``) read; None when not given.
_RUN_FLAGS = ("run", "images", "num_samples", "data_dir")
DESCRIPTION = """\
Draw figures as PNG files (and, with --tensorboard, as images in a TensorBoard event file).

KIND is one of:
  curves        accuracy (%) against eps, one panel per attack (fgsm, pgd, ..., worst =
                per-example worst case), one line per method: the mean over its runs
                (seeds) with a band of +- 1 std; eps 0 is the clean accuracy. One figure
                per data set.
  pareto        clean accuracy against robust accuracy at the rows' eval_eps (or
                --metric), one point per configuration (mean over its seeds), coloured
                by method; the non-dominated configurations joined by a step line.
  faithfulness  masked accuracy against the share of input features replaced, most
                salient first (solid) and in a random order (dashed), per method.
  explanations  LIME weights on a few training images of an LGR run (--run DIR): the
                model before refinement and after the last round, side by side, with the
                pixels round 1 flagged. Explains both checkpoints again with the run's
                LIME settings (docs/plots.md says why).
  all           every leaderboard figure the rows support, and explanations with --run.

Rows whose status is not ok (stopped, error) are left out; the legend counts them.
"""
EPILOG = """\
examples:
  limelight plot curves --sweep demo
  limelight plot pareto --where "dataset == 'digits'" --metric pgd_acc
  limelight plot all --sweep demo --tensorboard   # then: tensorboard --logdir results/plots/demo
  limelight plot explanations --run results/train/digits_shortcut-lgr-seed0
"""


FORMATTER = argparse.RawDescriptionHelpFormatter


@dataclass(frozen=True)
class PlotRequest:
    """What to draw, from which rows or run, and where to (the flags of
    ``limelight plot``). None means not given: a flag KIND does not use is refused."""

    kind: str = option(
        help=f"one of {', '.join(KINDS)} (see above)",
        choices=KINDS,
        positional=True,
        metavar="KIND",
    )
    storage: str | None = option(
        None,
        help=f"results root holding leaderboard/ (default: ${STORAGE_ENV}, else {DEFAULT_STORAGE})",
        metavar="ROOT",
    )
    sweep: str | None = option(None, help="only this sweep's rows", metavar="NAME")
    where: str | None = option(
        None,
        help="pandas query filter, as in limelight leaderboard, e.g. "
        "\"dataset == 'digits' and epochs >= 10\"",
        metavar="EXPR",
    )
    group_by: tuple[str, ...] | None = option(
        None,
        help=f"columns that make one line (mean over its rows) or one colour "
        f"(default: {','.join(DEFAULT_GROUP)}; e.g. method,mask_ratio or config_id)",
        metavar="A,B",
    )
    metric: str | None = option(
        None,
        help=f"pareto's y axis: one of {', '.join(PARETO_METRICS)} (default: robust_acc)",
        choices=tuple(PARETO_METRICS),
        metavar="COL",
    )
    out: Path | None = option(
        None, help="folder for the PNG files (default: ROOT/plots/<sweep, or all>)", metavar="DIR"
    )
    tensorboard: bool = option(False, help="also write the figures as images to OUT/tensorboard")
    run: Path | None = option(
        None,
        help="run directory of limelight train --method lgr (ROOT/OUT) or of an LGR "
        "sweep trial (ROOT/NAME/runs/<trial>)",
        metavar="DIR",
    )
    images: int | None = option(None, help="training images (default: 4)", low=1, metavar="N")
    num_samples: int | None = option(
        None,
        help="LIME perturbations per image (default: the run's lime_samples; checked by "
        "LimeSettings)",
        metavar="N",
    )
    data_dir: str | None = option(
        None, help="where mnist/cifar10/cifar100 live (default: ./data)", metavar="DIR"
    )

    def __post_init__(self) -> None:
        validate(self)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, PlotRequest, include=("kind",))
    add_fields(
        parser.add_argument_group("which rows (leaderboard figures)"),
        PlotRequest,
        include=("storage", "sweep", "where", "group_by", "metric"),
    )
    add_fields(parser.add_argument_group("output"), PlotRequest, include=("out", "tensorboard"))
    add_fields(
        parser.add_argument_group("explanations (an LGR run directory)"),
        PlotRequest,
        include=_RUN_FLAGS,
    )


@dataclass
class _Plan:
    """Everything checked, nothing drawn yet."""

    out: Path
    frame: pd.DataFrame | None = None
    kinds: tuple[str, ...] = ()
    group_by: tuple[str, ...] = DEFAULT_GROUP
    metric: str = "robust_acc"
    run: Any = None  # figures.runs.LgrRun
    dataset: Any = None  # methods.data.Dataset of the run
    images: int = 4
    num_samples: int | None = None
    notes: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    """Check every input, then draw; prints the files written."""
    request = from_flags(args, PlotRequest)
    plan = _plan(request)
    for note in plan.notes:
        print(note)
    writer = None
    if request.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(plan.out / "tensorboard"))
    try:
        written = _draw(plan, writer)
    finally:
        if writer is not None:
            writer.close()
    for path in written:
        print(path)
    if writer is not None:
        print(f"tensorboard --logdir {plan.out / 'tensorboard'}")
    return 0


def _draw(plan: _Plan, writer) -> list[Path]:
    written = []
    if plan.kinds:
        written += save_figures(
            plan.frame,
            plan.out,
            kinds=plan.kinds,
            group_by=plan.group_by,
            metric=plan.metric,
            writer=writer,
        )
    if plan.run is not None:
        from orchestrator.figures.runs import explain_refinement, refinement_plot

        refinement = explain_refinement(
            plan.run, plan.dataset, count=plan.images, num_samples=plan.num_samples
        )
        name = plan.run.path.resolve().name
        figure = refinement_plot(plan.run, refinement)
        path = plan.out / f"explanations_{name}.png"
        written.append(save_figure(figure, path, writer=writer, tag=f"explanations/{name}"))
    return written


# ----------------------------------------------------------------------------- checks


def _plan(request: PlotRequest) -> _Plan:
    uses_run = request.kind in ("explanations", "all")
    uses_rows = request.kind != "explanations"
    _refuse_unused(request, uses_run, uses_rows)
    root = default_root(request.storage)
    plan = _Plan(out=_out_dir(request, root))
    if uses_rows:
        plan.frame = _rows(request, root)
        plan.group_by = _group_by(request.group_by, plan.frame)
        plan.metric = request.metric or "robust_acc"
        plan.kinds = _kinds(request.kind, plan)
        left_out = ok_rows(plan.frame)[1]
        if left_out:
            counts = ", ".join(f"{n} {status}" for status, n in left_out.items())
            plan.notes.append(f"left out {sum(left_out.values())} rows not ok ({counts})")
    if request.kind == "explanations" and request.run is None:
        raise ConfigError(
            "run",
            "explanations needs an LGR run directory (ROOT/OUT of limelight train "
            "--method lgr, or ROOT/NAME/runs/<trial> of an LGR sweep)",
        )
    if request.run is not None:
        _check_run(request, plan)
    if not plan.kinds and plan.run is None:  # all: nothing in the rows to draw
        raise ConfigError(
            _selector(request),
            f"{root}/{FOLDER}: no ok row has a robust_curve, clean_acc with "
            f"{plan.metric} or a faithfulness_curve; nothing to plot",
        )
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError("out", f"cannot create {plan.out}: {error.strerror}") from error
    return plan


def _refuse_unused(request: PlotRequest, uses_run: bool, uses_rows: bool) -> None:
    """A flag the chosen KIND would ignore is an error, not a surprise."""
    unused = []
    if not uses_run:
        unused += [(name, "explanations and all") for name in _RUN_FLAGS]
    if not uses_rows:
        unused += [(name, "the leaderboard kinds") for name in ("sweep", "where", "group_by")]
    if request.kind not in ("pareto", "all"):
        unused.append(("metric", "pareto and all"))
    for name, users in unused:
        if getattr(request, name) is not None:
            raise ConfigError(name, f"KIND {request.kind} does not use it (only {users})")


def _selector(request: PlotRequest) -> str:
    """The flag that chose the rows: the one to change when they have nothing to draw."""
    if request.where:
        return "where"
    return "sweep" if request.sweep is not None else "storage"


def _out_dir(request: PlotRequest, root: str) -> Path:
    if request.out is not None:
        return request.out
    if is_uri(root):
        raise ConfigError(
            "out", f"the results root {root} is a URI; give a local --out DIR for the PNG files"
        )
    return Path(root) / "plots" / (request.sweep or "all")


def _rows(request: PlotRequest, root: str) -> pd.DataFrame:
    """The leaderboard rows the flags select (any status: the figures count the others)."""
    where = f"{str(root).rstrip('/')}/{FOLDER}"
    try:
        frame = read_leaderboard(root)
    except (OSError, ValueError) as error:  # pyarrow: unknown URI scheme, bucket, network
        raise ConfigError("storage", f"cannot read {where}: {_one_line(error)}") from error
    if frame.empty:
        raise ConfigError(
            "storage",
            f"no leaderboard rows under {where} (run limelight sweep first, or "
            "give --storage ROOT)",
        )
    if request.sweep is not None:
        present = sorted(str(s) for s in frame["sweep"].unique())
        if request.sweep not in present:
            raise ConfigError(
                "sweep",
                f"no rows for {request.sweep!r} under {where}; sweeps present: "
                f"{', '.join(present)}",
            )
        frame = frame[frame["sweep"] == request.sweep]
    if request.where:
        frame = query(frame, where=request.where)  # a bad expression: ConfigError("where")
        if frame.empty:
            raise ConfigError("where", f"no rows match {request.where!r}")
    ok, left_out = ok_rows(frame)
    if ok.empty:
        statuses = ", ".join(f"{n} {s}" for s, n in left_out.items())
        raise ConfigError(
            _selector(request),
            f"{where}: none of the {len(frame)} selected rows is ok ({statuses})",
        )
    return frame


def _group_by(names: tuple[str, ...] | None, frame: pd.DataFrame) -> tuple[str, ...]:
    if names is None:
        return DEFAULT_GROUP
    lists = {f.name for f in SCHEMA if str(f.type).startswith("list")} | {"config"}
    valid = [c for c in frame.columns if c not in lists]
    unknown = [name for name in names if name not in valid]
    if not names or unknown:
        shown = ", ".join(map(repr, unknown)) if unknown else repr(",".join(names))
        raise ConfigError("group_by", f"unknown column {shown}; valid: {', '.join(valid)}")
    return names


def _kinds(kind: str, plan: _Plan) -> tuple[str, ...]:
    """The leaderboard kinds to draw; a kind asked by name must have data."""
    if kind == "explanations":
        return ()
    asked = LEADERBOARD_KINDS if kind == "all" else (kind,)
    kinds = []
    for name in asked:
        if figure_plan(plan.frame, [name], group_by=plan.group_by, metric=plan.metric):
            kinds.append(name)
        elif kind == "all":
            plan.notes.append(f"{name}: skipped, no ok row has {_NEEDS[name]}")
        else:
            raise ConfigError("KIND", f"{name}: no selected ok row has {_NEEDS[name]}")
    return tuple(kinds)


def _check_run(request: PlotRequest, plan: _Plan) -> None:
    from methods.data import DataNotFoundError, load_dataset
    from methods.lime import LimeSettings
    from orchestrator.figures.runs import read_lgr_run

    if request.num_samples is not None:
        LimeSettings(num_samples=request.num_samples)  # LIME's own check of the count

    try:
        plan.run = read_lgr_run(request.run)
    except ValueError as error:
        _, _, message = _one_line(error).partition(": ")
        raise ConfigError("run", message) from error
    try:
        plan.dataset = load_dataset(plan.run.config.dataset, data_dir=request.data_dir)
    except DataNotFoundError as error:
        raise ConfigError("data_dir", _one_line(error)) from error
    plan.images = request.images or 4
    plan.num_samples = request.num_samples


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
