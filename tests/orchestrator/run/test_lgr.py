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
from orchestrator.run import run
from orchestrator.run.lgr import flag_masks

QUICK_EVAL = EvalConfig(eps=(0.1,), attacks=("pgd",), pgd_steps=2, limit=50, eval_mode="pgd")


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
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["n_eval"] == 50
    # An LGR run's evaluation adds the masked-accuracy curve in LIME's order.
    assert record["lime_faithfulness"]["order"] == "lime"
    assert record["faithfulness"]["order"] != "lime"


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


def _flags(spurious, digits, checkpoint, storage, **options):
    config = TrainConfig.create(
        method="lgr", mask_ratio=0.25, explain_fraction=0.03, lime_samples=100,
        attack_eps=0.1, spurious=spurious, **options,
    )  # fmt: skip
    return flag_masks(config, digits, checkpoint, storage=str(storage), actors=2)


def test_a_union_flags_what_any_member_flags(local_ray, digits_checkpoint, digits, tmp_path):
    explained = round(0.03 * len(digits.train))
    unstable = _flags("unstable", digits, digits_checkpoint, tmp_path, reexplanations=3)
    # Three re-explanations, each under its own key in the store.
    assert len(list((tmp_path / "explanations").iterdir())) == 3
    irrelevant = _flags("irrelevant", digits, digits_checkpoint, tmp_path)
    both = _flags("unstable,irrelevant", digits, digits_checkpoint, tmp_path, reexplanations=3)
    assert len(list((tmp_path / "explanations").iterdir())) == 3  # read back, not redone
    assert torch.equal(both, unstable | irrelevant)
    assert not torch.equal(unstable, irrelevant)
    per_image = unstable.flatten(1).float().mean(1)
    assert torch.all(per_image[:explained] == 0.25) and torch.all(per_image[explained:] == 0)
    gradient = _flags("gradient", digits, digits_checkpoint, tmp_path)
    assert torch.all(gradient.flatten(1).float().mean(1)[:explained] == 0.25)


def test_a_global_mask_is_shared_by_every_image(local_ray, digits_checkpoint, digits, tmp_path):
    per_image = _flags("low_relevance", digits, digits_checkpoint, tmp_path)
    explained = round(0.03 * len(digits.train))
    shared = _flags("low_relevance", digits, digits_checkpoint, tmp_path, global_mask_share=0.3)
    expected = per_image[:explained].float().mean(0) > 0.3
    assert torch.equal(shared, expected.expand_as(shared))
    assert 0 < expected.sum() < expected.numel()


def test_lgr_with_a_union_of_strategies_runs_and_draws_its_flags(
    local_ray, digits_checkpoint, tmp_path
):
    argv = [
        "train", "--method", "lgr", "--start-checkpoint", str(digits_checkpoint),
        "--spurious", "unstable,irrelevant", "--reexplanations", "2", "--rounds", "1",
        "--epochs", "1", "--explain-fraction", "0.03", "--lime-samples", "100",
        "--attack-eps", "0", "--storage", str(tmp_path), "--out", "lgr",
        "--eps", "0.1", "--attacks", "pgd", "--pgd-steps", "2", "--limit", "20",
        "--eval-mode", "pgd",
    ]  # fmt: skip
    assert main(argv) == 0
    events = EventAccumulator(str(tmp_path / "lgr" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Images("lgr/flagged_training_images")] == [1]
    recorded = json.loads((tmp_path / "lgr" / "config.json").read_text())
    assert recorded["spurious"] == ["unstable", "irrelevant"]


def test_predicted_label_explanations_have_their_own_key(
    local_ray, digits_checkpoint, digits, tmp_path
):
    import pandas as pd

    _flags("low_relevance", digits, digits_checkpoint, tmp_path, explain_label="predicted")
    (folder,) = (tmp_path / "explanations").iterdir()
    assert folder.name.endswith("-predicted")
    rows = pd.read_parquet(folder)
    assert (rows["target"] == rows["predicted"]).all()
    # The 3-epoch model gets some of these images wrong: there the targets differ.
    assert 0.5 < (rows["target"] == rows["label"]).mean() < 1.0
