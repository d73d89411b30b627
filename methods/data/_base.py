"""The two records every data set loader returns: `ImageSplit` and `Dataset`.

Images live in memory as one tensor per split, either uint8 (CIFAR, MNIST: four
times smaller than float32, converted per batch) or float32 already in [0,1]
(digits). Every accessor hands out float32 in [0,1]; normalization is the
model's job, with the `mean`/`std` recorded here.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset as _TorchDataset

from methods.options import InputError

Index = int | slice | torch.Tensor
DEFAULT_DATA_DIR = Path("./data")


class DataNotFoundError(InputError):
    """A data set's files are missing or unreadable; the message is one line with the fix."""


def one_line(text: object) -> str:
    """Collapse any message (torchvision's are multi-line) onto one line."""
    return " ".join(str(text).split())


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The absolute data folder (default ./data), as error messages should name it."""
    return (Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR).expanduser().absolute()


def _to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 / 255; float32 passes through unchanged (no copy)."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images


@dataclass(frozen=True, eq=False, repr=False)
class ImageSplit(_TorchDataset):
    """One split of an image data set, held in memory.

    Args:
        images: (N, C, H, W), uint8 (value / 255 gives [0,1]) or float32 in [0,1].
            Other floating dtypes are converted to float32.
        labels: (N,) class indices; converted to int64.
        masks: optional (N, 1, H, W) ground-truth mask of a spurious feature
            (e.g. the planted patch of `digits_shortcut`); converted to bool.
        planted: optional (N,) class that each image's spurious feature codes for
            (`digits_shortcut`'s patch position, `mnist5k_decoy`'s swatch shade);
            converted to int64. `methods.data.planted_class` reads it.

    `split[i]` gives (image float32 (C,H,W) in [0,1], label int64 scalar), plus
    a float32 (1,H,W) mask when the split has masks, so a plain `DataLoader`
    works. `tensors()` gives whole batches without the per-item overhead.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = field(default=None)
    planted: torch.Tensor | None = field(default=None)

    def __post_init__(self) -> None:
        images, labels, masks, planted = self.images, self.labels, self.masks, self.planted
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError(f"images must be a (N, C, H, W) tensor, got {_describe(images)}")
        if images.dtype != torch.uint8:
            if not images.is_floating_point():
                raise TypeError(f"images must be uint8 or floating, got {images.dtype}")
            images = images.to(torch.float32)
            if images.numel() and (images.min() < 0 or images.max() > 1):
                raise ValueError(
                    "float images must lie in [0,1]; got values in "
                    f"[{images.min().item():.4g}, {images.max().item():.4g}]"
                )
        if not isinstance(labels, torch.Tensor) or labels.shape != (len(images),):
            raise ValueError(f"labels must be a ({len(images)},) tensor, got {_describe(labels)}")
        if labels.is_floating_point() or labels.is_complex():
            raise TypeError(f"labels must be integer class indices, got {labels.dtype}")
        labels = labels.to(torch.int64)
        if masks is not None:
            expected = (len(images), 1, *images.shape[2:])
            if not isinstance(masks, torch.Tensor) or tuple(masks.shape) != expected:
                raise ValueError(f"masks must be a {expected} tensor, got {_describe(masks)}")
            masks = masks.to(torch.bool)
        if planted is not None:
            if not isinstance(planted, torch.Tensor) or planted.shape != (len(images),):
                raise ValueError(
                    f"planted must be a ({len(images)},) tensor, got {_describe(planted)}"
                )
            if planted.is_floating_point() or planted.is_complex():
                raise TypeError(f"planted must be integer class indices, got {planted.dtype}")
            planted = planted.to(torch.int64)
        # frozen: the normalized tensors replace the given ones once, here
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "planted", planted)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        image = _to_float(self.images[i])
        if self.masks is None:
            return image, self.labels[i]
        return image, self.labels[i], self.masks[i].to(torch.float32)

    def __repr__(self) -> str:
        masks = "None" if self.masks is None else "bool" + str(list(self.masks.shape))
        dtype = str(self.images.dtype).removeprefix("torch.")
        return f"ImageSplit(n={len(self)}, images={dtype}{list(self.images.shape)}, masks={masks})"

    @property
    def has_masks(self) -> bool:
        """True when the split carries a ground-truth spurious-feature mask."""
        return self.masks is not None

    def tensors(
        self, index: torch.Tensor | slice | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch as (float32 images (n,C,H,W) in [0,1], int64 labels (n,)).

        Args:
            index: rows to take (slice, int64 index or bool mask tensor); None takes all.
                Float images are returned without a copy when `index` is None or a slice.
        """
        if index is None:
            index = slice(None)
        return _to_float(self.images[index]), self.labels[index]

    def subset(self, index: Index) -> ImageSplit:
        """A new split of some rows: an int n (the first n), a slice, or an index tensor."""
        if isinstance(index, bool) or not isinstance(index, int | slice | torch.Tensor):
            raise TypeError(f"subset takes an int, a slice or an index tensor, got {type(index)}")
        if isinstance(index, int):
            if index < 0:
                raise ValueError(f"subset(n) needs n >= 0, got {index}")
            index = slice(0, index)
        masks = None if self.masks is None else self.masks[index]
        planted = None if self.planted is None else self.planted[index]
        return ImageSplit(self.images[index], self.labels[index], masks, planted)


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


@dataclass(frozen=True)
class Dataset:
    """A loaded data set: both splits plus what models and attacks need to know about it.

    Attributes:
        name: registry name, e.g. "cifar10".
        train, test: the splits.
        num_classes: number of classes.
        input_shape: (C, H, W).
        mean, std: per-channel statistics of the train images on the [0,1] scale.
        default_eps: a sensible Linf training eps on the [0,1] scale.
        eval_eps: the Linf eps grid for robustness evaluation.
        corruption_root: for cifar10c only, the folder holding `CIFAR-10-C/*.npy`.
    """

    name: str
    train: ImageSplit
    test: ImageSplit
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_eps: float
    eval_eps: tuple[float, ...]
    corruption_root: Path | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.train.images.shape[1:])
        if tuple(self.input_shape) != shape or tuple(self.test.images.shape[1:]) != shape:
            raise ValueError(
                f"input_shape {self.input_shape} does not match the images: train {shape}, "
                f"test {tuple(self.test.images.shape[1:])}"
            )
        if len(self.mean) != shape[0] or len(self.std) != shape[0]:
            raise ValueError(f"mean and std need one value per channel ({shape[0]})")


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], ...]:
    """Per-channel mean and (population) std of (N,C,H,W) images on the [0,1] scale.

    Computed in float64, `chunk` images at a time: converting all of CIFAR-10's
    train set to float64 at once would take 1.2 GB.

    Returns:
        (mean, std), each a tuple of C python floats. A constant channel gets std 1.0.
    """
    n, c = images.shape[:2]
    if n == 0:
        raise ValueError("cannot compute mean/std of an empty split")
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    total = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        total += images[start : start + chunk].to(torch.float64).sum(dim=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = total / (count * scale)
    # two passes: squared deviations from the mean, not E[x^2] - E[x]^2
    sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        x = images[start : start + chunk].to(torch.float64) / scale
        sq += ((x - mean.view(1, c, 1, 1)) ** 2).sum(dim=(0, 2, 3))
    std = (sq / count).sqrt()
    if bool((std == 0).any()):
        warnings.warn(
            "a channel of the train images is constant; using std 1.0 for it", stacklevel=2
        )
        std = torch.where(std == 0, torch.ones_like(std), std)
    return tuple(mean.tolist()), tuple(std.tolist())


def make_dataset(
    name: str,
    train: ImageSplit,
    test: ImageSplit,
    *,
    num_classes: int,
    default_eps: float,
    eval_eps: tuple[float, ...],
    corruption_root: Path | None = None,
) -> Dataset:
    """Build a `Dataset`, deriving input_shape and mean/std from the train split."""
    mean, std = channel_stats(train.images)
    c, h, w = train.images.shape[1:]
    return Dataset(
        name=name,
        train=train,
        test=test,
        num_classes=num_classes,
        input_shape=(int(c), int(h), int(w)),
        mean=mean,
        std=std,
        default_eps=default_eps,
        eval_eps=eval_eps,
        corruption_root=corruption_root,
    )


#: The validation split is drawn with this seed, never a run's: every trial and every
#: seed of a sweep holds out the same images, so their objectives are comparable.
VALIDATION_SEED = 1_000_003


def split_validation(dataset: Dataset, fraction: float) -> tuple[Dataset, ImageSplit]:
    """Hold out ``fraction`` of the training split, stratified by label.

    Returns the data set with the rest as its training split, and the held-out split.
    Model selection (per-epoch metrics, a sweep's objective) uses the held-out split,
    so that it never sees the test split. The normalization statistics stay those of
    the whole training split (they are part of the data set, not learned).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {fraction}")
    labels = dataset.train.labels
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    held = []
    for label in labels.unique(sorted=True):
        members = torch.nonzero(labels == label).flatten()
        order = members[torch.randperm(len(members), generator=generator)]
        held.append(order[: max(1, round(fraction * len(members)))])
    held_out = torch.zeros(len(labels), dtype=torch.bool)
    held_out[torch.cat(held)] = True
    train = _take(dataset.train, ~held_out)
    validation = _take(dataset.train, held_out)
    return dataclasses.replace(dataset, train=train), validation


def _take(split: ImageSplit, keep: torch.Tensor) -> ImageSplit:
    masks = None if split.masks is None else split.masks[keep]
    planted = None if split.planted is None else split.planted[keep]
    return ImageSplit(split.images[keep], split.labels[keep], masks, planted)
