"""The shared training loop: learning, seeding, resume, NaN stop, TensorBoard, methods."""

from __future__ import annotations

import contextlib

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.optim.optimizer import register_optimizer_step_pre_hook

from methods.evaluate import accuracy
from methods.loop import (
    LoopConfig,
    NonFiniteLossError,
    fit,
    load_checkpoint,
    resolve_device,
)
from methods.training import ERM, METHODS, AdversarialTraining, StepOutput, build_method
from tests.conftest import digits_model

FAST = LoopConfig(epochs=3, seed=3)


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


def test_erm_learns_digits(digits):
    model = digits_model(digits)
    history = fit(
        model, ERM(), digits.train, config=LoopConfig(epochs=8), test=digits.test, device="cpu"
    )
    assert [m.epoch for m in history] == list(range(1, 9))
    assert history[-1].loss < history[0].loss
    assert accuracy(model, *digits.test.tensors()) > 0.9
    assert history[-1].test_acc is not None and history[-1].test_robust_acc is None


def test_same_seed_same_run(digits):
    runs = []
    for _ in range(2):
        model = digits_model(digits, seed=1)
        history = fit(model, ERM(), digits.train, config=FAST, device="cpu")
        runs.append(([m.loss for m in history], _weights(model)))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))
    other = digits_model(digits, seed=1)
    history = fit(other, ERM(), digits.train, config=LoopConfig(epochs=3, seed=4), device="cpu")
    assert [m.loss for m in history] != runs[0][0]


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_weights(digits, tmp_path):
    # random starts: RNG must resume too
    method = AdversarialTraining(attack_eps=0.1, training_attack="fgsm_rs")
    config = LoopConfig(epochs=4, seed=2)
    straight = digits_model(digits)
    fit(straight, method, digits.train, config=config, device="cpu")

    checkpoint = tmp_path / "run" / "checkpoint.pt"

    def stop_after_two(metrics):
        if metrics.epoch == 2:
            raise _Interrupt

    interrupted = digits_model(digits)
    with pytest.raises(_Interrupt):
        fit(
            interrupted,
            method,
            digits.train,
            config=config,
            device="cpu",
            checkpoint=checkpoint,
            on_epoch_end=stop_after_two,
        )
    assert load_checkpoint(checkpoint)["epoch"] == 2

    resumed = digits_model(digits, seed=99)  # fresh weights: everything comes from the file
    history = fit(resumed, method, digits.train, config=config, device="cpu", checkpoint=checkpoint)
    assert [m.epoch for m in history] == [1, 2, 3, 4]
    for a, b in zip(_weights(straight), _weights(resumed), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_checkpoint_loads_with_weights_only(digits, tmp_path):
    checkpoint = tmp_path / "c.pt"
    model = digits_model(digits)
    fit(
        model,
        ERM(),
        digits.train,
        config=LoopConfig(epochs=1),
        device="cpu",
        checkpoint=checkpoint,
        meta={"dataset": "digits"},
    )
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == 1 and state["meta"] == {"dataset": "digits"}
    assert set(state) >= {"model", "optimizer", "scheduler", "history"}
    assert not (tmp_path / "c.pt.tmp").exists()


def test_corrupt_or_foreign_checkpoint_is_refused(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="not a limelight checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


class _ExplodesAtStep3(ERM):
    name = "explodes"

    def __init__(self):
        self.calls = 0

    def loss(self, model, images, labels, masks=None):
        out = super().loss(model, images, labels)
        self.calls += 1
        if self.calls == 3:
            return StepOutput(out.loss * float("nan"), out.logits)
        return out


def test_nan_loss_stops_with_epoch_and_step(digits):
    model = digits_model(digits)
    with pytest.raises(NonFiniteLossError, match="nan at epoch 1, step 3"):
        fit(model, _ExplodesAtStep3(), digits.train, config=FAST, device="cpu")


def test_tensorboard_scalars_are_written(digits, tmp_path):
    model = digits_model(digits)
    config = LoopConfig(epochs=2, monitor_eps=0.1, monitor_samples=64)
    fit(
        model,
        AdversarialTraining(attack_eps=0.1, attack_steps=2),
        digits.train,
        config=config,
        test=digits.test,
        device="cpu",
        logdir=tmp_path / "tb",
    )
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/train", "accuracy/train", "accuracy/test_clean", "accuracy/test_pgd"} <= tags
    assert [e.step for e in events.Scalars("loss/train")] == [1, 2]
    assert all(0.0 <= e.value <= 1.0 for e in events.Scalars("accuracy/test_pgd"))


def test_adversarial_training_is_more_robust_than_erm(digits):
    """PGD-AT at eps 0.1 beats ERM under PGD at the same eps (a real attack, 360 images)."""
    from methods.attacks import PGD
    from methods.evaluate import correct_under

    images, labels = digits.test.tensors()
    robust = {}
    options = {"erm": {}, "adversarial": {"attack_eps": 0.1, "training_attack": "fgsm_rs"}}
    for name in ("erm", "adversarial"):
        model = digits_model(digits)
        method = build_method(name, **options[name])
        fit(model, method, digits.train, config=LoopConfig(epochs=10), device="cpu")
        robust[name] = correct_under(model, images, labels, PGD(0.1, steps=20)).float().mean()
    assert robust["adversarial"] > robust["erm"] + 0.1


def test_registry_names_the_valid_methods():
    with pytest.raises(ValueError, match="valid: " + ", ".join(METHODS)):
        build_method("sgd")


def test_resolve_device():
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@contextlib.contextmanager
def _recorded_lrs():
    """The learning rate of every optimizer step taken inside the block."""
    lrs: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: lrs.append(optimizer.param_groups[0]["lr"])
    )
    try:
        yield lrs
    finally:
        handle.remove()


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_extending_a_finished_run_follows_the_new_schedule(digits, tmp_path, schedule):
    """A run of E epochs extended to 2E takes, at each new step, the lr a fresh 2E-epoch
    run takes at that step, and its weights move (they once stood still at lr 0)."""
    subset = digits.train.subset(1024)  # 8 steps an epoch: OneCycleLR needs several
    checkpoint = tmp_path / "c.pt"
    model = digits_model(digits)

    def train(model, epochs, path):
        config = LoopConfig(epochs=epochs, schedule=schedule)
        fit(model, ERM(), subset, config=config, device="cpu", checkpoint=path)

    with _recorded_lrs() as first:
        train(model, 2, checkpoint)
    before = _weights(model)
    with _recorded_lrs() as extension:
        train(model, 4, checkpoint)
    with _recorded_lrs() as fresh:
        train(digits_model(digits), 4, tmp_path / "fresh.pt")
    assert len(first) == len(extension) == 16 and len(fresh) == 32
    assert extension == pytest.approx(fresh[16:], abs=1e-9, rel=0)
    assert min(extension) > 0
    moved = max((a - b).abs().max().item() for a, b in zip(before, _weights(model), strict=True))
    assert moved > 1e-4
