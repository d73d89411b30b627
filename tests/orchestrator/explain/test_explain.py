"""Distributed LIME over real Ray actors: the store, exactly-once under failure, resume."""

from __future__ import annotations

import os
import signal

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from methods.lime import LimeExplainer, LimeSettings
from orchestrator.checkpoints import read_checkpoint, restore_model
from orchestrator.explain.actors import explain_split
from orchestrator.explain.store import MaskStore

SETTINGS = LimeSettings(num_samples=200, seed=1)


def _rows(report) -> np.ndarray:
    table = pq.read_table(report.store)  # every part, duplicates included
    return np.sort(table.column("image_index").to_numpy())


def test_store_matches_local_lime_and_is_reused(local_ray, digits_checkpoint, digits, tmp_path):
    report = explain_split(
        str(digits_checkpoint),
        digits,
        split="test",
        settings=SETTINGS,
        limit=12,
        actors=2,
        chunk=4,
        storage=str(tmp_path),
    )
    assert (report.requested, report.computed, report.reused) == (12, 12, 0)
    assert list(_rows(report)) == list(range(12))

    model = restore_model(read_checkpoint(digits_checkpoint)).eval()
    images, labels = digits.test.tensors(slice(0, 12))
    local = LimeExplainer(model).explain(images, labels, SETTINGS.resolved(8))
    stored = MaskStore(str(tmp_path), report.key).explanations()
    for i in range(12):
        np.testing.assert_allclose(stored[i].weights, local[i].weights, rtol=1e-4, atol=1e-7)
        assert np.array_equal(stored[i].segments, local[i].segments)
        assert stored[i].target == int(labels[i])

    again = explain_split(
        str(digits_checkpoint),
        digits,
        split="test",
        settings=SETTINGS,
        limit=12,
        actors=2,
        chunk=4,
        storage=str(tmp_path),
    )
    assert (again.computed, again.reused) == (0, 12)
    other = explain_split(
        str(digits_checkpoint),
        digits,
        split="test",
        settings=LimeSettings(num_samples=100, seed=1),
        limit=4,
        actors=1,
        storage=str(tmp_path),
    )
    assert other.store != report.store and other.computed == 4  # other settings, other key


def test_killed_actor_loses_nothing_and_counts_nothing_twice(
    local_ray, digits_checkpoint, digits, tmp_path
):
    killed = []

    def kill_first_actor(stored, workers):
        if stored == 1 and not killed:
            pid = local_ray.get(workers[0].where.remote())["pid"]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    report = explain_split(
        str(digits_checkpoint),
        digits,
        split="train",
        settings=SETTINGS,
        limit=24,
        actors=2,
        chunk=2,
        storage=str(tmp_path),
        on_chunk=kill_first_actor,
    )
    assert killed
    assert list(_rows(report)) == list(range(24))  # exactly one row per image


class _Stop(Exception):
    pass


def test_interrupted_run_continues_from_the_store(local_ray, digits_checkpoint, digits, tmp_path):
    def stop_after_two(stored, workers):
        if stored == 2:
            raise _Stop

    kwargs = {
        "split": "train",
        "settings": SETTINGS,
        "limit": 20,
        "actors": 1,
        "chunk": 4,
        "storage": str(tmp_path),
    }
    with pytest.raises(_Stop):
        explain_split(str(digits_checkpoint), digits, on_chunk=stop_after_two, **kwargs)
    report = explain_split(str(digits_checkpoint), digits, **kwargs)
    assert (report.computed, report.reused) == (12, 8)
    assert list(_rows(report)) == list(range(20))


def test_masks_rebuild_from_the_store(local_ray, digits_checkpoint, digits, tmp_path):
    report = explain_split(
        str(digits_checkpoint),
        digits,
        split="test",
        settings=SETTINGS,
        limit=4,
        actors=1,
        storage=str(tmp_path),
    )
    store = MaskStore(str(tmp_path), report.key)
    masks = store.masks("low_relevance", 0.25)
    assert sorted(masks) == [0, 1, 2, 3]
    for index, mask in masks.items():
        explanation = store.explanations()[index]
        assert mask.shape == (8, 8) and mask.dtype == bool
        flagged = np.unique(explanation.segments[mask])
        assert len(flagged) == 4  # 25% of the 16 grid segments
        assert explanation.weights[flagged].max() <= np.delete(explanation.weights, flagged).min()


def test_checkpoint_of_another_shape_is_refused(digits_checkpoint, tmp_path):
    from methods.data import Dataset, ImageSplit
    from orchestrator.checkpoints import CheckpointError

    split = ImageSplit(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    other = Dataset(
        "cifar10", split, split, 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3, 8 / 255, (8 / 255,)
    )
    with pytest.raises(CheckpointError, match="cifar10 is 3x32x32"):
        explain_split(str(digits_checkpoint), other, storage=str(tmp_path))


def test_cli_explain_writes_store_pngs_and_tensorboard(
    local_ray, digits_checkpoint, tmp_path, capsys
):
    from orchestrator.cli import main

    argv = [
        "explain",
        "--checkpoint",
        str(digits_checkpoint),
        "--split",
        "test",
        "--limit",
        "6",
        "--num-samples",
        "100",
        "--actors",
        "1",
        "--storage",
        str(tmp_path / "results"),
        "--png",
        str(tmp_path / "png"),
        "--png-count",
        "2",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "explained 6 images (0 already in the store)" in out
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "explanation_000000.png",
        "explanation_000001.png",
    ]
    store = next((tmp_path / "results" / "explanations").iterdir())
    assert any((store / "_tensorboard").glob("events.out.tfevents.*"))
    import pandas as pd

    frame = pd.read_parquet(store)  # the store is a plain Parquet data set
    assert sorted(frame["image_index"]) == list(range(6))
    assert main(argv) == 0
    assert "explained 0 images (6 already in the store)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "parts"),
    [
        (["--num-samples", "0"], ["--num-samples", ">= 2"]),
        (["--segmentation", "felzenszwalb"], ["--segmentation", "slic", "grid"]),
        (["--actors", "0"], ["--actors", ">= 1"]),
        (["--gpus-per-actor", "-1"], ["--gpus-per-actor", ">= 0"]),
    ],
)
def test_cli_explain_bad_input(digits_checkpoint, tmp_path, capsys, extra, parts):
    from orchestrator.cli import main

    try:
        code = main(
            ["explain", "--checkpoint", str(digits_checkpoint), "--storage", str(tmp_path), *extra]
        )
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert all(part in err for part in parts), err
    assert list(tmp_path.iterdir()) == []


def test_cli_explain_refuses_another_shape(digits_checkpoint, tmp_path, capsys):
    from orchestrator.cli import main
    from tests.formats import write_cifar10

    write_cifar10(tmp_path / "data")
    code = main(
        [
            "explain",
            "--checkpoint",
            str(digits_checkpoint),
            "--dataset",
            "cifar10",
            "--data-dir",
            str(tmp_path / "data"),
            "--storage",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "digits (1x8x8" in err and "cifar10 is 3x32x32" in err
    assert not (tmp_path / "r").exists()
