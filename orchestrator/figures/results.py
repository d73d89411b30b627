"""Figures from the leaderboard: accuracy against eps per attack, the clean/robust
Pareto front, and masked-accuracy (faithfulness) curves.

Each figure function takes the leaderboard's read form (``read_leaderboard``'s
DataFrame, any filter applied) and one data set, and returns a matplotlib ``Figure``.
Rows whose status is not ``ok`` are left out, and the legend says how many. Lines are
means over the rows of a group (by default a method: its seeds, and its configurations
when a sweep sampled several; the legend gives both counts), with a band of one
sample standard deviation where a group has more than one row.

No pyplot: figures are plain ``Figure`` objects, so nothing is kept in a global
registry and no display backend is needed. Torch-free, like the leaderboard.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from orchestrator.figures.tables import (
    DEFAULT_GROUP,
    _missing,
    _points,
    curve_table,
    faithfulness_table,
    ok_rows,
    pareto_points,
)

__all__ = [
    "DEFAULT_GROUP",
    "LEADERBOARD_KINDS",
    "PARETO_METRICS",
    "curves_figure",
    "faithfulness_figure",
    "figure_plan",
    "pareto_figure",
    "save_figure",
    "save_figures",
]

log = logging.getLogger(__name__)

#: The figures ``save_figures`` draws from the leaderboard, in this order.
LEADERBOARD_KINDS = ("curves", "pareto", "faithfulness")
#: Attack panels in this order; other attacks follow alphabetically, ``worst`` last.
ATTACK_ORDER = ("fgsm", "pgd", "apgd-ce", "apgd-t", "square")
ATTACK_TITLES = {
    "fgsm": "FGSM",
    "pgd": "PGD",
    "apgd-ce": "APGD-CE",
    "apgd-t": "APGD-T",
    "square": "Square",
    "worst": "worst case over the attacks run",
}
#: ``pareto``'s y axis (x is clean_acc): accuracies where higher is better.
PARETO_METRICS = {
    "robust_acc": "robust accuracy (%)\nworst case over the attacks run",
    "pgd_acc": "PGD accuracy (%)",
    "fgsm_acc": "FGSM accuracy (%)",
    "corruption_acc": "mean corruption accuracy (%)",
}
_SHORT = {
    "robust_acc": "robust",
    "pgd_acc": "PGD",
    "fgsm_acc": "FGSM",
    "corruption_acc": "corruption",
}
#: Metrics measured at the row's eval_eps: rows at different eps are not comparable.
EPS_METRICS = ("robust_acc", "pgd_acc", "fgsm_acc")
EPS_LABEL = "eps (L-inf, [0,1] scale)"
ACC_LABEL = "accuracy (%)"
#: Descriptive columns a legend shows as the bare value; others as ``column=value``.
_NAMED = ("method", "dataset", "model", "sweep", "config_id", "trial_id", "status")


# ------------------------------------------------------------------------ labels, style


def _label(columns: Sequence[str], values: Sequence[Any]) -> str:
    parts = []
    for column, value in zip(columns, values, strict=True):
        text = "-" if _missing(value) else f"{value:g}" if isinstance(value, float) else value
        parts.append(str(text) if column in _NAMED else f"{column}={text}")
    return ", ".join(parts)


def _with_groups(frame: pd.DataFrame, group_by: Sequence[str]) -> pd.DataFrame:
    """``frame`` with a ``_group`` column: the legend label of each row's group."""
    keys = list(group_by)
    labels = [_label(keys, values) for values in frame[keys].itertuples(index=False, name=None)]
    return frame.assign(_group=pd.Series(labels, index=frame.index, dtype=object))


def _colours(frame: pd.DataFrame, group_by: Sequence[str]) -> dict[str, Any]:
    """One colour per group over the whole frame (every data set), so a method keeps its
    colour from figure to figure."""
    labels = sorted(set(_with_groups(frame, group_by)["_group"]))
    palette = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"].colors
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def _scope(frame: pd.DataFrame) -> str:
    """Which sweeps a figure shows, for its title."""
    sweeps = sorted(str(s) for s in frame["sweep"].dropna().unique()) if "sweep" in frame else []
    if not sweeps:
        return ""
    if len(sweeps) <= 3:
        return ("sweep " if len(sweeps) == 1 else "sweeps ") + ", ".join(sweeps)
    return f"{len(sweeps)} sweeps"


def _title(dataset: str, what: str, frame: pd.DataFrame, *, wrap: bool = False) -> str:
    """``digits: <what> (sweep demo)``; ``wrap`` puts the sweeps on a second line (a
    title over one axes must not be wider than it)."""
    scope = _scope(frame)
    return f"{dataset}: {what}" + (("\n" if wrap else " ") + f"({scope})" if scope else "")


def _counts(frame: pd.DataFrame) -> dict[str, str]:
    """Group label -> "3 runs" / "6 runs, 2 configs" for the legend."""
    out = {}
    for group, part in frame.groupby("_group", sort=True):
        configs = part["config_id"].nunique()
        runs = f"{len(part)} run" + ("s" if len(part) != 1 else "")
        out[group] = runs + (f", {configs} configs" if configs > 1 else "")
    return out


def _left_out_handle(left_out: dict[str, int]) -> tuple[list[Line2D], list[str]]:
    """A text-only legend entry naming the rows left out (none when nothing was)."""
    if not left_out:
        return [], []
    text = ", ".join(f"{n} {status}" for status, n in left_out.items())
    return [Line2D([], [], linestyle="none")], [f"left out (status not ok): {text}"]


def _legend(fig: Figure, handles: list, labels: list[str], title: str) -> None:
    fig.legend(
        handles, labels, loc="outside right center", fontsize=8, title=title, title_fontsize=8
    )


def _percent_axis(ax: Axes) -> None:
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)


def _band(mean: pd.Series, std: pd.Series) -> tuple[pd.Series, pd.Series]:
    """mean ± std in percent, clipped to [0, 100]: one collapsed seed of three (an LGR
    trial at chance on digits) put the unclipped band at 118% and below 0."""
    return (mean - std).clip(0, 100), (mean + std).clip(0, 100)


def _error_bars(mean: pd.Series, std: pd.Series) -> np.ndarray:
    """The (below, above) lengths of ± std bars that stop at 0 and 100."""
    low, high = _band(mean, std.fillna(0))
    return np.vstack([mean - low, high - mean])


def _rows_of(frame: pd.DataFrame, dataset: str, group_by: Sequence[str]):
    """The data set's ok rows (with ``_group``), the counts left out, and the colours."""
    ok, left_out = ok_rows(frame[frame["dataset"] == dataset])
    if left_out:
        log.info("%s: left out %s rows with status other than ok", dataset, left_out)
    colours = _colours(ok_rows(frame)[0], group_by)
    return _with_groups(ok, group_by), left_out, colours


def _group_title(group_by: Sequence[str]) -> str:
    return ", ".join(group_by)


# ------------------------------------------------------------------------------ figures


def _attack_order(attacks: Iterable[str]) -> list[str]:
    present = set(attacks)
    known = [a for a in ATTACK_ORDER if a in present]
    other = sorted(present - set(ATTACK_ORDER) - {"worst"})
    return known + other + (["worst"] if "worst" in present else [])


def curves_figure(
    frame: pd.DataFrame, dataset: str, *, group_by: Sequence[str] = DEFAULT_GROUP
) -> Figure:
    """Accuracy against eps, one panel per attack and one line per group (method), the
    mean over its runs with a band of ± one std; eps 0 is the clean accuracy."""
    rows, left_out, colours = _rows_of(frame, dataset, group_by)
    table = curve_table(rows, ("_group",))
    if table.empty:
        raise ValueError(f"dataset: no ok row of {dataset!r} has a robust_curve")
    attacks = _attack_order(table["attack"])
    ncols = min(3, len(attacks))
    nrows = math.ceil(len(attacks) / ncols)
    fig = Figure(figsize=(3.7 * ncols + 2.6, 3.2 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for ax, attack in zip(axes.flat, attacks, strict=False):
        for group, part in table[table["attack"] == attack].groupby("_group", sort=True):
            part = part.sort_values("eps")
            eps, mean, std = part["eps"], 100 * part["acc_mean"], 100 * part["acc_std"]
            ax.plot(eps, mean, marker="o", markersize=3.5, color=colours[group], linewidth=1.5)
            ax.fill_between(eps, *_band(mean, std), color=colours[group], alpha=0.18, lw=0)
        ax.set_title(ATTACK_TITLES.get(attack, attack), fontsize=10)
        ax.set_xlabel(EPS_LABEL, fontsize=9)
        _percent_axis(ax)
    for ax in axes[:, 0]:
        ax.set_ylabel(ACC_LABEL, fontsize=9)
    for ax in axes.flat[len(attacks) :]:
        ax.set_visible(False)
    counts = _counts(rows[[len(_points(c)) > 0 for c in rows["robust_curve"]]])
    groups = sorted(set(table["_group"]))
    handles = [Line2D([], [], color=colours[g], marker="o", markersize=3.5) for g in groups]
    labels = [f"{g} ({counts[g]})" for g in groups]
    extra_handles, extra_labels = _left_out_handle(left_out)
    _legend(
        fig,
        handles + extra_handles,
        labels + extra_labels,
        f"{_group_title(group_by)}: mean, band ± 1 std",
    )
    fig.suptitle(_title(dataset, "accuracy under attack", rows), fontsize=11)
    return fig


def _eps_rows(rows: pd.DataFrame, metric: str, dataset: str, eval_eps: float | None):
    """Rows measured at one eval_eps (when ``metric`` depends on it) and that eps."""
    if metric not in EPS_METRICS:
        return rows, None
    values = sorted(float(v) for v in rows["eval_eps"].dropna().unique())
    if eval_eps is None:
        if len(values) > 1:
            raise ValueError(
                f"eval_eps: rows of {dataset!r} were evaluated at several eps "
                f"({', '.join(f'{v:g}' for v in values)}); choose one"
            )
        eval_eps = values[0] if values else None
    if eval_eps is None:
        return rows.iloc[:0], None
    return rows[np.isclose(rows["eval_eps"].astype(float), eval_eps)], eval_eps


def pareto_figure(
    frame: pd.DataFrame,
    dataset: str,
    *,
    metric: str = "robust_acc",
    eval_eps: float | None = None,
    group_by: Sequence[str] = DEFAULT_GROUP,
) -> Figure:
    """Clean accuracy against ``metric`` (robust accuracy at eval_eps by default): one
    point per configuration (mean over its seeds, bars ± one std), coloured by group,
    the non-dominated ones joined by a step line. Rows at several eval_eps need
    ``eval_eps`` chosen (``ValueError`` otherwise)."""
    if metric not in PARETO_METRICS:
        raise ValueError(f"metric: {metric!r} is not one of {', '.join(PARETO_METRICS)}")
    rows, left_out, colours = _rows_of(frame, dataset, group_by)
    rows, eps = _eps_rows(rows, metric, dataset, eval_eps)
    points = pareto_points(rows, metric, ("_group",))
    if points.empty:
        raise ValueError(f"dataset: no ok row of {dataset!r} has clean_acc and {metric}")
    fig = Figure(figsize=(7.8, 4.8), layout="constrained")
    ax = fig.subplots()
    handles, labels = [], []
    counts = _counts(rows.dropna(subset=["clean_acc", metric]))
    for group, part in points.groupby("_group", sort=True):
        clean, value = 100 * part["clean_mean"], 100 * part["metric_mean"]
        drawn = ax.errorbar(
            clean,
            value,
            xerr=_error_bars(clean, 100 * part["clean_std"]),
            yerr=_error_bars(value, 100 * part["metric_std"]),
            fmt="o",
            markersize=6,
            color=colours[group],
            alpha=0.85,
            elinewidth=0.8,
        )
        handles.append(drawn)
        labels.append(f"{group} ({counts[group]})")
    front = points[points["on_front"]].sort_values(["clean_mean", "metric_mean"])
    (line,) = ax.plot(
        100 * front["clean_mean"],
        100 * front["metric_mean"],
        drawstyle="steps-pre",
        color="black",
        linewidth=1.2,
        zorder=1,
    )
    ax.scatter(
        100 * front["clean_mean"],
        100 * front["metric_mean"],
        s=120,
        facecolors="none",
        edgecolors="black",
        linewidths=1.0,
        zorder=3,
    )
    handles.append(line)
    labels.append(f"Pareto front ({len(front)} of {len(points)} configs)")
    extra_handles, extra_labels = _left_out_handle(left_out)
    _legend(
        fig,
        handles + extra_handles,
        labels + extra_labels,
        f"{_group_title(group_by)}: one point per config,\nmean ± 1 std over its seeds",
    )
    ax.set_xlabel("clean accuracy (%)", fontsize=9)
    ax.set_ylabel(PARETO_METRICS[metric], fontsize=9)
    ax.grid(alpha=0.3)
    at = f" at eps {eps:g}" if eps is not None else ""
    what = f"clean vs {_SHORT[metric]} accuracy{at}"
    ax.set_title(_title(dataset, what, rows, wrap=True), fontsize=11)
    return fig


def faithfulness_figure(
    frame: pd.DataFrame, dataset: str, *, group_by: Sequence[str] = DEFAULT_GROUP
) -> Figure:
    """Masked accuracy against the share of features replaced, most salient first
    (solid, band ± one std) and in a random order (dashed: the baseline), per group.
    The further the solid line falls below its dashed one, the more faithful."""
    rows, left_out, colours = _rows_of(frame, dataset, group_by)
    table = faithfulness_table(rows, ("_group",))
    if table.empty:
        raise ValueError(f"dataset: no ok row of {dataset!r} has a faithfulness_curve")
    fig = Figure(figsize=(7.8, 4.6), layout="constrained")
    ax = fig.subplots()
    counts = _counts(rows[[len(_points(c)) > 0 for c in rows["faithfulness_curve"]]])
    handles, labels = [], []
    for group, part in table.groupby("_group", sort=True):
        part = part.sort_values("fraction")
        x, colour = 100 * part["fraction"], colours[group]
        mean, std = 100 * part["acc_mean"], 100 * part["acc_std"]
        (line,) = ax.plot(x, mean, marker="o", markersize=3.5, color=colour, linewidth=1.5)
        ax.fill_between(x, *_band(mean, std), color=colour, alpha=0.18, lw=0)
        ax.plot(x, 100 * part["random_mean"], linestyle="--", color=colour, linewidth=1.2)
        handles.append(line)
        labels.append(f"{group} ({counts[group]}{_auc_text(rows, group)})")
    handles += [Line2D([], [], color="0.3"), Line2D([], [], color="0.3", linestyle="--")]
    labels += ["most salient replaced first", "random order (baseline)"]
    extra_handles, extra_labels = _left_out_handle(left_out)
    _legend(
        fig,
        handles + extra_handles,
        labels + extra_labels,
        f"{_group_title(group_by)}: mean, band ± 1 std",
    )
    ax.set_xlabel("input features replaced (%), in the order of the explanation", fontsize=9)
    ax.set_ylabel(ACC_LABEL, fontsize=9)
    _percent_axis(ax)
    what = "accuracy as explained features are removed"
    ax.set_title(_title(dataset, what, rows, wrap=True), fontsize=11)
    return fig


def _auc_text(rows: pd.DataFrame, group: str) -> str:
    part = rows[rows["_group"] == group]
    auc = part["faithfulness_auc"].astype(float).mean()
    random = part["faithfulness_random_auc"].astype(float).mean()
    if math.isnan(auc):
        return ""
    return f"; AUC {auc:.2f}" + ("" if math.isnan(random) else f" vs {random:.2f} random")


# ---------------------------------------------------------------------------- saving


def _datasets(frame: pd.DataFrame, column: str) -> list[str]:
    """Data sets with an ok row holding a non-empty ``column``, sorted."""
    ok = ok_rows(frame)[0]
    has = [len(_points(value)) > 0 if column.endswith("_curve") else not _missing(value)
           for value in ok[column]]  # fmt: skip
    return sorted(str(d) for d in ok.loc[has, "dataset"].dropna().unique())


def _file_stem(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", part) for part in parts)


def figure_plan(
    frame: pd.DataFrame,
    kinds: Sequence[str] = LEADERBOARD_KINDS,
    *,
    group_by: Sequence[str] = DEFAULT_GROUP,
    metric: str = "robust_acc",
) -> list[tuple[str, str, Callable[[], Figure]]]:
    """What ``save_figures`` draws: (kind, file stem, function building the figure),
    one per kind and data set with the data for it (Pareto: and per eval_eps)."""
    plan: list[tuple[str, str, Callable[[], Figure]]] = []
    for kind in kinds:
        if kind not in LEADERBOARD_KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(LEADERBOARD_KINDS)}")
        if kind == "curves":
            for dataset in _datasets(frame, "robust_curve"):
                build = _bind(curves_figure, frame, dataset, group_by=group_by)
                plan.append((kind, _file_stem(kind, dataset), build))
        elif kind == "faithfulness":
            for dataset in _datasets(frame, "faithfulness_curve"):
                build = _bind(faithfulness_figure, frame, dataset, group_by=group_by)
                plan.append((kind, _file_stem(kind, dataset), build))
        else:
            plan += _pareto_plan(frame, group_by, metric)
    return plan


def _pareto_plan(frame: pd.DataFrame, group_by: Sequence[str], metric: str):
    plan = []
    ok = ok_rows(frame)[0].dropna(subset=["clean_acc", metric])
    for dataset in sorted(str(d) for d in ok["dataset"].dropna().unique()):
        rows = ok[ok["dataset"] == dataset]
        eps_values = sorted(float(v) for v in rows["eval_eps"].dropna().unique())
        if metric not in EPS_METRICS or len(eps_values) <= 1:
            build = _bind(pareto_figure, frame, dataset, metric=metric, group_by=group_by)
            plan.append(("pareto", _file_stem("pareto", dataset), build))
            continue
        for eps in eps_values:  # robust accuracies at different eps are not comparable
            build = _bind(
                pareto_figure, frame, dataset, metric=metric, eval_eps=eps, group_by=group_by
            )
            plan.append(("pareto", _file_stem("pareto", dataset, f"eps{eps:g}"), build))
    return plan


def _bind(function: Callable[..., Figure], *args: Any, **kwargs: Any) -> Callable[[], Figure]:
    return lambda: function(*args, **kwargs)


def save_figure(
    figure: Figure, path: str | Path, *, writer: Any = None, tag: str = "", dpi: int = 120
) -> Path:
    """Render ``figure`` once and write it as a PNG (and, given a ``SummaryWriter``, as
    the image ``tag`` at step 0: the pixels ``add_figure`` would send). One render, not
    three: ``savefig`` lays a constrained figure out and draws it twice, ``add_figure``
    draws it again, and drawing is nearly all of the time spent here."""
    path = Path(path)
    figure.set_dpi(dpi)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    Image.fromarray(rgba).save(path, format="png", dpi=(dpi, dpi))
    if writer is not None:
        writer.add_image(tag, rgba[..., :3], global_step=0, dataformats="HWC")
    log.info("wrote %s", path)
    return path


def save_figures(
    frame: pd.DataFrame,
    out_dir: str | Path,
    *,
    kinds: Sequence[str] = LEADERBOARD_KINDS,
    group_by: Sequence[str] = DEFAULT_GROUP,
    metric: str = "robust_acc",
    writer: Any = None,
    dpi: int = 120,
) -> list[Path]:
    """Write every figure of ``kinds`` the rows support as ``<out_dir>/<kind>_<data set>.png``
    (and each to TensorBoard as ``<kind>/<data set>`` when a ``SummaryWriter`` is given).
    Returns the files written; a kind without data writes nothing."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, stem, build in figure_plan(frame, kinds, group_by=group_by, metric=metric):
        tag = f"{kind}/{stem.removeprefix(kind + '_')}"  # curves/digits, pareto/digits_eps0.1
        path = out_dir / f"{stem}.png"
        written.append(save_figure(build(), path, writer=writer, tag=tag, dpi=dpi))
    return written
