"""`limelight report`: a real grid sweep (Tune, two methods x two seeds) on digits, the
report rendered from its leaderboard, and a second generation that runs nothing."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.leaderboard import read_leaderboard, read_rows_file
from orchestrator.sweeps.report import (
    SweepInterrupted,
    check_complete,
    generate_report,
    print_line,
    rows_folder,
)
from orchestrator.sweeps.spec import parse_spec

SPEC = {
    "name": "report-tiny",
    "method": ["erm", "sgt"],
    "dataset": "digits",
    "sampler": "grid",
    "train": {"epochs": 1},
    "eval": {
        "eval_eps": 0.1,
        "grid": [0.2],
        "eval_mode": "fast",
        "attacks": ["fgsm", "pgd"],
        "pgd_steps": 2,
        "audit_probes": False,
        "limit": 30,
    },
    "objective": {"robust_acc": "max"},
    "seeds": [0, 1],
    "max_concurrent": 2,
    "resources": {"cpus": 1},
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    spec = folder / "report-tiny.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    out = folder / "docs" / "results.md"
    generate_report([str(spec)], storage=str(folder / "results"), out=out, shortcut=False)
    return folder, spec, out


def test_grid_sweep_trains_every_method_for_every_seed(generated):
    folder, _, _ = generated
    rows = read_leaderboard(str(folder / "results"), "report-tiny")
    assert sorted(zip(rows["method"], rows["seed"], strict=True)) == [
        ("erm", 0),
        ("erm", 1),
        ("sgt", 0),
        ("sgt", 1),
    ]
    assert set(rows["status"]) == {"ok"} and set(rows["eval_mode"]) == {"fast"}
    for curve, auc in zip(rows["robust_curve"], rows["faithfulness_auc"], strict=True):
        assert {(p["attack"], p["eps"]) for p in curve} >= {("autoattack", 0.1), ("worst", 0.2)}
        assert 0.0 <= auc <= 1.0


def test_report_tables_come_from_the_rows(generated):
    folder, _, out = generated
    text = out.read_text()
    rows = read_leaderboard(str(folder / "results"), "report-tiny")
    erm = rows[rows["method"] == "erm"]["clean_acc"]
    mean, sd = 100 * erm.mean(), 100 * erm.std()
    assert f"| ERM | 2 | 30 | {mean:.1f} ± {sd:.1f} |" in text  # seeds, n (the limit)
    assert "| SGT | 2 |" in text
    assert "robust @ 0.1" in text and "robust @ 0.2" in text
    for link in ("curves_digits.png", "pareto_digits"):
        assert link in text
    figures = list((out.parent / "results").glob("*.png"))
    assert {p.stem.split("_")[0] for p in figures} >= {"curves", "pareto", "faithfulness"}


def test_a_second_generation_runs_nothing_and_rewrites_the_report(generated, capsys):
    folder, spec, out = generated
    before = read_leaderboard(str(folder / "results"), "report-tiny")
    first = out.read_text()
    out.unlink()
    argv = ["report", "--spec", str(spec), "--storage", str(folder / "results"), "--out", str(out)]
    assert main([*argv, "--no-shortcut"]) == 0
    assert "all 4 trials on the leaderboard; not run again" in capsys.readouterr().out
    after = read_leaderboard(str(folder / "results"), "report-tiny")
    assert list(after["trial_id"]) == list(before["trial_id"])
    # The time it took is the trials' (first start to last end), not this rendering's.
    span = re.search(r"trials ran .*? UTC \((\d+) minutes of wall time", first)
    assert span, first.splitlines()[2]
    assert span.group(0) in out.read_text()


def test_a_missing_spec_exits_2_with_one_line(tmp_path, capsys):
    code = main(["report", "--spec", str(tmp_path / "none.yaml"), "--no-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "none.yaml" in err


def test_a_sweep_that_ends_short_stops_the_report(generated):
    # Tune returns normally after a Ctrl-C; the report must stop there (exit 130 through
    # the CLI's KeyboardInterrupt), not go on to the next sweep.
    folder, _, _ = generated
    bigger = parse_spec({**SPEC, "seeds": [0, 1, 2]})  # 6 trials; the leaderboard has 4
    with pytest.raises(SweepInterrupted, match="4 of 6 trials"):
        check_complete(bigger, str(folder / "results"))
    check_complete(parse_spec(SPEC), str(folder / "results"))  # complete: no error
    # Every row there, but Tune returned with a resumed trial unfinished (its row is
    # from the run that failed before): interrupted all the same.
    with pytest.raises(SweepInterrupted, match="3 of 4 trials"):
        check_complete(parse_spec(SPEC), str(folder / "results"), unfinished=1)


def test_the_progress_function_pickles_after_ray_swaps_print(monkeypatch):
    import builtins
    import pickle

    from ray import cloudpickle  # what Tune pickles its callbacks with

    # The builtin itself then fails to pickle ("not the same object as builtins.print");
    # a module function pickles by reference whatever print is.
    monkeypatch.setattr(builtins, "print", lambda *args, **kw: None)  # as Ray Train does
    assert pickle.loads(cloudpickle.dumps(print_line)) is print_line


def test_a_sweep_killed_while_starting_is_started_afresh(generated, tmp_path):
    from orchestrator.sweeps.tune import restorable

    folder, _, _ = generated
    assert restorable(folder / "results" / "report-tiny")  # a real finished experiment
    (tmp_path / "tuner.pkl").touch()  # what a driver killed inside Tuner() leaves
    assert not restorable(tmp_path)


def _commit_partial(generated, out) -> set[str]:
    """The generated section's committed rows less SGT seed 1, beside ``out`` as another
    machine's checkout has them; returns the trial ids kept."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    _, _, first = generated
    source, target = rows_folder(first), rows_folder(out)
    target.mkdir(parents=True)
    for spec_file in source.glob("*.spec.yaml"):  # the spec the rows came from
        (target / spec_file.name).write_text(spec_file.read_text())
    table = pq.read_table(source / "report-tiny.parquet")
    dropped = pc.and_(pc.equal(table["method"], "sgt"), pc.equal(table["seed"], 1))
    table = table.filter(pc.invert(dropped))
    pq.write_table(table, target / "report-tiny.parquet")
    return set(table["trial_id"].to_pylist())


def test_a_section_resumes_on_another_machine_from_its_committed_rows(
    generated, tmp_path, capsys, starts_ray
):
    _, spec, _ = generated
    out = tmp_path / "docs" / "results.md"
    carried = _commit_partial(generated, out)
    assert len(carried) == 3

    # Rendered from the committed rows alone, the section says it is partial.
    generate_report([str(spec)], storage=str(tmp_path / "results"), out=out, run=False,
                    shortcut=False)  # fmt: skip
    assert "_Partial: 3 of 4 trials finished" in out.read_text()

    # A fresh results root (another machine): only the missing trial runs.
    generate_report([str(spec)], storage=str(tmp_path / "results"), out=out,
                    shortcut=False, progress=print_line)  # fmt: skip
    printed = capsys.readouterr().out
    assert "3 rows carried over" in printed
    assert re.findall(r"trial \S+ done: (\w+ seed \d)", printed) == ["sgt seed 1"]
    rows = read_leaderboard(str(tmp_path / "results"), "report-tiny")
    assert len(rows) == 4 and set(rows["status"]) == {"ok"}
    assert carried < set(rows["trial_id"])  # the carried rows, as they were
    committed = read_rows_file(rows_folder(out) / "report-tiny.parquet")
    assert sorted(zip(committed["method"], committed["seed"], strict=True)) == [
        ("erm", 0), ("erm", 1), ("sgt", 0), ("sgt", 1)
    ]  # fmt: skip
    assert "_Partial" not in out.read_text()


def test_rows_of_another_protocol_are_not_carried(generated, tmp_path):
    from orchestrator.sweeps.report import _carries

    _, _, first = generated
    committed = rows_folder(first) / "report-tiny.parquet"
    assert _carries(parse_spec(SPEC), committed)
    longer = parse_spec({**SPEC, "train": {"epochs": 2}})  # same methods and seeds
    assert not _carries(longer, committed)


def test_pending_trials_are_the_grid_pairs_without_an_ok_row(generated):
    from orchestrator.sweeps.tune import pending_trials

    folder, _, _ = generated
    rows = read_leaderboard(str(folder / "results"), "report-tiny")
    spec = parse_spec(SPEC)
    assert pending_trials(spec, rows) == []
    without = rows[~((rows["method"] == "erm") & (rows["seed"] == 0))]
    assert pending_trials(spec, without) == [({"method": "erm", "erm": {}}, 0)]
    failed = rows.assign(status=["error"] + ["ok"] * (len(rows) - 1))
    assert len(pending_trials(spec, failed)) == 1


def test_a_difference_inside_the_seed_spread_is_no_clear_difference():
    from orchestrator.sweeps.report import _difference, _verdict

    wide = _difference([0.5, 0.6, 0.7], [0.1, 0.1, 0.1])
    assert wide.points == pytest.approx(50.0)
    assert wide.margin == pytest.approx(200 * (0.01 / 3) ** 0.5)
    assert wide.clear and "agrees" in _verdict(wide, 35.0)
    small = _difference([0.30, 0.32, 0.34], [0.1, 0.1, 0.1])
    assert small.clear and "smaller than claimed" in _verdict(small, 35.0)
    noise = _difference([0.5, 0.6, 0.4], [0.45, 0.55, 0.5])
    assert not noise.clear and "does not hold" in _verdict(noise, 35.0)
    assert str(noise) == f"{noise.points:+.1f} ± {noise.margin:.1f}"
