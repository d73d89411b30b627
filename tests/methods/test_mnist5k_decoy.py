"""`mnist5k_decoy`: Decoy MNIST (the RRR release's recipe) on the embedded mnist5k: a 4x4
swatch in a random corner whose shade, 255 - 25c, codes the label in training and a
random class in test; masks cover exactly the swatch; seeded; the shortcut metrics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from methods.data import ANNOTATED_DATASETS, DATASETS, Dataset, load_dataset, planted_class
from methods.data._base import split_validation
from methods.data.mnist5k_decoy import CORNERS, SWATCH, load_mnist5k_decoy, swatch_level
from methods.shortcut import shortcut_scores


@pytest.fixture(scope="module")
def decoy() -> Dataset:
    return load_dataset("mnist5k_decoy")


@pytest.fixture(scope="module")
def plain() -> Dataset:
    return load_dataset("mnist5k")


def _corner_masks(height: int = 28, width: int = 28) -> list[torch.Tensor]:
    """The four possible swatch masks, (1, H, W) each, in ``CORNERS`` order."""
    masks = []
    for top, left in CORNERS:
        mask = torch.zeros(1, height, width, dtype=torch.bool)
        rows = slice(0, SWATCH) if top else slice(height - SWATCH, height)
        cols = slice(0, SWATCH) if left else slice(width - SWATCH, width)
        mask[:, rows, cols] = True
        masks.append(mask)
    return masks


def _corner_of(masks: torch.Tensor) -> torch.Tensor:
    """Index into CORNERS of each image's mask, -1 where it is none of the four."""
    corners = torch.full((len(masks),), -1)
    for index, corner in enumerate(_corner_masks(*masks.shape[2:])):
        corners[(masks == corner).flatten(1).all(1)] = index
    return corners


def test_registered_as_an_annotated_data_set() -> None:
    assert "mnist5k_decoy" in DATASETS and "mnist5k_decoy" in ANNOTATED_DATASETS


def test_the_release_shades_class_0_white_and_class_9_dark() -> None:
    assert [swatch_level(c) for c in range(10)] == [255 - 25 * c for c in range(10)]
    assert (swatch_level(0), swatch_level(9)) == (255, 30)


def test_shapes_and_budgets_are_mnist5ks(decoy: Dataset, plain: Dataset) -> None:
    assert decoy.name == "mnist5k_decoy" and decoy.num_classes == 10
    assert decoy.input_shape == (1, 28, 28) and decoy.train.images.dtype == torch.uint8
    assert len(decoy.train) == 4000 and len(decoy.test) == 1000
    assert (decoy.default_eps, decoy.eval_eps) == (plain.default_eps, plain.eval_eps)
    for split, base in ((decoy.train, plain.train), (decoy.test, plain.test)):
        assert torch.equal(split.labels, base.labels)


def test_masks_cover_exactly_a_4x4_corner_swatch_and_nothing_else_changed(
    decoy: Dataset, plain: Dataset
) -> None:
    for split, base in ((decoy.train, plain.train), (decoy.test, plain.test)):
        masks = split.masks
        assert masks.dtype == torch.bool and masks.shape == (len(split), 1, 28, 28)
        corners = _corner_of(masks)
        assert (corners >= 0).all()  # every mask is one of the four 4x4 corners
        assert set(corners.tolist()) == {0, 1, 2, 3}
        share = torch.bincount(corners, minlength=4).double() / len(split)
        assert (share - 0.25).abs().max() < 0.05  # each corner with probability 1/4
        assert torch.equal(split.images[~masks], base.images[~masks])
        swatch = split.images[masks].view(len(split), SWATCH * SWATCH).long()
        levels = torch.as_tensor(swatch_level(planted_class(split).numpy()))
        assert torch.equal(swatch, levels.view(-1, 1).expand_as(swatch))


def test_train_shades_code_the_label_and_test_shades_a_random_class(decoy: Dataset) -> None:
    assert torch.equal(planted_class(decoy.train), decoy.train.labels)
    test_planted = planted_class(decoy.test)
    label_coded = (test_planted == decoy.test.labels).double().mean().item()
    assert 0.06 < label_coded < 0.14  # a uniformly drawn class: ~10% the label's
    counts = torch.bincount(test_planted, minlength=10)
    assert counts.min() > 60 and counts.max() < 140


def test_the_seed_moves_the_training_swatches_only(decoy: Dataset) -> None:
    again, other = load_dataset("mnist5k_decoy"), load_dataset("mnist5k_decoy", seed=1)
    assert torch.equal(again.train.images, decoy.train.images)
    assert torch.equal(again.train.masks, decoy.train.masks)
    assert not torch.equal(other.train.masks, decoy.train.masks)
    assert torch.equal(planted_class(other.train), other.train.labels)
    for split in (again.test, other.test):
        assert torch.equal(split.images, decoy.test.images)
        assert torch.equal(split.masks, decoy.test.masks)
        assert torch.equal(planted_class(split), planted_class(decoy.test))


def test_a_train_share_below_one_codes_other_classes() -> None:
    control = load_mnist5k_decoy(train_share=0.1)
    coded = (planted_class(control.train) == control.train.labels).double().mean().item()
    assert coded == pytest.approx(0.1, abs=0.001)
    assert torch.bincount(planted_class(control.train), minlength=10).min() > 300  # uniform
    with pytest.raises(ValueError, match=r"train_share must be a fraction in \[0, 1\]"):
        load_mnist5k_decoy(train_share=1.5)


def test_the_planted_class_follows_subsets_and_a_validation_split(decoy: Dataset) -> None:
    assert torch.equal(planted_class(decoy.test.subset(10)), planted_class(decoy.test)[:10])
    rest, held = split_validation(decoy, 0.1)
    assert torch.equal(planted_class(rest.train), rest.train.labels)
    assert torch.equal(planted_class(held), held.labels)


class _SwatchReader(nn.Module):
    """Predicts the class whose shade the swatch has (the mean of the swatch pixels)."""

    def __init__(self, masks: torch.Tensor) -> None:
        super().__init__()
        self.masks = masks

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        masks = self.masks[: len(images)].float()
        level = (images * masks).sum(dim=(1, 2, 3)) / masks.sum(dim=(1, 2, 3)) * 255
        shades = torch.tensor([float(swatch_level(c)) for c in range(10)])
        return -(level.view(-1, 1) - shades).abs()


def test_the_follow_rate_works_on_the_swatch(decoy: Dataset) -> None:
    test = decoy.test
    images, labels = test.tensors()
    planted = planted_class(test)
    reader = shortcut_scores(_SwatchReader(test.masks), images, labels, planted, batch_size=1000)
    assert reader.follow_rate == 1.0
    assert reader.accuracy == pytest.approx((planted == labels).double().mean().item())
    assert reader.wrong_patch_images == int((planted != labels).sum())
