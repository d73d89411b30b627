"""Sweeps through real Ray Tune and Optuna on a local Ray (2 CPUs): rows for finished,
ASHA-stopped and failed trials, a multi-objective search, resume after a killed
driver (and the same sweep refused without --resume), two concurrent sweeps of one
name, and the HParams summary."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from orchestrator.leaderboard import read_leaderboard
from orchestrator.sweeps.spec import parse_spec
from orchestrator.sweeps.tune import run_sweep

pytestmark = pytest.mark.slow

SPEC = {
    "name": "t",
    "method": "sgt",
    "dataset": "digits",
    "train": {"epochs": 2},
    "search": {"mask_ratio": {"uniform": [0.2, 0.8]}, "reg_weight": {"loguniform": [0.1, 10]}},
    "eval": {
        "eval_eps": 0.1,
        "attacks": ["pgd"],
        "pgd_steps": 2,
        "limit": 40,
        # The papers' PGD only: these tests are about Tune; test_report.py runs a sweep
        # with the fast ensemble.
        "eval_mode": "pgd",
        "audit_probes": False,
    },
    "objective": {"robust_acc": "max"},
    "trials": 2,
    "seeds": [0],
    "max_concurrent": 2,
    "keep_checkpoints": 1,
}


def _spec(**changes):
    text = copy.deepcopy(SPEC)
    text.update(changes)
    return parse_spec(text)


@pytest.fixture(scope="module")
def sweep_ray():
    import ray

    ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_seeded_sweep_leaves_one_row_per_trial(sweep_ray, tmp_path, capsys):
    lines = []
    report = run_sweep(_spec(seeds=[0, 1]), storage=str(tmp_path), progress=lines.append)
    rows = read_leaderboard(str(tmp_path), "t")
    assert report.trials == 4 and report.ok == 4 and len(rows) == 4
    assert set(rows["status"]) == {"ok"} and rows["trial_id"].is_unique
    # Two configurations, each run once per seed: the seeds of one share its config_id.
    assert sorted(rows.groupby("config_id")["seed"].apply(sorted).tolist()) == [[0, 1], [0, 1]]
    for _, row in rows.iterrows():
        assert 0.2 <= row["mask_ratio"] <= 0.8 and 0.1 <= row["reg_weight"] <= 10
        assert row["eval_eps"] == 0.1 and row["n_eval"] == 40 and row["epochs"] == 2
        assert isinstance(row["clean_acc"], float) and 0 <= row["robust_acc"] <= row["clean_acc"]
    # One line per finished trial, with its parameters and validation objective.
    assert len(lines) == 4 and all("robust_acc" in line and "mask_ratio" in line for line in lines)
    # Checkpoints are bounded (keep_checkpoints: 1) and the rows say which remain.
    kept = rows[rows["checkpoint"].notna()]
    assert len(kept) == 1 and Path(kept.iloc[0]["checkpoint"]).is_file()
    assert len(list((tmp_path / "t" / "runs").glob("*/checkpoint.pt"))) == 1
    assert (tmp_path / "t" / "spec.yaml").is_file()
    # The HParams summary (Tune's TensorBoard logger): searched values against the final
    # report, one session per trial, beside each trial's own curves.
    trial_dirs = sorted((tmp_path / "t").glob("run_trial_*"))
    assert len(trial_dirs) == 4
    events = EventAccumulator(str(trial_dirs[0]))
    events.Reload()
    assert "_hparams_/session_start_info" in events.summary_metadata
    # One column per searched field under its own name, the method and the seed; not
    # Tune's flattened config (sgt/mask_ratio, __trial_index__).
    plugin = events.summary_metadata["_hparams_/experiment"].plugin_data.content
    experiment = HParamsPluginData.FromString(plugin).experiment
    columns = {info.name for info in experiment.hparam_infos}
    assert columns == {"method", "mask_ratio", "reg_weight", "seed"}, columns
    assert "ray/tune/robust_acc" in events.Tags()["scalars"]
    assert list((tmp_path / "t" / "runs").glob("*/tensorboard/events.out.tfevents.*"))
    _check_best(tmp_path, rows, capsys)


def _check_best(root: Path, rows, capsys) -> None:
    """--best re-evaluates the top trial (by the validation objective) on the full test
    split and prints a limelight train command that rebuilds its exact config."""
    import shlex

    from orchestrator.cli import build_parser
    from orchestrator.cli.train import configs as _configs
    from orchestrator.config import TrainConfig
    from orchestrator.sweeps.tune import best_trials, train_command

    (best,) = best_trials(str(root), "t", top=1)
    assert best.checkpoint is not None and best.checkpoint.is_file()  # the kept one
    command = train_command(best.config)
    args = build_parser().parse_args(shlex.split(command)[1:])
    config, _settings, _eval = _configs(args)
    assert config == TrainConfig.from_dict(best.config)
    assert best.trial_id in set(rows["trial_id"])
    from orchestrator.cli import main

    capsys.readouterr()
    # The papers' attacks only: the standard ensemble on 360 images is most of this
    # test's time otherwise (test_cli's evaluate runs an ensemble through the CLI).
    best = ["sweep", "--best", "t", "--top", "1", "--eval-mode", "pgd", "--storage", str(root)]
    assert main(best) == 0
    out = capsys.readouterr().out
    assert command in out and "full evaluation on the test split" in out
    assert "autoattack" not in out
    assert "n = 360 test images" in out  # the whole test split, not the sweep's 40


def test_stopped_and_failed_trials_leave_rows(sweep_ray, tmp_path):
    # A learning rate of 1e9 makes the loss NaN at once: the trial fails, naming it.
    failing = _spec(name="fail", trials=1, search={"lr": {"choice": [1.0e9]}})
    report = run_sweep(failing, storage=str(tmp_path))
    (row,) = read_leaderboard(str(tmp_path), "fail").to_dict("records")
    assert report.errors == 1 and row["status"] == "error"
    assert "loss became" in row["error"] and "epoch 1" in row["error"]
    assert pd.isna(row["clean_acc"]) and pd.isna(row["robust_acc"])
    # ASHA with a grace period of one epoch stops the worse half at the first rung.
    asha = _spec(
        name="asha", trials=4, train={"epochs": 4}, max_concurrent=4,
        asha={"metric": "val_acc", "mode": "max", "grace_period": 1, "reduction_factor": 2},
        search={"lr": {"loguniform": [1.0e-4, 0.05]}},
    )  # fmt: skip
    run_sweep(asha, storage=str(tmp_path))
    rows = read_leaderboard(str(tmp_path), "asha")
    assert len(rows) == 4 and rows["trial_id"].is_unique
    stopped = rows[rows["status"] == "stopped"]
    # ASHA's rungs are epochs 1, 2 and 4 (max_t is epochs + 1, the final report): a trial
    # in the worse half at epoch 4 is stopped there, trained but not evaluated.
    assert len(stopped) >= 1 and stopped["stopped_epoch"].between(1, 4).all()
    assert (rows["status"] == "ok").sum() >= 1


def test_a_multi_objective_sweep(sweep_ray, tmp_path):
    spec = _spec(name="pareto", objective={"robust_acc": "max", "clean_acc": "max"})
    report = run_sweep(spec, storage=str(tmp_path))
    rows = read_leaderboard(str(tmp_path), "pareto")
    assert report.ok == 2 and len(rows) == 2
    # With two trials the front holds one (if it wins on both) or both.
    assert 1 <= len(report.pareto) <= 2 and set(report.pareto) <= set(rows["trial_id"])


def _sweep_process(spec_path: Path, root: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "sweep", str(spec_path), "--storage", str(root),
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip


def _write_spec(path: Path, **changes) -> Path:
    import yaml

    text = copy.deepcopy(SPEC)
    text.update(changes)
    path.write_text(yaml.safe_dump(text))
    return path


def test_resume_after_a_killed_driver_finishes_with_one_row_per_trial(starts_ray, tmp_path):
    spec = _write_spec(tmp_path / "r.yaml", name="r", trials=4, max_concurrent=1)
    driver = _sweep_process(spec, tmp_path)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and read_leaderboard(str(tmp_path), "r").empty:
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
    driver.wait(timeout=60)
    before = read_leaderboard(str(tmp_path), "r")
    assert 1 <= len(before) < 4
    # Without --resume the same sweep is refused, before any Ray work, and loses nothing.
    again = _sweep_process(spec, tmp_path)
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 2 and "--resume" in output and "--name" in output, output
    resumed = _sweep_process(spec, tmp_path, "--resume")
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output[-3000:]
    rows = read_leaderboard(str(tmp_path), "r")
    assert len(rows) == 4 and rows["trial_id"].is_unique, rows[["trial_id", "status"]]
    assert set(rows["status"]) == {"ok"}
    # A trial whose row was written before the kill is not run again (its row stays),
    # and no run directory is left without a row.
    kept = rows.set_index("trial_id").loc[before["trial_id"], "created_at"]
    assert list(kept) == list(before["created_at"]), output[-3000:]
    runs = {path.name for path in (tmp_path / "r" / "runs").iterdir()}
    assert runs == set(rows["trial_id"]), runs
    assert not (tmp_path / "r" / "driver.lock").exists()


def test_two_concurrent_sweeps_of_one_name_one_runs_the_other_is_refused(starts_ray, tmp_path):
    spec = _write_spec(tmp_path / "c.yaml", name="c", trials=1, max_concurrent=1)
    drivers = [_sweep_process(spec, tmp_path) for _ in range(2)]
    outputs = [driver.communicate(timeout=600)[0] for driver in drivers]
    codes = sorted(driver.returncode for driver in drivers)
    assert codes == [0, 2], [out[-2000:] for out in outputs]
    refused = outputs[[d.returncode for d in drivers].index(2)]
    assert "being run by" in refused or "--resume" in refused, refused
    rows = read_leaderboard(str(tmp_path), "c")
    assert len(rows) == 1 and rows["status"].iloc[0] == "ok"
    (checkpoint,) = rows["checkpoint"]  # kept (keep_checkpoints 1), and not pruned by the
    assert Path(checkpoint).is_file()  # driver that was refused
    # --finish (make run): a complete sweep is restored, not run again.
    finish = _sweep_process(spec, tmp_path, "--finish")
    output, _ = finish.communicate(timeout=600)
    assert finish.returncode == 0, output[-3000:]
    again = read_leaderboard(str(tmp_path), "c")
    assert list(again["created_at"]) == list(rows["created_at"]), output[-3000:]
    assert Path(checkpoint).is_file()


def test_a_trial_can_drive_a_torchtrainer(starts_ray, tmp_path):
    """resources.workers 2: each trial runs its job on a 2-worker TorchTrainer inside its
    Tune function, and its epochs still reach Tune (through run()'s on_epoch relay,
    whose queue once asked for a CPU the trial's placement group did not have)."""
    import ray

    ray.shutdown()
    # Logical CPUs: the trial's own 0.1 beside its 2 workers' whole CPUs.
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        spec = _spec(name="ddp", trials=1, train={"epochs": 1}, resources={"workers": 2})
        report = run_sweep(spec, storage=str(tmp_path))
    finally:
        ray.shutdown()
    (row,) = read_leaderboard(str(tmp_path), "ddp").to_dict("records")
    assert report.ok == 1 and row["status"] == "ok", row.get("error")
    assert (tmp_path / "ddp" / "runs" / row["trial_id"] / "ray" / "train").is_dir()
    (trial_dir,) = (tmp_path / "ddp").glob("run_trial_*")
    reports = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    assert [r.get("epoch") for r in reports if "val_acc" in r] == [1]  # the relayed epoch


def test_an_lgr_trial_reserves_a_bundle_per_lime_actor(sweep_ray, tmp_path):
    from orchestrator.sweeps.tune import GRID_VARIANT, _resources

    spec = _spec(
        name="lgr",
        method=["erm", "lgr"],
        sampler="grid",
        search={},
        train={
            "epochs": 1,
            "lgr": {"pretrain_epochs": 1, "rounds": 1, "lime_samples": 50,
                    "explain_fraction": 0.02, "attack_eps": 0.0},
        },
        seeds=[0],
    )  # fmt: skip
    erm, lgr = (dict(variant) for variant in spec.grid())
    per_trial = _resources(spec)
    assert len(per_trial({GRID_VARIANT: erm}).bundles) == 1
    assert per_trial({GRID_VARIANT: lgr}).bundles == [{"CPU": 1.0}, {"CPU": 1.0}]
    run_sweep(spec, storage=str(tmp_path))
    rows = read_leaderboard(str(tmp_path), "lgr")
    assert set(rows["status"]) == {"ok"}, rows[["method", "error"]]
    lgr_row = rows[rows["method"] == "lgr"].iloc[0]
    assert 0.0 <= lgr_row["lime_faithfulness_auc"] <= 1.0  # the LIME-order curve


def test_an_error_row_names_the_exception_not_the_messages_last_line(tmp_path):
    from types import SimpleNamespace

    from orchestrator.sweeps.tune import _error_line

    error = tmp_path / "error.txt"
    error.write_text(
        'Failure # 1\nTraceback (most recent call last):\n  File "x.py", line 1\n'
        "ray.exceptions.RayTaskError(RuntimeError): ray::ImplicitFunc.train()\n"
        "RuntimeError: No trial resources are available for launching the actor.\n"
        ">  resources_per_trial=tune.PlacementGroupFactory(\n"
        "Where `N` is the number of slots to reserve for trial actors.\n"
    )
    line = _error_line(SimpleNamespace(error_file=str(error)))
    assert line == "RuntimeError: No trial resources are available for launching the actor."
    error.write_text("something odd\n")
    assert _error_line(SimpleNamespace(error_file=str(error))) == "something odd"
