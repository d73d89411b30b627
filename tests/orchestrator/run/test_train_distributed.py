"""The distributed training path on a real local Ray (2 CPUs): a 2-worker TorchTrainer
(gloo) takes the inline run's steps, and survives a killed worker by resuming from its
last reported checkpoint. About 1.5-2.5 min on 2 cores, most of it Train start-up."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray.train
import torch

# Ray ships psutil in its third-party folder and puts it on sys.path when imported.
import psutil  # isort: skip

from orchestrator.checkpoints import read_checkpoint
from orchestrator.config import ConfigError, EvalConfig, RunSettings, TrainConfig
from orchestrator.run import run
from orchestrator.run.job import train_job

pytestmark = pytest.mark.slow

# small_cnn has neither BatchNorm nor dropout, so the only difference between one
# process on whole batches and two on half batches is the order of float sums.
CONFIG = TrainConfig(method="erm", dataset="digits", model="small_cnn", epochs=2, batch_size=64)


def _settings(path: Path, **overrides) -> RunSettings:
    return RunSettings(storage=str(path.parent), out=path.name, device="cpu", **overrides)


EVAL = EvalConfig(limit=50, attacks=("pgd",), pgd_steps=2, eps=(0.1,), eval_mode="pgd")


def test_two_workers_take_the_inline_steps(local_ray, digits, tmp_path):
    inline = run(CONFIG, _settings(tmp_path / "inline"), eval_config=EVAL)
    seen = []
    ddp = run(
        CONFIG, _settings(tmp_path / "ddp", workers=2), eval_config=EVAL, on_epoch=seen.append
    )

    assert [m.epoch for m in ddp.history] == [1, 2]
    np.testing.assert_allclose(
        [m.loss for m in ddp.history], [m.loss for m in inline.history], rtol=1e-4
    )
    ours, theirs = read_checkpoint(ddp.checkpoint), read_checkpoint(inline.checkpoint)
    assert ours["epoch"] == 2 and ours["meta"]["config"] == ddp.config.to_dict()
    for name, weight in theirs["model"].items():
        torch.testing.assert_close(ours["model"][name], weight, rtol=1e-3, atol=1e-5)
    # The driver evaluated the final checkpoint and wrote what the inline path writes.
    assert ddp.checkpoint == tmp_path / "ddp" / "checkpoint.pt"
    assert (tmp_path / "ddp" / "config.json").is_file()
    assert (tmp_path / "ddp" / "eval.json").is_file()
    assert list((tmp_path / "ddp" / "tensorboard").glob("events.out.tfevents.*"))
    assert abs(ddp.evaluation.clean_acc - inline.evaluation.clean_acc) <= 0.04
    # Rank 0's reports reached on_epoch on the driver, through Train's callback.
    assert [m.epoch for m in seen] == [1, 2]
    assert [m.loss for m in seen] == pytest.approx([m.loss for m in ddp.history], rel=1e-6)
    assert seen[-1].test_acc == pytest.approx(ddp.history[-1].test_acc)


@pytest.mark.parametrize("method", ["adversarial", "sgt", "asgt", "lgr"])
def test_every_method_runs_inline_and_on_two_workers(local_ray, method, tmp_path):
    """One epoch of each method both ways. Their noise (PGD starts, masking noise) is
    drawn per process, so two ranks draw other numbers than one process does: the
    losses agree to a tolerance, not to the last digit as ERM's do."""
    from methods.data import load_dataset

    dataset = load_dataset("digits_shortcut")  # LGR trains on its ground-truth masks
    masks = dataset.train.masks if method == "lgr" else None
    options = {"attack_steps": 2, "attack_eps": 0.1} if method != "sgt" else {}
    config = TrainConfig.create(
        **{**CONFIG.to_dict(), "method": method, "dataset": "digits_shortcut", "epochs": 1},
        **options,
    ).resolved(dataset.default_eps)
    runs = [
        train_job(
            config,
            dataset,
            tmp_path / str(workers),
            _settings(tmp_path / str(workers), workers=workers),
            eval_config=EVAL,
            masks=masks,
        )
        for workers in (1, 2)
    ]
    inline, ddp = (run.history[-1] for run in runs)
    assert ddp.loss == pytest.approx(inline.loss, rel=0.05)
    assert set(ddp.terms) == set(inline.terms)
    for name, value in inline.terms.items():
        assert ddp.terms[name] == pytest.approx(value, rel=0.1, abs=1e-3)


def _train_workers() -> list[psutil.Process]:
    """The Train worker processes of the Ray instance this test process started (its
    raylet is our child), not those of anyone else's Ray on the machine."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.name().startswith("ray::RayTrainWorker"):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _registered_checkpoint(run_dir: Path) -> bool:
    """Whether Train has registered a reported checkpoint. Only a registered one is
    resumed from: the controller collects reports every 2 s, and a worker killed before
    that loses its report though the checkpoint folder is already in storage."""
    if not any(run_dir.glob("checkpoint_*")):  # nothing reported yet: skip the read
        return False
    try:
        return ray.train.Result.from_path(run_dir).checkpoint is not None
    except Exception:  # no snapshot yet, or one being written
        return False


def _kill_a_worker_after_first_checkpoint(run_dir: Path, killed: list, stop: threading.Event):
    while not stop.is_set():
        if _registered_checkpoint(run_dir):
            workers = _train_workers()
            if workers:
                workers[0].kill()  # SIGKILL: no chance to clean up, like a lost node
                killed.append(workers[0].pid)
                return
        time.sleep(0.1)


def test_a_killed_worker_restarts_and_resumes(local_ray, digits, tmp_path):
    out = tmp_path / "run"
    # Batches of 16 make epochs long enough (~1 s on 2 busy cores) that the kill lands
    # after a checkpoint is registered and well before the last epoch.
    config = dataclasses.replace(CONFIG, epochs=6, batch_size=16)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(
        target=_kill_a_worker_after_first_checkpoint,
        args=(out / "ray" / "train", killed, stop),
        daemon=True,
    )
    killer.start()
    try:
        outcome = run(config, _settings(out, workers=2), eval_config=EVAL)
    finally:
        stop.set()
        killer.join(timeout=10)

    assert killed, "no Train worker was killed"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == "zombie"
    assert [m.epoch for m in outcome.history] == [1, 2, 3, 4, 5, 6]
    assert read_checkpoint(outcome.checkpoint)["epoch"] == 6
    # The last epoch was reported by a restarted worker group that resumed from a
    # checkpoint: a run that never failed reports resumed_from_epoch 0 throughout.
    final = ray.train.Result.from_path(out / "ray" / "train").metrics
    assert final["epoch"] == 6
    assert 1 <= final["resumed_from_epoch"] < 6


def test_bad_scaling_is_refused_before_any_ray_work(tmp_path):
    with pytest.raises(ConfigError, match="multiple of --workers") as error:
        run(dataclasses.replace(CONFIG, batch_size=63), _settings(tmp_path / "r", workers=2))
    assert error.value.field == "batch_size"
    with pytest.raises(ConfigError, match="must be >= 1") as error:
        _settings(tmp_path / "r", workers=0)
    assert error.value.field == "workers"
    with pytest.raises(ConfigError) as error:
        _settings(tmp_path / "r", gpus_per_worker=-0.5)
    assert error.value.field == "gpus_per_worker"
    assert not any(tmp_path.iterdir())  # refused before writing anything
