"""The one run path: `limelight train` and `run()` train the same thing, a new method
needs only its file and its registration, configs are resolved and strict, and LGR
resumes like every other run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from methods.options import Options, option
from methods.training import ERM, METHODS, register_method
from orchestrator.cli import build_parser, main
from orchestrator.config import ConfigError, RunSettings, TrainConfig
from orchestrator.run import run
from tests.quick import QUICK_EVAL, QUICK_FLAGS


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's own errors
        return int(exit_.code)


def test_the_quick_flags_are_the_quick_eval_config():
    from orchestrator.cli.train import configs as _configs

    _config, _settings, evaluation = _configs(build_parser().parse_args(["train", *QUICK_FLAGS]))
    assert evaluation == QUICK_EVAL


def test_cli_and_run_train_identical_weights(tmp_path):
    flags = ["--method", "sgt", "--epochs", "2", "--mask-ratio", "0.3", "--seed", "4"]
    assert main(["train", *flags, "--storage", str(tmp_path), "--out", "cli", *QUICK_FLAGS]) == 0
    config = TrainConfig.create(method="sgt", epochs=2, mask_ratio=0.3, seed=4)
    result = run(
        config,
        RunSettings(storage=str(tmp_path), out="api"),
        eval_config=dataclasses.replace(QUICK_EVAL, seed=4),
    )
    cli = torch.load(tmp_path / "cli" / "checkpoint.pt", weights_only=True)
    api = torch.load(result.checkpoint, weights_only=True)
    for name, weight in cli["model"].items():
        assert torch.equal(weight, api["model"][name]), name
    for key, state in cli["optimizer"]["state"].items():
        assert torch.equal(
            state["momentum_buffer"], api["optimizer"]["state"][key]["momentum_buffer"]
        )
    assert cli["meta"]["config"] == api["meta"]["config"] == result.config.to_dict()
    assert json.loads((tmp_path / "cli" / "eval.json").read_text())["clean_acc"] == (
        result.evaluation.clean_acc
    )


def test_resolved_config_records_the_values_used(tmp_path):
    result = run(
        TrainConfig.create(method="asgt", epochs=1, attack_steps=1),
        RunSettings(storage=str(tmp_path)),
        eval_config=QUICK_EVAL,
    )
    recorded = json.loads((result.run_dir / "config.json").read_text())
    assert result.run_dir == tmp_path / "train" / "digits-asgt-seed0"
    # The method's defaults and the data set's eps, never None.
    assert recorded["mask_ratio"] == 0.5 and recorded["reg_weight"] == 1.0
    assert recorded["attack_eps"] == 0.1 and recorded["monitor_eps"] == 0.1
    assert recorded["model"] == "small_cnn"
    assert result.config.to_dict() == recorded
    assert TrainConfig.from_dict(recorded) == result.config


def test_an_extended_config_resolves_to_the_same_settings():
    """More epochs extend a run: resolution must not turn the epoch count into other
    recorded settings (monitor_every, say), or the extension would be refused."""
    for method, options in [("erm", {}), ("adversarial", {}), ("lgr", {"attack_eps": 0.0})]:
        short = TrainConfig.create(method=method, epochs=30, **options).resolved(0.1)
        long = TrainConfig.create(method=method, epochs=60, **options).resolved(0.1)
        ignored = ("epochs", "pretrain_epochs") if method == "lgr" else ("epochs",)
        assert long.differences(short, ignore=ignored) == [], method


def test_run_settings_are_validated():
    for field, value in [("workers", 0), ("gpus_per_worker", -1.0), ("actors", 0)]:
        with pytest.raises(ConfigError) as error:
            RunSettings(**{field: value})
        assert error.value.field == field
    with pytest.raises(ConfigError, match="cuda:N") as error:
        RunSettings(device="gpu0")
    assert error.value.field == "device"


def test_storage_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LIMELIGHT_STORAGE", str(tmp_path))
    settings = RunSettings(out="x")
    assert settings.storage == str(tmp_path)
    assert settings.run_dir(TrainConfig()) == tmp_path / "x"
    with pytest.raises(ConfigError, match="run directory") as error:
        RunSettings(storage="s3://bucket/root").run_dir(TrainConfig())
    assert error.value.field == "storage"


def test_a_relative_root_is_refused_inside_a_ray_job(monkeypatch):
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    with pytest.raises(ConfigError, match="absolute path every node reaches") as error:
        RunSettings(storage="results")
    assert error.value.field == "storage"
    assert "limelight explain also takes a URI" in error.value.message  # not sweeps
    assert RunSettings(storage="/abs/root").storage == "/abs/root"
    assert RunSettings(storage="s3://bucket/root").storage == "s3://bucket/root"


# ----------------------------------------------------------------------------- a new method


@dataclasses.dataclass(frozen=True)
class _TemperedOptions(Options):
    temperature: float = option(2.0, help="softmax temperature of the loss", low=0.0, open_low=True)


class _Tempered(ERM):
    """A dummy method: cross-entropy on logits divided by a temperature."""

    name = "tempered"
    Options = _TemperedOptions

    def loss(self, model, images, labels, masks=None):
        out = super().loss(model, images, labels, masks)
        out.loss = torch.nn.functional.cross_entropy(out.logits / self.options.temperature, labels)
        return out


@pytest.fixture
def tempered():
    register_method(_Tempered)  # place 2 of 2: the method's file (above) and this call
    yield _Tempered
    del METHODS["tempered"]


def test_a_new_method_needs_its_file_and_its_registration(tempered, tmp_path, capsys):
    """Two places (the class with its Options, and register_method) give: a validated
    flag with help, a config field, a resolved default, and a refusal for other methods."""
    train_help = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--temperature" in train_help and "tempered: softmax temperature" in train_help
    assert "tempered" in train_help  # a valid --method

    config = TrainConfig.create(method="tempered", epochs=1)
    assert config.options.temperature == 2.0  # the resolved default
    assert config.to_dict()["temperature"] == 2.0

    argv = ["train", "--method", "tempered", "--epochs", "1", "--temperature", "0.5"]
    assert main([*argv, "--storage", str(tmp_path), *QUICK_FLAGS]) == 0
    recorded = json.loads(
        (tmp_path / "train" / "digits-tempered-seed0" / "config.json").read_text()
    )
    assert recorded["temperature"] == 0.5

    capsys.readouterr()
    assert _exit_code(["train", "--method", "tempered", "--temperature", "0"]) == 2
    assert "--temperature: must be > 0" in capsys.readouterr().err
    assert _exit_code(["train", "--method", "sgt", "--temperature", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "limelight train: error: --temperature: not used by --method sgt: only tempered use it"
    )


# ----------------------------------------------------------------------------- LGR resume


LGR_FLAGS = [
    "train", "--method", "lgr", "--dataset", "digits_shortcut", "--spurious", "annotated",
    "--epochs", "1", "--pretrain-epochs", "1", "--rounds", "1", "--attack-eps", "0",
    *QUICK_FLAGS,
]  # fmt: skip


def test_the_same_lgr_command_reports_again_and_other_masks_are_refused(tmp_path, capsys):
    argv = [*LGR_FLAGS, "--storage", str(tmp_path), "--out", "lgr"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    checkpoint = tmp_path / "lgr" / "checkpoint.pt"
    stamp = checkpoint.stat().st_mtime_ns
    assert main(argv) == 0  # once: "holds a run with other settings (lr: 0.05 != 0.01)"
    again = capsys.readouterr().out
    assert _table(first) == _table(again)
    assert read_round_epochs(tmp_path / "lgr" / "round1") == 1  # not trained again
    # A round's evaluation is the light one: no masked-accuracy curves (LIME on the test
    # images each round was most of this test's time, and of an LGR trial's).
    round_eval = json.loads((tmp_path / "lgr" / "round1" / "eval.json").read_text())
    assert round_eval["faithfulness"] is None and round_eval["lime_faithfulness"] is None
    assert checkpoint.stat().st_mtime_ns >= stamp
    for changed in (["--mask-ratio", "0.3"], ["--reg-weight", "2"], ["--lr", "0.1"]):
        assert _exit_code([*argv, *changed]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--out" in err, err
        assert changed[0].removeprefix("--").replace("-", "_") in err, err


def _table(output: str) -> list[str]:
    return [line for line in output.splitlines() if "eps=" in line or line.startswith("clean")]


def read_round_epochs(round_dir: Path) -> int:
    return int(torch.load(round_dir / "checkpoint.pt", weights_only=True)["epoch"])


class _Interrupt(Exception):
    pass


def test_an_interrupted_lgr_run_resumes_mid_round(tmp_path):
    config = TrainConfig.create(
        method="lgr", dataset="digits_shortcut", spurious="annotated", epochs=3,
        pretrain_epochs=1, rounds=2, attack_eps=0.0,
    )  # fmt: skip
    settings = RunSettings(storage=str(tmp_path), out="lgr")
    seen = []

    def stop_in_round_two(metrics):
        seen.append(metrics)
        if metrics.epoch == 5:  # round 2, epoch 2 of 3
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run(config, settings, eval_config=QUICK_EVAL, on_epoch=stop_in_round_two)
    assert read_round_epochs(tmp_path / "lgr" / "round2") == 2
    result = run(config, settings, eval_config=QUICK_EVAL)
    assert [m.epoch for m in result.history] == [1, 2, 3, 4, 5, 6]
    # Epochs 1-5 were read back from checkpoints, not trained again: the same seconds.
    assert [m.seconds for m in result.history[:5]] == [m.seconds for m in seen]
    assert read_round_epochs(tmp_path / "lgr" / "round2") == 3


def test_a_validation_split_takes_the_per_epoch_metrics(tmp_path):
    from methods.data import load_dataset, split_validation
    from methods.evaluate import accuracy
    from orchestrator.checkpoints import read_checkpoint, restore_model

    config = TrainConfig.create(method="erm", epochs=2, val_fraction=0.1)
    two_eps = dataclasses.replace(QUICK_EVAL, eps=(0.1, 0.2))
    result = run(config, RunSettings(storage=str(tmp_path)), eval_config=two_eps)
    # The test split gets the whole grid; the validation split only its first eps (a
    # sweep's eval_eps: all that its objective reads).
    assert {p.eps for p in result.evaluation.robust_curve} == {0.1, 0.2}
    assert {p.eps for p in result.validation.robust_curve} == {0.1}
    _rest, validation = split_validation(load_dataset("digits"), 0.1)
    model = restore_model(read_checkpoint(result.checkpoint)).eval()
    images, labels = validation.tensors()
    assert result.history[-1].test_acc == pytest.approx(accuracy(model, images, labels))
    assert result.validation is not None and result.validation.n_eval == 40  # --limit
    assert result.evaluation.n_eval == 40
    saved = torch.load(result.checkpoint, weights_only=True)
    assert saved["meta"]["config"]["val_fraction"] == 0.1
    events = json.loads((result.run_dir / "eval.json").read_text())
    assert events["validation"]["clean_acc"] == result.validation.clean_acc


def test_the_validation_split_ranks_with_the_fast_ensemble(tmp_path):
    # The test split keeps the standard ensemble (the reported number); the validation
    # split only ranks trials, and standard there doubled a report's evaluation.
    config = TrainConfig.create(method="erm", epochs=1, val_fraction=0.1)
    standard = dataclasses.replace(
        QUICK_EVAL, eps=(0.2,), eval_mode="standard", limit=20, audit_probes=False
    )
    result = run(config, RunSettings(storage=str(tmp_path)), eval_config=standard)
    assert result.evaluation.eval_mode == "standard"
    assert "square" in result.evaluation.attack_settings
    assert result.validation is not None and result.validation.eval_mode == "fast"
    assert "square" not in result.validation.attack_settings
