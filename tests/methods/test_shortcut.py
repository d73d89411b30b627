"""methods.shortcut: the follow rate and flag precision/recall, on hand-built tensors and on
two tiny models trained on digits_shortcut (one that sees only the patch columns, one
that never sees them)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from methods.data import load_dataset, planted_class, shortcut_positions
from methods.shortcut import (
    flag_precision_recall,
    follow_rate,
    follow_share,
    predict,
    shortcut_scores,
)

# ---------------------------------------------------------------------------- follow rate


def test_follow_share_counts_only_wrong_class_patches() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    planted = torch.tensor([0, 2, 2, 5, 6, 7])  # images 1, 3, 4, 5 carry a wrong patch
    predicted = torch.tensor([9, 2, 9, 5, 4, 1])  # follows on 1 and 3, not on 4 and 5
    assert follow_share(predicted, labels, planted) == 0.5
    # What a model predicts on a label-coded patch (images 0 and 2) does not count.
    other = predicted.clone()
    other[[0, 2]] = torch.tensor([0, 2])
    assert follow_share(other, labels, planted) == 0.5


def test_follow_share_refuses_an_undefined_rate_and_mismatched_shapes() -> None:
    labels = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="planted != label"):
        follow_share(labels.clone(), labels, labels.clone())
    with pytest.raises(ValueError, match=r"\(N,\)"):
        follow_share(torch.tensor([0, 1]), labels, labels)


class _PatchReader(nn.Module):
    """Reads the shortcut literally: class c's logit is the sum of the pixels at class
    c's patch position. No weights are learned."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = sorted(shortcut_positions().items())
        return torch.stack(
            [x[:, 0, r : r + 2, c : c + 2].sum((1, 2)) for _, (r, c) in positions], 1
        )


class _MiddleColumns(nn.Module):
    """A linear classifier of columns 2-5: patches sit on columns 0-1 and 6-7 only."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x[..., 2:6].flatten(1))


@pytest.fixture(scope="module")
def shortcut_data():
    torch.manual_seed(0)
    dataset = load_dataset("digits_shortcut", seed=0)
    images, labels = dataset.train.tensors()
    blind = _MiddleColumns()
    optimizer = torch.optim.Adam(blind.parameters(), lr=0.05)
    for _ in range(100):  # full batch on 1437 images: a fraction of a second
        optimizer.zero_grad()
        nn.functional.cross_entropy(blind(images), labels).backward()
        optimizer.step()
    return dataset.test, _PatchReader(), blind.eval()


def test_a_model_reading_only_the_patch_follows_it(shortcut_data) -> None:
    test, patch_reader, _ = shortcut_data
    images, labels = test.tensors()
    rate = follow_rate(patch_reader, images, labels, planted_class(test))
    assert rate > 0.95, rate


def test_a_model_blind_to_the_patch_region_rarely_follows_it(shortcut_data) -> None:
    test, _, patch_blind = shortcut_data
    images, labels = test.tensors()
    scores = shortcut_scores(patch_blind, images, labels, planted_class(test))
    assert scores.accuracy > 0.7, scores
    # It follows a patch only where its error lands on the planted class by chance.
    assert scores.follow_rate < 0.1, scores
    assert scores.follow_rate <= (1 - scores.accuracy), scores
    assert scores.follow_rate == follow_rate(patch_blind, images, labels, planted_class(test))


def test_shortcut_scores_match_their_definitions(shortcut_data) -> None:
    test, patch_reader, _ = shortcut_data
    images, labels = test.tensors()
    planted = planted_class(test)
    scores = shortcut_scores(patch_reader, images, labels, planted, batch_size=50)
    predicted = patch_reader(images).argmax(1)
    wrong = planted != labels
    assert scores.wrong_patch_images == int(wrong.sum())
    # digits_shortcut's test split spreads each class over the ten positions: ~90% wrong.
    assert 0.85 < scores.wrong_patch_images / len(labels) < 0.95
    assert scores.accuracy == pytest.approx((predicted == labels).float().mean().item())
    expected = (predicted[wrong] == planted[wrong]).float().mean().item()
    assert scores.follow_rate == pytest.approx(expected)


def test_predict_restores_the_models_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 10)).train()
    images = torch.rand(7, 1, 8, 8)
    first = predict(model, images, batch_size=3)
    assert model.training
    assert torch.equal(first, predict(model, images))  # eval mode: dropout off, no noise
    assert first.shape == (7,) and first.dtype == torch.int64
    with pytest.raises(ValueError, match="N, C, H, W"):
        predict(model, images[0])


# ------------------------------------------------------------------ flag precision/recall


def _masks(*blocks: list[tuple[int, int]]) -> torch.Tensor:
    masks = torch.zeros(len(blocks), 1, 4, 4, dtype=torch.bool)
    for i, pixels in enumerate(blocks):
        for r, c in pixels:
            masks[i, 0, r, c] = True
    return masks


def test_flag_precision_recall_is_micro_averaged() -> None:
    true = _masks([(0, 0), (0, 1), (1, 0), (1, 1)], [(2, 2), (2, 3), (3, 2), (3, 3)])
    # Image 0: 2 of its 3 flagged pixels are true; image 1 flags nothing.
    flags = _masks([(0, 0), (0, 1), (3, 3)], [])
    precision, recall = flag_precision_recall(flags, true)
    assert precision == pytest.approx(2 / 3)
    assert recall == pytest.approx(2 / 8)  # image 1's four true pixels are missed
    # Per-image (macro) recall would be (2/4 + 0/4) / 2 = 0.25 too; make them differ:
    true_small = _masks([(0, 0), (0, 1), (1, 0), (1, 1)], [(2, 2)])
    flags_one = _masks([], [(2, 2)])
    assert flag_precision_recall(flags_one, true_small) == (1.0, pytest.approx(1 / 5))


def test_flag_precision_recall_empty_cases() -> None:
    true = _masks([(0, 0)], [(1, 1)])
    nothing = _masks([], [])
    assert flag_precision_recall(nothing, true) == (None, 0.0)
    assert flag_precision_recall(true, nothing) == (0.0, None)
    assert flag_precision_recall(nothing, nothing) == (None, None)
    assert flag_precision_recall(true, true) == (1.0, 1.0)
    # 0/1 floats are masks too.
    assert flag_precision_recall(true.float(), true.float()) == (1.0, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        flag_precision_recall(true[:1], true)
