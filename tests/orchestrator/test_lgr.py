"""LIME-guided refinement end to end: the annotated strategy on digits_shortcut (no Ray),
low_relevance through real Ray actors, and the exit-2 contract of its flags."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from methods.data import load_dataset, planted_class
from orchestrator.checkpoints import read_checkpoint, restore_model
from orchestrator.cli import main
from orchestrator.config import EvalConfig, RunSettings, TrainConfig
from orchestrator.lgr import flag_masks
from orchestrator.run import run

QUICK_EVAL = EvalConfig(eps=(0.1,), attacks=("pgd",), pgd_steps=2, limit=50)


def _follow_rate(model, split) -> float:
    """Share of test predictions that follow a wrong-class planted patch."""
    images, labels = split.tensors()
    planted = planted_class(split)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    wrong_patch = planted != labels
    return (predicted[wrong_patch] == planted[wrong_patch]).float().mean().item()


def test_annotated_lgr_unlearns_the_shortcut(tmp_path):
    dataset = load_dataset("digits_shortcut")
    config = TrainConfig.create(
        method="lgr",
        dataset="digits_shortcut",
        spurious="annotated",
        epochs=4,
        pretrain_epochs=6,
        rounds=1,
        attack_eps=0.0,
    )
    settings = RunSettings(storage=str(tmp_path), out=".", device="cpu")
    outcome = run(config, settings, eval_config=QUICK_EVAL)
    erm = restore_model(read_checkpoint(tmp_path / "pretrain" / "checkpoint.pt")).eval()
    lgr = restore_model(read_checkpoint(outcome.checkpoint)).eval()
    before, after = _follow_rate(erm, dataset.test), _follow_rate(lgr, dataset.test)
    assert after < before - 0.1, (before, after)
    assert (tmp_path / "round1" / "checkpoint.pt").exists()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert "lgr/flagged_pixel_share" in events.Tags()["scalars"]
    assert any(tag.startswith("lime/") for tag in events.Tags()["images"])
    assert json.loads((tmp_path / "eval.json").read_text())["n_eval"] == 50


def test_low_relevance_flags_from_the_mask_store(local_ray, digits_checkpoint, digits, tmp_path):
    config = TrainConfig.create(
        method="lgr", mask_ratio=0.25, explain_fraction=0.05, lime_samples=100, attack_eps=0.1
    )
    masks = flag_masks(config, digits, digits_checkpoint, storage=str(tmp_path), actors=2)
    explained = round(0.05 * len(digits.train))
    per_image = masks.flatten(1).float().mean(1)
    assert torch.all(per_image[:explained] == 0.25)  # 4 of 16 grid segments, 4 px each
    assert torch.all(per_image[explained:] == 0)
    assert any((tmp_path / "explanations").iterdir())


@pytest.mark.parametrize(
    ("extra", "parts"),
    [
        (["--mask-ratio", "1.5"], ["--mask-ratio", "(0, 1)"]),
        (["--mask-ratio", "0"], ["--mask-ratio", "(0, 1)"]),
        (["--reg-weight", "-1"], ["--reg-weight", ">= 0"]),
        (["--spurious", "annotated"], ["--spurious", "digits_shortcut", "digits has none"]),
        (["--pretrain-epochs", "0"], ["--pretrain-epochs", ">= 1"]),
        (["--start-checkpoint", "missing.pt"], ["--start-checkpoint", "missing.pt"]),
        (["--explain-fraction", "0"], ["--explain-fraction", "(0, 1]"]),
    ],
)
def test_bad_lgr_flags_exit_2(extra, parts, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["train", "--method", "lgr", *extra])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert all(part in err for part in parts), err
    assert list(tmp_path.iterdir()) == []
