"""`limelight train` and `limelight evaluate` end to end, and their exit-2 contract."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from orchestrator.cli import main
from tests.formats import write_cifar10


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def _assert_usage_error(code: int, err: str, *parts: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A 2-epoch ERM run through the CLI (module-scoped: several tests read it)."""
    out = tmp_path_factory.mktemp("runs") / "erm"
    code = main(
        [
            "train",
            "--method",
            "erm",
            "--epochs",
            "2",
            "--out",
            str(out),
            "--eps",
            "0.1",
            "--pgd-steps",
            "5",
            "--eval-mode",
            "pgd",
            "--no-audit-probes",
        ]
    )
    assert code == 0
    return out


@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        (["train", "--dataset", "imagenet"], ["--dataset", "invalid choice", "digits"]),
        (["train", "--model", "vit"], ["--model", "small_cnn", "resnet18"]),
        (["train", "--method", "magic"], ["--method", "erm", "adversarial"]),
        (["train", "--method", "asgt", "--attack-eps", "1.5"], ["--attack-eps", "[0, 1]", "1.5"]),
        (["train", "--method", "adversarial", "--attack-eps", "-0.1"], ["--attack-eps", "[0, 1]"]),
        # An option the method does not use is refused, not silently ignored.
        (["train", "--method", "adversarial", "--mask-ratio", "0.3"], ["--mask-ratio", "sgt"]),
        (["train", "--method", "sgt", "--spurious", "annotated"], ["--spurious", "lgr"]),
        (
            ["train", "--method", "sgt", "--attack-eps", "0.1"],
            ["--attack-eps", "--eps", "--monitor-eps"],
        ),
        (["train", "--attack-eps", "0.1"], ["--attack-eps", "--method erm"]),
        (["train", "--method", "erm", "--rounds", "2"], ["--rounds", "only lgr"]),
        (
            ["train", "--method", "sgt", "--saliency-target", "prob"],
            ["--saliency-target", "invalid choice", "log_prob"],
        ),
        # RunSettings out of range, and settings that do not fit the config.
        (["train", "--workers", "0"], ["--workers", ">= 1"]),
        (["train", "--gpus-per-worker", "-1"], ["--gpus-per-worker", ">= 0"]),
        (["train", "--method", "lgr", "--actors", "0"], ["--actors", ">= 1"]),
        (["train", "--workers", "3"], ["--batch-size", "multiple of --workers"]),
        (["train", "--epochs", "0"], ["--epochs", ">= 1"]),
        (["train", "--epochs", "three"], ["--epochs", "invalid int value"]),
        (["train", "--lr", "0"], ["--lr", "> 0"]),
        (["train", "--device", "tpu"], ["--device"]),
        (["train", "--model", "airbench"], ["--model", "at least 9x9", "digits is 1x8x8"]),
        (["evaluate", "--checkpoint", "x.pt", "--eps", "2"], ["--eps", "[0, 1]"]),
        (["evaluate", "--checkpoint", "x.pt", "--attacks", "cw"], ["--attacks", "fgsm, pgd"]),
        (["evaluate", "--checkpoint", "nowhere/x.pt"], ["--checkpoint", "nowhere/x.pt"]),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, parts, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(argv, capsys)
    _assert_usage_error(code, err, *parts)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_missing_data_directory_names_the_fetch_command(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = _run(
        ["train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "none"), "--out", str(out)],
        capsys,
    )
    _assert_usage_error(code, err, str(tmp_path / "none"), "--download")
    assert not out.exists()


def test_corrupt_checkpoint(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    code, _, err = _run(["evaluate", "--checkpoint", str(bad)], capsys)
    _assert_usage_error(code, err, "--checkpoint", str(bad), "not a readable checkpoint")


def test_train_writes_checkpoint_tensorboard_and_results(trained_run):
    state = torch.load(trained_run / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2 and state["meta"]["dataset"] == "digits"
    assert any((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    result = json.loads((trained_run / "eval.json").read_text())
    assert isinstance(result["clean_acc"], float) and 0.0 <= result["clean_acc"] <= 1.0
    assert {p["attack"] for p in result["robust_curve"]} == {"fgsm", "pgd", "worst"}
    config = json.loads((trained_run / "config.json").read_text())
    assert config["model"] == "small_cnn" and config["monitor_eps"] == 0.1
    assert "attack_eps" not in config  # ERM trains without an attack


def test_evaluate_prints_a_table_and_writes_json(trained_run, capsys):
    checkpoint = trained_run / "checkpoint.pt"
    code, out, _ = _run(
        [
            "evaluate",
            "--checkpoint",
            str(checkpoint),
            "--eps",
            "0.05,0.1",
            "--attacks",
            "pgd",
            "--pgd-steps",
            "5",
            "--limit",
            "50",
            "--eval-mode",
            "fast",
            "--no-audit-probes",
        ],
        capsys,
    )
    assert code == 0
    assert "clean" in out and "pgd eps=0.05" in out and "pgd eps=0.1" in out
    result = json.loads((trained_run / "checkpoint.eval.json").read_text())
    assert result["n_eval"] == 50 and result["dataset"] == "digits"
    assert [(p["attack"], p["eps"]) for p in result["robust_curve"]] == [
        (attack, eps) for eps in (0.05, 0.1) for attack in ("pgd", "autoattack", "worst")
    ]
    assert result["eval_mode"] == "fast" and "autoattack eps=0.1" in out


def test_checkpoint_for_another_shape_is_refused(trained_run, capsys, tmp_path):
    write_cifar10(tmp_path)
    code, _, err = _run(
        [
            "evaluate",
            "--checkpoint",
            str(trained_run / "checkpoint.pt"),
            "--dataset",
            "cifar10",
            "--data-dir",
            str(tmp_path),
        ],
        capsys,
    )
    _assert_usage_error(code, err, "--checkpoint", "digits (1x8x8", "cifar10 is 3x32x32")


def test_resume_with_other_settings_is_refused(trained_run, capsys):
    code, _, err = _run(
        ["train", "--method", "adversarial", "--epochs", "2", "--out", str(trained_run)], capsys
    )
    _assert_usage_error(code, err, "--out", "method: 'adversarial' != 'erm'")


def test_more_epochs_resume_the_run(trained_run, capsys, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "checkpoint.pt").write_bytes((trained_run / "checkpoint.pt").read_bytes())
    code, out, _ = _run(
        [
            "train",
            "--epochs",
            "3",
            "--out",
            str(copy),
            "--eps",
            "0.1",
            "--pgd-steps",
            "2",
            "--limit",
            "20",
        ],
        capsys,
    )
    assert code == 0 and "3 epochs" in out
    history = torch.load(copy / "checkpoint.pt", weights_only=True)["history"]
    assert [m["epoch"] for m in history] == [1, 2, 3]


def test_module_entry_point_and_help():
    for verb in ("train", "evaluate"):
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", verb, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and "--dataset" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "train", "--method", "asgt", "--attack-eps", "7"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "limelight train: error: --attack-eps: must lie in [0, 1] "
        "(L-inf on the [0,1] pixel scale), got 7"
    )


def test_sgt_draws_saliency_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    argv = [
        "train",
        "--method",
        "sgt",
        "--epochs",
        "2",
        "--out",
        str(tmp_path),
        "--limit",
        "20",
        "--attacks",
        "pgd",
        "--pgd-steps",
        "2",
        "--eval-mode",
        "pgd",
        "--eps",
        "0.1",
        "--mask-ratio",
        "0.3",
        "--saliency-target",
        "log_prob",
    ]
    assert main(argv) == 0
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Images("saliency/test_images")] == [1, 2]
    assert "loss_terms/kl" in events.Tags()["scalars"]
    recorded = json.loads((tmp_path / "config.json").read_text())
    assert recorded["mask_ratio"] == 0.3 and recorded["saliency_target"] == "log_prob"
    assert recorded["saliency_mode"] == "eval"  # SGT's own default


def test_the_train_summary_gives_training_and_evaluation_seconds_apart(tmp_path, capsys):
    argv = ["train", "--method", "erm", "--epochs", "1", "--out", str(tmp_path / "run")]
    argv += ["--limit", "20", "--eval-mode", "pgd", "--pgd-steps", "2", "--no-audit-probes"]
    assert main([*argv, "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    match = re.search(r"1 epochs, seed 0: (\d+\.\d)s training, (\d+\.\d)s evaluation", out)
    assert match, out  # (to 0.1 s: a 20-image evaluation can print 0.0s on a fast machine)


def test_a_run_result_splits_its_wall_time_into_training_and_evaluation(tmp_path):
    from orchestrator.config import EvalConfig, RunSettings, TrainConfig
    from orchestrator.run import run

    config = TrainConfig.create(method="erm", dataset="digits", epochs=1)
    evaluation = EvalConfig(eval_mode="pgd", pgd_steps=2, limit=20, audit_probes=False)
    result = run(config, RunSettings(storage=str(tmp_path), device="cpu"), eval_config=evaluation)
    assert result.eval_s > 0 and result.train_s > 0
    assert result.train_s + result.eval_s == pytest.approx(result.wall_s)


@pytest.mark.parametrize(
    ("verb", "flags", "mode"),
    [
        ("train", [], "fast"),  # proportionate to a training command (docs/evaluation.md)
        ("train", ["--eval-mode", "standard"], "standard"),
        ("evaluate", ["--checkpoint", "x.pt"], "standard"),  # the numbers one reports
    ],
)
def test_which_ensemble_each_command_evaluates_with(verb, flags, mode, capsys):
    from orchestrator.cli import build_parser, train
    from orchestrator.config import EvalConfig
    from orchestrator.flags import given

    args = build_parser([verb]).parse_args([verb, *flags])
    if verb == "train":
        assert train.configs(args)[2].eval_mode == mode
    else:
        assert EvalConfig(**given(args, EvalConfig)).eval_mode == mode
    with pytest.raises(SystemExit):
        build_parser([verb]).parse_args([verb, "--help"])
    shown = {"train": "fast", "evaluate": "standard"}[verb]  # the command's own default
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"pgd (the papers' FGSM/PGD only) (default: {shown})" in help_text
