"""``limelight plot KIND``: figures from a results root's leaderboard (robust curves,
Pareto front, faithfulness) or from an LGR run directory (explanations before and after
refinement), as PNG files and optionally in a TensorBoard event file.

Every input is checked before anything is drawn; a bad one exits 2 with one line that
names the flag (or path) and what is allowed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.figures.results import (
    LEADERBOARD_KINDS,
    PARETO_METRICS,
    figure_plan,
    save_figure,
    save_figures,
)
from orchestrator.figures.tables import DEFAULT_GROUP, ok_rows
from orchestrator.flags import flag_name
from orchestrator.leaderboard import FOLDER, SCHEMA, query, read_leaderboard
from orchestrator.storage import DEFAULT_STORAGE, STORAGE_ENV, default_root, is_uri

__all__ = ["KINDS", "add_plot_parser", "plot_command"]

log = logging.getLogger(__name__)

KINDS = (*LEADERBOARD_KINDS, "explanations", "all")
EXIT_OK, EXIT_USAGE = 0, 2
#: What each kind needs in the leaderboard, for the error when no row has it.
_NEEDS = {
    "curves": "a robust_curve",
    "pareto": "clean_acc and the --metric column",
    "faithfulness": "a faithfulness_curve",
}
#: Flags only ``explanations`` (and ``all``) read; None when not given.
_RUN_FLAGS = ("run", "images", "num_samples", "data_dir")
_DESCRIPTION = """\
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
_EPILOG = """\
examples:
  limelight plot curves --sweep demo
  limelight plot pareto --where "dataset == 'digits'" --metric pgd_acc
  limelight plot all --sweep demo --tensorboard   # then: tensorboard --logdir results/plots/demo
  limelight plot explanations --run results/train/digits_shortcut-lgr-seed0
"""


class _BadInput(Exception):
    """One line naming the flag and what is allowed: exit 2."""


def add_plot_parser(verbs: argparse._SubParsersAction) -> None:
    """Add the ``plot`` verb; its handler is ``plot_command``."""
    plot = verbs.add_parser(
        "plot",
        help="draw figures (PNG, TensorBoard) from the leaderboard or an LGR run",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plot.add_argument("kind", metavar="KIND", help=f"one of {', '.join(KINDS)} (see above)")
    rows = plot.add_argument_group("which rows (leaderboard figures)")
    rows.add_argument(
        "--storage",
        metavar="ROOT",
        default=None,
        help=f"results root holding leaderboard/ (default: ${STORAGE_ENV}, else {DEFAULT_STORAGE})",
    )
    rows.add_argument("--sweep", metavar="NAME", help="only this sweep's rows")
    rows.add_argument(
        "--where",
        metavar="EXPR",
        help="pandas query filter, as in limelight leaderboard, e.g. "
        "\"dataset == 'digits' and epochs >= 10\"",
    )
    rows.add_argument(
        "--group-by",
        metavar="A,B",
        default=None,
        help=f"columns that make one line (mean over its rows) or one colour "
        f"(default: {','.join(DEFAULT_GROUP)}; e.g. method,mask_ratio or config_id)",
    )
    rows.add_argument(
        "--metric",
        default=None,
        metavar="COL",
        help=f"pareto's y axis: one of {', '.join(PARETO_METRICS)} (default: robust_acc)",
    )
    out = plot.add_argument_group("output")
    out.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=None,
        help="folder for the PNG files (default: ROOT/plots/<sweep, or all>)",
    )
    out.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write the figures as images to OUT/tensorboard",
    )
    run = plot.add_argument_group("explanations (an LGR run directory)")
    run.add_argument(
        "--run",
        metavar="DIR",
        type=Path,
        default=None,
        help="run directory of limelight train --method lgr (ROOT/OUT) or of an LGR "
        "sweep trial (ROOT/NAME/runs/<trial>)",
    )
    run.add_argument(
        "--images", type=int, default=None, metavar="N", help="training images (default: 4)"
    )
    run.add_argument(
        "--num-samples",
        type=int,
        default=None,
        metavar="N",
        help="LIME perturbations per image (default: the run's lime_samples)",
    )
    run.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="where mnist/cifar10/cifar100 live (default: ./data)",
    )
    plot.add_argument("-v", "--verbose", action="store_true", help="log what is drawn")
    plot.set_defaults(handler=plot_command)


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


def plot_command(args: argparse.Namespace) -> int:
    """Check every input, then draw; prints the files written. Returns the exit code."""
    try:
        plan = _plan(args)
    except _BadInput as error:
        print(f"limelight plot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    for note in plan.notes:
        print(note)
    writer = None
    if args.tensorboard:
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
    return EXIT_OK


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


def _plan(args: argparse.Namespace) -> _Plan:
    if args.kind not in KINDS:
        raise _BadInput(f"KIND: {args.kind!r} is not one of {', '.join(KINDS)}")
    uses_run = args.kind in ("explanations", "all")
    uses_rows = args.kind != "explanations"
    _refuse_unused(args, uses_run, uses_rows)
    root = default_root(args.storage)
    plan = _Plan(out=_out_dir(args, root))
    if uses_rows:
        plan.frame = _rows(args, root)
        plan.group_by = _group_by(args.group_by, plan.frame)
        plan.metric = _metric(args.metric)
        plan.kinds = _kinds(args.kind, plan)
        left_out = ok_rows(plan.frame)[1]
        if left_out:
            counts = ", ".join(f"{n} {status}" for status, n in left_out.items())
            plan.notes.append(f"left out {sum(left_out.values())} rows not ok ({counts})")
    if args.kind == "explanations" and args.run is None:
        raise _BadInput(
            "--run: explanations needs an LGR run directory (ROOT/OUT of limelight train "
            "--method lgr, or ROOT/NAME/runs/<trial> of an LGR sweep)"
        )
    if args.run is not None:
        _check_run(args, plan)
    if not plan.kinds and plan.run is None:  # all: nothing in the rows to draw
        raise _BadInput(
            f"{root}/{FOLDER}: no ok row has a robust_curve, clean_acc with "
            f"{plan.metric} or a faithfulness_curve; nothing to plot"
        )
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _BadInput(f"--out: cannot create {plan.out}: {error.strerror}") from error
    return plan


def _refuse_unused(args: argparse.Namespace, uses_run: bool, uses_rows: bool) -> None:
    """A flag the chosen KIND would ignore is an error, not a surprise."""
    unused = []
    if not uses_run:
        unused += [(name, "explanations and all") for name in _RUN_FLAGS]
    if not uses_rows:
        unused += [(name, "the leaderboard kinds") for name in ("sweep", "where", "group_by")]
    if args.kind not in ("pareto", "all"):
        unused.append(("metric", "pareto and all"))
    for name, users in unused:
        if getattr(args, name) is not None:
            raise _BadInput(f"{flag_name(name)}: KIND {args.kind} does not use it (only {users})")


def _out_dir(args: argparse.Namespace, root: str) -> Path:
    if args.out is not None:
        return args.out
    if is_uri(root):
        raise _BadInput(
            f"--out: the results root {root} is a URI; give a local --out DIR for the PNG files"
        )
    return Path(root) / "plots" / (args.sweep or "all")


def _rows(args: argparse.Namespace, root: str) -> pd.DataFrame:
    """The leaderboard rows the flags select (any status: the figures count the others)."""
    where = f"{str(root).rstrip('/')}/{FOLDER}"
    try:
        frame = read_leaderboard(root)
    except (OSError, ValueError) as error:  # pyarrow: unknown URI scheme, bucket, network
        raise _BadInput(f"--storage: cannot read {where}: {_one_line(error)}") from error
    if frame.empty:
        raise _BadInput(
            f"--storage: no leaderboard rows under {where} (run limelight sweep first, or "
            "give --storage ROOT)"
        )
    if args.sweep is not None:
        present = sorted(str(s) for s in frame["sweep"].unique())
        if args.sweep not in present:
            raise _BadInput(
                f"--sweep: no rows for {args.sweep!r} under {where}; sweeps present: "
                f"{', '.join(present)}"
            )
        frame = frame[frame["sweep"] == args.sweep]
    if args.where:
        try:
            frame = query(frame, where=args.where)
        except ValueError as error:
            _, _, message = _one_line(error).partition(": ")
            raise _BadInput(f"--where: {message}") from error
        if frame.empty:
            raise _BadInput(f"--where: no rows match {args.where!r}")
    ok, left_out = ok_rows(frame)
    if ok.empty:
        statuses = ", ".join(f"{n} {s}" for s, n in left_out.items())
        raise _BadInput(f"{where}: none of the {len(frame)} selected rows is ok ({statuses})")
    return frame


def _group_by(text: str | None, frame: pd.DataFrame) -> tuple[str, ...]:
    if text is None:
        return DEFAULT_GROUP
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    lists = {f.name for f in SCHEMA if str(f.type).startswith("list")} | {"config"}
    valid = [c for c in frame.columns if c not in lists]
    unknown = [name for name in names if name not in valid]
    if not names or unknown:
        shown = ", ".join(map(repr, unknown)) if unknown else repr(text)
        raise _BadInput(f"--group-by: unknown column {shown}; valid: {', '.join(valid)}")
    return names


def _metric(name: str | None) -> str:
    if name is None:
        return "robust_acc"
    if name not in PARETO_METRICS:
        raise _BadInput(f"--metric: {name!r} is not one of {', '.join(PARETO_METRICS)}")
    return name


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
            raise _BadInput(f"KIND {name}: no selected ok row has {_NEEDS[name]}")
    return tuple(kinds)


def _check_run(args: argparse.Namespace, plan: _Plan) -> None:
    from methods.data import DataNotFoundError, load_dataset
    from orchestrator.figures.runs import read_lgr_run

    if args.images is not None and args.images < 1:
        raise _BadInput(f"--images: must be >= 1, got {args.images}")
    if args.num_samples is not None and args.num_samples < 2:
        raise _BadInput(f"--num-samples: must be >= 2, got {args.num_samples}")
    try:
        plan.run = read_lgr_run(args.run)
    except ValueError as error:
        _, _, message = _one_line(error).partition(": ")
        raise _BadInput(f"--run: {message}") from error
    try:
        plan.dataset = load_dataset(plan.run.config.dataset, data_dir=args.data_dir)
    except DataNotFoundError as error:
        raise _BadInput(f"--data-dir: {_one_line(error)}") from error
    plan.images = args.images or 4
    plan.num_samples = args.num_samples


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
