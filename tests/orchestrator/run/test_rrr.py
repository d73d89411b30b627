"""RRR through the run path: `limelight train --method rrr` trains on the data set's
annotation masks and records its config, starts from a checkpoint when given one, and
bad input exits 2 with one line naming the flag before anything is written."""

from __future__ import annotations

import json

import pytest

from orchestrator.checkpoints import read_checkpoint
from orchestrator.cli import main
from orchestrator.config import RunSettings, TrainConfig
from orchestrator.run import run
from tests.quick import QUICK_EVAL, QUICK_FLAGS


def test_rrr_trains_on_digits_shortcut_and_records_its_config(tmp_path, capsys):
    argv = ["train", "--method", "rrr", "--dataset", "digits_shortcut", "--epochs", "2"]
    assert main([*argv, "--storage", str(tmp_path), "--out", "rrr", *QUICK_FLAGS]) == 0
    assert "rrr on digits_shortcut (small_cnn), 2 epochs" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "rrr" / "config.json").read_text())
    assert recorded["method"] == "rrr" and recorded["dataset"] == "digits_shortcut"
    assert recorded["reg_weight"] == 1.0 and recorded["start_checkpoint"] is None
    state = read_checkpoint(tmp_path / "rrr" / "checkpoint.pt")
    assert state["meta"]["config"] == recorded
    history = state["history"]
    assert len(history) == 2 and history[-1]["terms"]["grad_penalty"] >= 0
    assert (tmp_path / "rrr" / "eval.json").exists()
    # The same command again finds the finished run and reports it, not retraining.
    assert main([*argv, "--storage", str(tmp_path), "--out", "rrr", *QUICK_FLAGS]) == 0


def test_rrr_starts_from_a_checkpoint(tmp_path):
    settings = RunSettings(storage=str(tmp_path), device="cpu")
    erm = run(
        TrainConfig.create(method="erm", dataset="digits_shortcut", epochs=4),
        settings,
        eval_config=QUICK_EVAL,
    )
    # At a learning rate too small to move the weights, one epoch keeps the model it
    # started from: the checkpoint's, or a fresh one at chance.
    tiny = {"method": "rrr", "dataset": "digits_shortcut", "epochs": 1, "lr": 1e-9}
    started = run(
        TrainConfig.create(**tiny, start_checkpoint=str(erm.checkpoint)),
        settings,
        eval_config=QUICK_EVAL,
    )
    scratch = run(TrainConfig.create(**tiny, seed=1), settings, eval_config=QUICK_EVAL)
    assert erm.evaluation.clean_acc > 0.3
    assert started.evaluation.clean_acc == pytest.approx(erm.evaluation.clean_acc, abs=0.03)
    assert scratch.evaluation.clean_acc < 0.25
    recorded = json.loads((started.run_dir / "config.json").read_text())
    assert recorded["start_checkpoint"] == str(erm.checkpoint)


@pytest.mark.parametrize(
    ("extra", "parts"),
    [
        (
            [],
            ["--dataset", "annotation masks", "digits_shortcut, mnist5k_decoy", "digits has none"],
        ),
        (["--dataset", "mnist5k"], ["--dataset", "mnist5k has none"]),
        (["--dataset", "digits_shortcut", "--reg-weight", "-1"], ["--reg-weight", ">= 0"]),
        (
            ["--dataset", "digits_shortcut", "--start-checkpoint", "missing.pt"],
            ["--start-checkpoint", "missing.pt"],
        ),
        (
            ["--dataset", "digits_shortcut", "--spurious", "annotated"],
            ["--spurious", "not used by --method rrr"],
        ),
    ],
)
def test_bad_rrr_input_exits_2_before_any_work(extra, parts, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["train", "--method", "rrr", *extra])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert all(part in err for part in parts), err
    assert list(tmp_path.iterdir()) == []


def test_a_start_checkpoint_of_another_data_set_exits_2(tmp_path, capsys, monkeypatch):
    erm = run(
        TrainConfig.create(method="erm", dataset="digits", epochs=1),
        RunSettings(storage=str(tmp_path / "erm"), device="cpu"),
        eval_config=QUICK_EVAL,
    )
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--method", "rrr", "--dataset", "mnist5k_decoy"]
    assert main([*argv, "--start-checkpoint", str(erm.checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--start-checkpoint" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["erm"]
