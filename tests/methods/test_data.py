"""Tests for methods.data: each loader reads small files written here in the published format."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from methods.data import (
    CIFAR10C_CORRUPTIONS,
    DATASETS,
    DataNotFoundError,
    Dataset,
    ImageSplit,
    load_cifar10c,
    load_dataset,
    planted_class,
    shortcut_positions,
)
from tests.formats import write_cifar10, write_cifar10c, write_cifar100, write_mnist


def assert_one_line(err: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message


# ---------------------------------------------------------------------------
# ImageSplit
# ---------------------------------------------------------------------------


def test_image_split_accessors_convert_uint8_to_unit_range() -> None:
    images = torch.arange(6 * 3 * 2 * 2, dtype=torch.uint8).view(6, 3, 2, 2)
    split = ImageSplit(images, torch.arange(6) % 2)
    x, y = split[1]
    assert x.dtype == torch.float32 and x.shape == (3, 2, 2)
    assert x[0, 0, 0].item() == pytest.approx(12 / 255)
    assert y.dtype == torch.int64 and y.item() == 1
    xs, ys = split.tensors()
    assert xs.shape == (6, 3, 2, 2) and ys.shape == (6,)
    assert xs.min() >= 0.0 and xs.max() <= 1.0
    assert torch.equal(split.tensors(torch.tensor([4, 0]))[1], torch.tensor([0, 0]))
    assert not split.has_masks
    assert "n=6" in repr(split) and "uint8" in repr(split)


def test_image_split_subset_and_masks() -> None:
    masks = torch.zeros(5, 1, 4, 4, dtype=torch.bool)
    masks[2, 0, 1, 1] = True
    split = ImageSplit(torch.rand(5, 1, 4, 4), torch.arange(5), masks)
    assert split.has_masks
    _, _, mask = split[2]
    assert mask.dtype == torch.float32 and mask.shape == (1, 4, 4) and mask[0, 1, 1] == 1.0
    assert len(split.subset(3)) == 3
    assert torch.equal(split.subset(slice(1, 3)).labels, torch.tensor([1, 2]))
    picked = split.subset(torch.tensor([2, 4]))
    assert torch.equal(picked.labels, torch.tensor([2, 4])) and picked.masks[0, 0, 1, 1]
    batch = next(iter(DataLoader(split, batch_size=5)))
    assert [t.shape for t in batch] == [(5, 1, 4, 4), (5,), (5, 1, 4, 4)]


def test_image_split_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        ImageSplit(torch.zeros(3, 8, 8), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        ImageSplit(torch.full((2, 1, 2, 2), 2.0), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels"):
        ImageSplit(torch.zeros(2, 1, 2, 2), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="masks"):
        ImageSplit(
            torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64), torch.zeros(2, 1, 3, 3)
        )
    with pytest.raises(TypeError, match="integer"):
        ImageSplit(torch.zeros(2, 1, 2, 2), torch.zeros(2))


def test_image_split_pickles() -> None:
    split = ImageSplit(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1]))
    again = pickle.loads(pickle.dumps(split))
    assert torch.equal(again.labels, split.labels)


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown data set 'svhn'") as err:
        load_dataset("svhn")
    assert_one_line(err, *DATASETS)
    assert DATASETS == (
        "digits",
        "digits_shortcut",
        "mnist5k",
        "mnist5k_decoy",
        "mnist",
        "cifar10",
        "cifar100",
        "cifar10c",
    )


# ---------------------------------------------------------------------------
# digits and digits_shortcut
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def shortcut() -> Dataset:
    return load_dataset("digits_shortcut", seed=0)


def test_digits_split_sizes_and_scale(digits: Dataset) -> None:
    assert len(digits.train) == 1437 and len(digits.test) == 360
    assert digits.train.images.dtype == torch.float32
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    x, y = digits.train.tensors()
    assert x.shape == (1437, 1, 8, 8) and y.dtype == torch.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert set((x * 16).unique().tolist()) <= set(range(17))  # values k/16, exactly
    assert digits.default_eps == 0.1 and digits.eval_eps == (0.05, 0.1, 0.2)
    assert digits.mean[0] == pytest.approx(x.double().mean().item())
    assert digits.std[0] == pytest.approx(x.double().std(unbiased=False).item())


def test_digits_split_is_stratified_and_independent_of_seed(digits: Dataset) -> None:
    train_counts = digits.train.labels.bincount(minlength=10).double()
    test_counts = digits.test.labels.bincount(minlength=10).double()
    expected = (train_counts + test_counts) * 360 / 1797
    assert (test_counts - expected).abs().max() <= 1.0
    other = load_dataset("digits", seed=5)
    assert torch.equal(other.test.images, digits.test.images)
    assert torch.equal(other.train.labels, digits.train.labels)


def test_shortcut_positions_sit_on_borders_and_differ_for_adjacent_classes() -> None:
    positions = shortcut_positions()
    assert sorted(positions) == list(range(10))
    assert len(set(positions.values())) == 10
    for cls, (row, col) in positions.items():
        assert col in (0, 6) and 0 <= row <= 6
        if cls < 9:
            assert positions[cls] != positions[cls + 1]


def test_shortcut_masks_mark_a_2x2_patch_of_ones(digits: Dataset, shortcut: Dataset) -> None:
    for split, plain in ((shortcut.train, digits.train), (shortcut.test, digits.test)):
        masks = split.masks
        assert (
            masks is not None and masks.dtype == torch.bool and masks.shape == (len(split), 1, 8, 8)
        )
        assert (masks.flatten(1).sum(1) == 4).all()
        assert (split.images[masks] == 1.0).all()
        assert torch.equal(split.images[~masks], plain.images[~masks])
        positions = shortcut_positions()
        for i in (0, len(split) - 1):
            row, col = positions[int(planted_class(split)[i])]
            assert masks[i, 0, row : row + 2, col : col + 2].all()


def test_shortcut_train_is_label_coded_and_test_is_not(shortcut: Dataset) -> None:
    train_share = (planted_class(shortcut.train) == shortcut.train.labels).double().mean()
    assert train_share.item() == pytest.approx(0.97, abs=0.01)
    test_planted = planted_class(shortcut.test)
    test_share = (test_planted == shortcut.test.labels).double().mean()
    assert 0.05 < test_share.item() < 0.15
    assert set(test_planted.tolist()) == set(range(10))


def test_shortcut_seed_moves_train_patches_only(shortcut: Dataset) -> None:
    other = load_dataset("digits_shortcut", seed=1)
    assert not torch.equal(other.train.masks, shortcut.train.masks)
    assert torch.equal(other.test.masks, shortcut.test.masks)
    assert torch.equal(other.test.images, shortcut.test.images)


def test_planted_class_needs_masks(digits: Dataset) -> None:
    with pytest.raises(ValueError, match="masks"):
        planted_class(digits.test)


# ---------------------------------------------------------------------------
# CIFAR-10, CIFAR-100, MNIST in their published formats
# ---------------------------------------------------------------------------


def test_cifar10_round_trips_pixels_and_labels(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path, n=4)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert len(ds.train) == 20 and len(ds.test) == 4
    assert ds.train.images.shape == (20, 3, 32, 32) and ds.train.images.dtype == torch.uint8
    assert ds.train.images.is_contiguous()
    # image 1 of data_batch_2 is train row 5; green plane, row 7, column 9
    expected = written["data_batch_2"][1, 1 * 1024 + 7 * 32 + 9]
    assert ds.train.images[5, 1, 7, 9].item() == expected
    x, _ = ds.train.tensors(slice(5, 6))
    assert x[0, 1, 7, 9].item() == pytest.approx(expected / 255)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert ds.train.labels.tolist()[4:8] == [1, 2, 3, 4]
    assert ds.test.labels.dtype == torch.int64 and ds.test.labels.tolist() == [5, 6, 7, 8]
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert ds.default_eps == pytest.approx(8 / 255)
    assert ds.eval_eps == pytest.approx((2 / 255, 4 / 255, 0.02, 8 / 255))
    all_rows = np.concatenate([written[f"data_batch_{k}"] for k in range(1, 6)])
    red = all_rows[:, :1024] / 255.0
    assert ds.mean[0] == pytest.approx(red.mean()) and ds.std[0] == pytest.approx(red.std())


def test_cifar100_reads_fine_labels(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path, n=6)
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.num_classes == 100 and len(ds.train) == 6 and len(ds.test) == 6
    assert ds.train.labels.tolist() == [(17 * j) % 100 for j in range(6)]
    assert ds.test.images[2, 2, 31, 0].item() == written["test"][2, 2 * 1024 + 31 * 32 + 0]


def test_mnist_reads_idx_files(tmp_path: Path) -> None:
    written = write_mnist(tmp_path)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.train.images.shape == (5, 1, 28, 28) and ds.train.images.dtype == torch.uint8
    assert ds.test.images.shape == (3, 1, 28, 28)
    assert np.array_equal(ds.train.images[:, 0].numpy(), written["train"])
    assert ds.test.images[2, 0, 27, 3].item() == written["t10k"][2, 27, 3]
    assert ds.train.labels.dtype == torch.int64
    assert ds.train.labels.tolist() == written["train_labels"].tolist()
    assert ds.default_eps == 0.3 and ds.eval_eps == (0.1, 0.2, 0.3)


@pytest.mark.parametrize(
    ("name", "folder"),
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("mnist", "MNIST")],
)
def test_missing_files_name_the_path_and_the_fetch_command(
    tmp_path: Path, name: str, folder: str
) -> None:
    with pytest.raises(DataNotFoundError) as err:
        load_dataset(name, data_dir=tmp_path)
    assert_one_line(err, str(tmp_path / folder), f"--dataset {name}", "--download")
    assert isinstance(err.value, ValueError)


def test_failed_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("no network\nat all")

    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("cifar10", data_dir=tmp_path, download=True)
    assert_one_line(err, str(tmp_path), "downloading CIFAR-10")


def test_unreadable_batch_is_a_one_line_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert_one_line(err, "cannot read CIFAR-10")


# ---------------------------------------------------------------------------
# CIFAR-10-C
# ---------------------------------------------------------------------------


def test_cifar10c_slices_the_severity_block(tmp_path: Path) -> None:
    write_cifar10c(tmp_path, n=3, corruption="fog")
    for severity in (1, 3, 5):
        split = load_cifar10c(tmp_path, "fog", severity)
        assert split.images.shape == (3, 3, 32, 32) and split.images.dtype == torch.uint8
        assert split.images[:, 0, 0, 0].tolist() == [10 * severity + i for i in range(3)]
        assert split.labels.dtype == torch.int64 and split.labels.tolist() == [0, 1, 2]
    limited = load_cifar10c(str(tmp_path), "fog", 2, limit=2)
    assert limited.images[:, 0, 0, 0].tolist() == [20, 21]
    assert len(load_cifar10c(tmp_path, "fog", 2, limit=99)) == 3


def test_cifar10c_validates_arguments(tmp_path: Path) -> None:
    write_cifar10c(tmp_path, corruption="fog")
    assert len(CIFAR10C_CORRUPTIONS) == 15 and "jpeg_compression" in CIFAR10C_CORRUPTIONS
    with pytest.raises(ValueError, match="unknown corruption 'fogg'") as err:
        load_cifar10c(tmp_path, "fogg", 1)
    assert_one_line(err, *CIFAR10C_CORRUPTIONS)
    for severity in (0, 6, 2.0):
        with pytest.raises(ValueError, match="severity"):
            load_cifar10c(tmp_path, "fog", severity)
    with pytest.raises(DataNotFoundError) as err:
        load_cifar10c(tmp_path, "snow", 1)
    assert_one_line(err, "snow.npy", "zenodo.org/records/2535967")


def test_cifar10c_rejects_wrong_row_counts(tmp_path: Path) -> None:
    write_cifar10c(tmp_path, corruption="fog", rows=7)
    with pytest.raises(ValueError, match=r"fog\.npy"):
        load_cifar10c(tmp_path, "fog", 1)
    write_cifar10c(tmp_path, n=2, corruption="snow")  # also rewrites labels.npy to 10 rows
    np.save(tmp_path / "CIFAR-10-C" / "labels.npy", np.zeros(15, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"labels\.npy"):
        load_cifar10c(tmp_path, "snow", 1)


def test_cifar10c_dataset_needs_both_folders(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("cifar10c", data_dir=tmp_path)
    assert_one_line(err, str(tmp_path), "https://zenodo.org/records/2535967", "CIFAR-10-C")
    write_cifar10c(tmp_path)
    ds = load_dataset("cifar10c", data_dir=tmp_path)
    assert ds.name == "cifar10c" and ds.corruption_root == tmp_path
    assert len(ds.train) == 20 and ds.num_classes == 10
    assert len(load_cifar10c(ds.corruption_root, "fog", 4)) == 3


def test_validation_split_is_stratified_disjoint_and_fixed(digits: Dataset) -> None:
    from methods.data import split_validation

    rest, validation = split_validation(digits, 0.1)
    _again_rest, again = split_validation(digits, 0.1)
    assert torch.equal(validation.images, again.images)  # the same images every time
    assert len(rest.train) + len(validation) == len(digits.train)
    assert rest.test is digits.test and rest.mean == digits.mean  # only the train split moves
    per_class = validation.labels.bincount(minlength=10)
    expected = (digits.train.labels.bincount(minlength=10).float() * 0.1).round()
    assert torch.equal(per_class, expected.long())
    # Disjoint: every training image lands in exactly one of the two parts.
    rows = {tuple(x.flatten().tolist()) for x in digits.train.images}
    parts = [tuple(x.flatten().tolist()) for x in (*rest.train.images, *validation.images)]
    assert len(parts) == len(digits.train) and set(parts) == rows
    with pytest.raises(ValueError, match="val_fraction"):
        split_validation(digits, 1.0)
