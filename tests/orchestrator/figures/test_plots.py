"""`limelight plot`: figures from a real Parquet leaderboard and a real LGR run directory,
drawn through ``orchestrator.cli.main`` as the command line does.

The rows are synthetic (made-up accuracies from several methods, seeds and sweeps,
written with ``append_row``): these tests check the plotting, not any result.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection
from PIL import Image

from methods.data import load_dataset
from methods.lime import LimeExplainer, LimeSettings
from methods.loop import save_checkpoint
from methods.models import build_model
from orchestrator.checkpoints import checkpoint_meta
from orchestrator.cli import main
from orchestrator.cli.plot import KINDS
from orchestrator.config import TrainConfig
from orchestrator.figures.results import curves_figure, faithfulness_figure, pareto_figure
from orchestrator.figures.runs import explain_refinement, read_lgr_run
from orchestrator.figures.tables import (
    curve_table,
    faithfulness_table,
    ok_rows,
    pareto_front,
    pareto_points,
)
from orchestrator.leaderboard import LeaderboardRow, append_row, read_leaderboard

EPS = (0.05, 0.1, 0.2)
FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.5)
#: method -> (clean accuracy, how fast accuracy falls with eps, configs): made up.
METHODS = {"erm": (0.97, 14.0, 1), "adversarial": (0.93, 4.0, 1), "sgt": (0.96, 9.0, 2)}
SEEDS = (0, 1, 2)
START = datetime(2026, 5, 1, tzinfo=timezone.utc)


def _curve(rng: np.random.Generator, clean: float, decay: float) -> list[dict]:
    points = []
    for eps in EPS:
        fgsm = clean * np.exp(-decay * eps) + rng.normal(0, 0.01)
        pgd = fgsm * 0.85
        for attack, acc in (("fgsm", fgsm), ("pgd", pgd), ("worst", pgd * 0.98)):
            points.append({"attack": attack, "eps": eps, "acc": float(np.clip(acc, 0, 1))})
    return points


def _faithfulness(rng: np.random.Generator, clean: float) -> list[dict]:
    return [
        {
            "fraction": f,
            "acc": float(clean * np.exp(-6 * f) + rng.uniform(0, 0.02)),
            "random_acc": float(clean * np.exp(-2 * f)),
        }
        for f in FRACTIONS
    ]


def _row(sweep: str, index: int, **values) -> LeaderboardRow:
    base = {
        "sweep": sweep,
        "trial_id": f"{sweep}-{index:03d}",
        "status": "ok",
        "model": "small_cnn",
        "epochs": 10,
        "wall_s": 12.0,
        "created_at": START + timedelta(minutes=index),
        "config": {"method": values.get("method", "erm")},
    }
    return LeaderboardRow(**{**base, **values})


def _rows() -> list[LeaderboardRow]:
    """Sweep ``demo`` (digits: three methods, three seeds, sgt with two configurations,
    one stopped and one failed trial) and sweep ``wide`` (digits at another eval_eps, and
    mnist without faithfulness curves)."""
    rng = np.random.default_rng(0)
    rows = []
    for method, (clean, decay, configs) in METHODS.items():
        for config in range(configs):
            for seed in SEEDS:
                acc = clean - 0.02 * config + rng.normal(0, 0.005)
                curve = _curve(rng, acc, decay + 3 * config)
                worst = next(p["acc"] for p in curve if p["attack"] == "worst" and p["eps"] == 0.1)
                rows.append(
                    _row(
                        "demo",
                        len(rows),
                        config_id=f"{method}-{config}",
                        method=method,
                        dataset="digits",
                        seed=seed,
                        mask_ratio=0.3 + 0.3 * config if method == "sgt" else None,
                        eval_eps=0.1,
                        clean_acc=acc,
                        robust_acc=worst,
                        pgd_acc=worst / 0.98,
                        robust_curve=curve,
                        faithfulness_curve=_faithfulness(rng, acc),
                        faithfulness_auc=0.2 + 0.05 * config,
                        faithfulness_random_auc=0.5,
                    )
                )
    unfinished = {"dataset": "digits", "seed": 0, "eval_eps": 0.1}
    rows.append(_row("demo", len(rows), config_id="sgt-9", method="sgt", status="stopped",
                     stopped_epoch=2, **unfinished))  # fmt: skip
    rows.append(_row("demo", len(rows), config_id="erm-9", method="erm", status="error",
                     error="NonFiniteLossError: nan", **unfinished))  # fmt: skip
    for dataset, eval_eps in (("digits", 0.2), ("mnist", 0.2)):
        for method in ("erm", "adversarial"):
            clean, decay, _ = METHODS[method]
            for seed in SEEDS[:2]:
                curve = _curve(rng, clean, decay / 2)
                worst = next(p["acc"] for p in curve if p["attack"] == "worst" and p["eps"] == 0.2)
                rows.append(
                    _row("wide", len(rows), config_id=f"{dataset}-{method}", method=method,
                         dataset=dataset, seed=seed, eval_eps=eval_eps, clean_acc=clean,
                         robust_acc=worst, robust_curve=curve)
                )  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for row in _rows():
        append_row(str(root), row)
    return root


def _plot(*argv: str) -> int:
    """``limelight plot ARGV`` in-process; its exit code (argparse's own errors too)."""
    try:
        return main(["plot", *argv])
    except SystemExit as exit_:
        return exit_.code


def _check_png(path: Path) -> None:
    with Image.open(path) as image:
        image.verify()  # a truncated or corrupt file raises
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert width >= 600 and height >= 300, (path, image.size)
    assert pixels.std() > 10, f"{path} looks blank"


# ------------------------------------------------------------------------ pure helpers


def test_pareto_front_is_exactly_the_non_dominated_points():
    x = [1.0, 2.0, 2.0, 3.0, 0.5, 3.0, 1.5]
    y = [5.0, 4.0, 3.0, 1.0, 5.0, 1.0, 4.0]
    # (2,3) is dominated by (2,4), (0.5,5) by (1,5), (1.5,4) by (2,4); the two (3,1) tie.
    assert pareto_front(x, y).tolist() == [0, 1, 3, 5]
    rng = np.random.default_rng(3)
    xs, ys = rng.integers(0, 6, 60).astype(float), rng.integers(0, 6, 60).astype(float)
    front = set(pareto_front(xs, ys).tolist())
    for i in range(60):
        dominated = any(
            xs[j] >= xs[i] and ys[j] >= ys[i] and (xs[j] > xs[i] or ys[j] > ys[i])
            for j in range(60)
        )
        assert (i in front) == (not dominated), i
    order = pareto_front(xs, ys)
    assert np.all(np.diff(xs[order]) >= 0) and np.all(np.diff(ys[order]) <= 0)
    with pytest.raises(ValueError, match="NaN"):
        pareto_front([1.0, float("nan")], [1.0, 2.0])


def test_curve_table_averages_each_method_over_its_rows(root):
    frame, left_out = ok_rows(read_leaderboard(str(root), "demo"))
    assert left_out == {"error": 1, "stopped": 1}
    table = curve_table(frame)
    rows = [r for r in _rows() if r.sweep == "demo" and r.status == "ok"]
    for method in METHODS:
        mine = [r for r in rows if r.method == method]
        for attack in ("fgsm", "pgd", "worst"):
            for eps in EPS:
                values = [p["acc"] for r in mine for p in r.robust_curve
                          if p["attack"] == attack and p["eps"] == eps]  # fmt: skip
                got = table[
                    (table.method == method) & (table.attack == attack) & (table.eps == eps)
                ].iloc[0]
                assert got.n == len(mine)
                assert got.acc_mean == pytest.approx(np.mean(values))
                assert got.acc_std == pytest.approx(np.std(values, ddof=1))
            at_zero = table[(table.method == method) & (table.attack == attack) & (table.eps == 0)]
            assert at_zero.acc_mean.item() == pytest.approx(np.mean([r.clean_acc for r in mine]))


def test_faithfulness_table_and_pareto_points_average_over_seeds(root):
    frame, _ = ok_rows(read_leaderboard(str(root), "demo"))
    rows = [r for r in _rows() if r.sweep == "demo" and r.status == "ok" and r.method == "sgt"]
    table = faithfulness_table(frame)
    got = table[(table.method == "sgt") & (table.fraction == 0.2)].iloc[0]
    expected = [p["acc"] for r in rows for p in r.faithfulness_curve if p["fraction"] == 0.2]
    random = [p["random_acc"] for r in rows for p in r.faithfulness_curve if p["fraction"] == 0.2]
    assert got.n == 6 and got.acc_mean == pytest.approx(np.mean(expected))
    assert got.random_mean == pytest.approx(np.mean(random))
    points = pareto_points(frame, "robust_acc")
    assert len(points) == 4  # erm, adversarial, sgt x2: one point per configuration
    sgt1 = points[points.config == "sgt-1"].iloc[0]
    seeds = [r for r in rows if r.config_id == "sgt-1"]
    assert sgt1.n == 3
    assert sgt1.clean_mean == pytest.approx(np.mean([r.clean_acc for r in seeds]))
    assert sgt1.metric_std == pytest.approx(np.std([r.robust_acc for r in seeds], ddof=1))
    expected_front = set(points.index[pareto_front(points.clean_mean, points.metric_mean)])
    assert set(points.index[points.on_front]) == expected_front


# ----------------------------------------------------------------------------- figures


def test_bands_and_bars_stay_between_0_and_100_percent_when_a_seed_collapses(tmp_path):
    """One seed of three collapsed to chance (as an LGR trial on digits did): mean ± std
    runs past 100% and below 0, which no accuracy can; the figures clip to [0, 100]."""
    rng = np.random.default_rng(1)
    root = tmp_path / "results"
    for seed, clean in enumerate((0.97, 0.96, 0.10)):
        curve = [{**p, "acc": min(p["acc"], clean)} for p in _curve(rng, clean, 2.0)]
        faithfulness = [{**p, "acc": clean if p["fraction"] == 0 else p["acc"]}
                        for p in _faithfulness(rng, clean)]  # fmt: skip
        append_row(str(root), _row("collapse", seed, config_id="lgr-0", method="lgr",
                                   dataset="digits", seed=seed, eval_eps=0.1, clean_acc=clean,
                                   robust_acc=curve[-1]["acc"], robust_curve=curve,
                                   faithfulness_curve=faithfulness))  # fmt: skip
    frame = read_leaderboard(str(root))
    for figure in (
        curves_figure(frame, "digits"),
        pareto_figure(frame, "digits"),
        faithfulness_figure(frame, "digits"),
    ):
        drawn = [ax for ax in figure.axes if ax.get_visible() and ax.collections]
        assert drawn
        for ax in drawn:
            for collection in ax.collections:
                if isinstance(collection, PathCollection):  # markers: where they are
                    drawn_points = [collection.get_offsets()]
                else:  # bands (their outlines) and error bars (their segments)
                    drawn_points = [path.vertices for path in collection.get_paths() or []]
                    drawn_points += getattr(collection, "get_segments", list)()
                for points in drawn_points:
                    points = np.asarray(points)
                    if points.size:
                        assert points.min() >= -1e-9 and points.max() <= 100 + 1e-9, ax.get_title()


@pytest.mark.parametrize("kind", ["curves", "pareto", "faithfulness"])
def test_each_kind_writes_a_png_per_data_set(root, tmp_path, kind, capsys):
    assert _plot(kind, "--storage", str(root), "--sweep", "demo", "--out", str(tmp_path)) == 0
    written = sorted(tmp_path.glob("*.png"))
    assert [p.name for p in written] == [f"{kind}_digits.png"]
    _check_png(written[0])
    printed = capsys.readouterr().out
    assert str(written[0]) in printed.split()
    assert "left out 2 rows not ok (1 error, 1 stopped)" in printed


def test_all_skips_what_the_rows_lack(root, tmp_path, capsys):
    assert _plot("all", "--storage", str(root), "--sweep", "wide", "--out", str(tmp_path)) == 0
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == [
        "curves_digits.png",
        "curves_mnist.png",
        "pareto_digits.png",
        "pareto_mnist.png",
    ]
    assert "faithfulness: skipped, no ok row has a faithfulness_curve" in capsys.readouterr().out


def test_all_writes_every_figure_and_tensorboard_images(root, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert _plot("all", "--storage", str(root), "--tensorboard") == 0
    out = root / "plots" / "all"
    names = sorted(p.name for p in out.glob("*.png"))
    # Both sweeps: digits at two eval_eps gets one Pareto figure per eps; mnist has no
    # faithfulness curves.
    assert names == [
        "curves_digits.png",
        "curves_mnist.png",
        "faithfulness_digits.png",
        "pareto_digits_eps0.1.png",
        "pareto_digits_eps0.2.png",
        "pareto_mnist.png",
    ]
    for path in out.glob("*.png"):
        _check_png(path)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["images"])
    assert {"curves/digits", "pareto/digits_eps0.1", "faithfulness/digits"} <= tags
    image = events.Images("curves/digits")[0]
    assert image.width > 600 and image.height > 300
    assert f"tensorboard --logdir {out / 'tensorboard'}" in capsys.readouterr().out


def test_group_by_and_where_select_the_lines(root, tmp_path):
    argv = ["--storage", str(root), "--out", str(tmp_path), "--where", "method == 'sgt'"]
    assert _plot("curves", *argv, "--group-by", "method,mask_ratio") == 0
    _check_png(tmp_path / "curves_digits.png")
    frame, _ = ok_rows(read_leaderboard(str(root), "demo").query("method == 'sgt'"))
    table = curve_table(frame, ("method", "mask_ratio"))
    assert sorted(table.mask_ratio.unique()) == pytest.approx([0.3, 0.6])
    assert set(table.n) == {3}


# ------------------------------------------------------------------------ explanations


def _checkpoint(path: Path, dataset, config: dict, seed: int) -> None:
    torch.manual_seed(seed)
    model = build_model("small_cnn", dataset.input_shape, dataset.num_classes,
                        dataset.mean, dataset.std)  # fmt: skip
    meta = checkpoint_meta(dataset, "small_cnn", config)
    save_checkpoint(path, {"model": model.state_dict(), "meta": meta})


@pytest.fixture(scope="module")
def lgr_run(tmp_path_factory) -> Path:
    """An LGR run directory as ``run_lgr`` lays it out (pretrain/, round1/, round2/,
    config.json), its models initialized with different seeds instead of trained."""
    run = tmp_path_factory.mktemp("lgr")
    dataset = load_dataset("digits_shortcut")
    config = TrainConfig.create(
        method="lgr",
        dataset="digits_shortcut",
        spurious=("low_relevance", "annotated"),
        mask_ratio=0.25,
        rounds=2,
        lime_samples=60,
    ).to_dict()
    (run / "config.json").write_text(json.dumps(config))
    for seed, folder in enumerate(("pretrain", "round1", "round2")):
        _checkpoint(run / folder / "checkpoint.pt", dataset, config, seed)
    return run


def test_explanations_before_and_after_refinement(lgr_run, tmp_path, capsys):
    rc = _plot("explanations", "--run", str(lgr_run), "--out", str(tmp_path), "--images", "3")
    assert rc == 0
    path = tmp_path / f"explanations_{lgr_run.name}.png"
    _check_png(path)
    assert str(path) in capsys.readouterr().out

    run = read_lgr_run(lgr_run)
    assert run.before == lgr_run / "pretrain" / "checkpoint.pt"
    assert run.after == lgr_run / "round2" / "checkpoint.pt" and run.rounds == 2
    dataset = load_dataset("digits_shortcut")
    refinement = explain_refinement(run, dataset, count=3)
    # "before" is what round 1 explained: the same LIME call on the pretrained model.
    from orchestrator.checkpoints import read_checkpoint, restore_model

    model = restore_model(read_checkpoint(run.before)).eval()
    images, labels = dataset.train.tensors(torch.arange(3))
    direct = LimeExplainer(model).explain(images, labels, LimeSettings(num_samples=60))
    for mine, theirs in zip(refinement.before, direct, strict=True):
        np.testing.assert_allclose(mine.weights, theirs.weights, rtol=1e-6, atol=1e-9)
    for first, last in zip(refinement.before, refinement.after, strict=True):
        assert np.array_equal(first.segments, last.segments)  # only the model differs
        assert not np.allclose(first.weights, last.weights)
    # Flags: the planted patch (annotated) plus the bottom quarter of LIME segments.
    assert refinement.flagged_by == ("low_relevance", "annotated")
    patch = dataset.train.masks[:3, 0].numpy().astype(bool)
    assert np.all(refinement.flags[patch]) and refinement.flags.sum() > patch.sum()


# -------------------------------------------------------------------------- bad input


def _sgt_run(tmp_path: Path) -> Path:
    run = tmp_path / "sgt-run"
    run.mkdir()
    config = TrainConfig.create(method="sgt", dataset="digits").to_dict()
    (run / "config.json").write_text(json.dumps(config))
    return run


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["curves", "--storage", "{empty}"], ["--storage", "{empty}/leaderboard"]),
        (["curves", "--sweep", "nope"], ["--sweep", "'nope'", "demo, wide"]),
        (["bars"], ["KIND", "'bars'", ", ".join(map(repr, KINDS))]),
        (["pareto", "--metric", "clean_ac"], ["--metric", "'robust_acc', 'pgd_acc'"]),
        (["curves", "--where", "method =="], ["--where", "bad expression"]),
        (["curves", "--where", "method == 'lgr'"], ["--where", "no rows match"]),
        (["curves", "--where", "status != 'ok'"], ["none of the 2 selected rows is ok"]),
        (["curves", "--group-by", "methd"], ["--group-by", "'methd'", "valid:", "method"]),
        (["faithfulness", "--sweep", "wide"], ["KIND: faithfulness: ", "faithfulness_curve"]),
        (["curves", "--metric", "pgd_acc"], ["--metric", "only pareto and all"]),
        (["curves", "--run", "{tmp}"], ["--run", "only explanations and all"]),
        (["explanations"], ["--run", "LGR run directory"]),
        (["explanations", "--run", "{tmp}/missing"], ["--run", "no config.json"]),
        (["explanations", "--run", "{sgt}"], ["--run", "'sgt' run", "lgr"]),
        (["explanations", "--run", "{lgr}", "--images", "0"], ["--images", ">= 1"]),
        (["explanations", "--run", "{lgr}", "--num-samples", "1"], ["--num-samples", ">= 2"]),
        (["curves", "--group-by", " , "], ["--group-by", "unknown column ''"]),
    ],
)
def test_bad_input_exits_2_with_one_line(root, lgr_run, tmp_path, capsys, argv, expected):
    paths = {"empty": str(tmp_path / "empty"), "tmp": str(tmp_path),
             "sgt": str(_sgt_run(tmp_path)), "lgr": str(lgr_run)}  # fmt: skip
    argv = [a.format(**paths) for a in argv]
    if "--storage" not in argv:
        argv += ["--storage", str(root)]
    out = tmp_path / "out"
    assert _plot(*argv, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("limelight plot: error: "), err
    for text in expected:
        assert text.format(**paths) in err, (text, err)
    assert not list(out.glob("**/*.png"))
