"""Model registry: image classifiers that take inputs in [0,1] and normalize inside.

Every model is built from the data set's shape: ``build_model(name, input_shape,
num_classes, mean, std)``. Normalization is the first layer, so attacks, saliency
and LIME all work on the [0,1] pixel scale and eps means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["MODELS", "Normalize", "build_model", "default_model", "parameter_count"]


class Normalize(nn.Module):
    """(x - mean) / std per channel; buffers, so they move with the model and are saved."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (x - self.mean) / self.std
        return _channels_last(out) if out.dim() == 4 and out.device.type == "cpu" else out


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) laid out channels-last (strides C*H*W, 1, W*C, C).

    On the CPU the convolutions of the whole network then take PyTorch's channels-last
    path: an eval-mode forward pass of small_cnn on 256 perturbed digits took 7.4 ms in
    the NCHW layout that every attack's new tensor has and 3.9 ms channels-last,
    sgt_mnist_cnn on 128 mnist5k images 96.7 against 37.6 ms (one thread, medians;
    forward + input gradient: 1.0-1.07x, tiny_cnn 1.35x; benchmarks/evaluate.py).
    Square, the clean predictions and LIME make only such forward passes. The test
    split of digits happens to arrive channels-last already (its strides come from a
    numpy view), which is how the difference showed: the same forward pass on its clean
    images was 1.6x faster than on an attack's. ``contiguous(memory_format=...)`` is a
    no-op for one channel (PyTorch ignores a size-1 dimension's stride when it checks a
    layout), but the convolutions choose their path by the strides: hence the clone.
    """
    _, c, h, w = x.shape
    if x.stride() == (c * h * w, 1, w * c, c):
        return x
    return x.clone(memory_format=torch.channels_last)


def _flat_features(body: nn.Module, input_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return body(torch.zeros(1, *input_shape)).flatten(1).shape[1]


def small_cnn(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """conv32, conv64, maxpool, fc128: ~98% clean on digits in 30 epochs (ERM, SGD, batch
    128: 97.9 ± 0.2% over 3 seeds in docs/results.md, the digits table and its settings)."""
    channels = input_shape[0]
    body = nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )
    flat = _flat_features(body, input_shape)
    return nn.Sequential(
        body, nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(), nn.Linear(128, num_classes)
    )


def tiny_cnn(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Three conv-pool stages (16, 32, 64) and a linear head: ~34k parameters on 3x32x32
    (33,834), the model of LIME's CPU throughput figures (benchmarks/lime.py's default;
    measured on 2 cores: 8.05 explanations/s at 1,000 samples, docs/explain.md)."""
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for width in (16, 32, 64):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels = width
    body = nn.Sequential(*layers)
    return nn.Sequential(
        body, nn.Flatten(), nn.Linear(_flat_features(body, input_shape), num_classes)
    )


def sgt_mnist_cnn(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The MNIST CNN of the SGT paper (Ismail et al. 2021, after the Keras MNIST example):
    conv32-3x3, conv64-3x3, maxpool 2, dropout 0.25, fc128, dropout 0.5, fc."""
    body = nn.Sequential(
        nn.Conv2d(input_shape[0], 32, 3),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
    )
    flat = _flat_features(body, input_shape)
    return nn.Sequential(
        body,
        nn.Flatten(),
        nn.Linear(flat, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, num_classes),
    )


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def resnet18(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """CIFAR ResNet-18 (He et al. 2016 as adapted for 32x32): 3x3 stem, no max-pool."""
    layers: list[nn.Module] = [
        nn.Conv2d(input_shape[0], 64, 3, 1, 1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
    ]
    in_planes = 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(in_planes, planes, stride), _BasicBlock(planes, planes, 1)]
        in_planes = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)


class _Mul(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _airbench_block(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(c_out),
        nn.GELU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.GELU(),
    )


def airbench(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A fast CIFAR net after airbench94 (Jordan 2024): 2x2 stem, three conv-pool blocks
    (64, 256, 256), global max-pool, a linear head scaled by 1/9. About 2M parameters;
    the whitening initialization and the lookahead/TTA tricks of airbench are left out."""
    if min(input_shape[1:]) < 9:
        raise ValueError(
            f"airbench needs inputs of at least 9x9 (a 2x2 stem and three 2x pools), "
            f"got {input_shape[1]}x{input_shape[2]}"
        )
    widths = (64, 256, 256)
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 24, 2, padding=0, bias=True),
        nn.GELU(),
        _airbench_block(24, widths[0]),
        _airbench_block(widths[0], widths[1]),
        _airbench_block(widths[1], widths[2]),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(widths[2], num_classes, bias=False),
        _Mul(1 / 9),  # airbench's output scale: keeps initial logits small
    )


MODELS: dict[str, Callable[[tuple[int, int, int], int], nn.Module]] = {
    "small_cnn": small_cnn,
    "tiny_cnn": tiny_cnn,
    "sgt_mnist_cnn": sgt_mnist_cnn,
    "resnet18": resnet18,
    "airbench": airbench,
}

_DEFAULT_MODEL = {
    "digits": "small_cnn",
    "digits_shortcut": "small_cnn",
    "mnist5k": "sgt_mnist_cnn",
    "mnist5k_decoy": "sgt_mnist_cnn",
    "mnist": "sgt_mnist_cnn",
    "cifar10": "resnet18",
    "cifar100": "resnet18",
    "cifar10c": "resnet18",
}


def default_model(dataset: str) -> str:
    """The model a data set trains with when none is named."""
    if dataset not in _DEFAULT_MODEL:
        raise ValueError(f"unknown data set {dataset!r}; valid: {', '.join(_DEFAULT_MODEL)}")
    return _DEFAULT_MODEL[dataset]


def build_model(
    name: str,
    input_shape: tuple[int, int, int],
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> nn.Module:
    """Build a registered model with its normalization layer in front.

    Args:
        name: one of ``MODELS``.
        input_shape: (C, H, W) of the data set.
        num_classes: number of output logits.
        mean, std: per-channel statistics of the training images on the [0,1] scale.

    Returns:
        ``nn.Sequential(Normalize(mean, std), net)`` taking (N, C, H, W) in [0,1].
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    if len(mean) != input_shape[0] or len(std) != input_shape[0]:
        raise ValueError(f"mean/std need {input_shape[0]} channels, got {len(mean)}/{len(std)}")
    return nn.Sequential(Normalize(mean, std), MODELS[name](tuple(input_shape), num_classes))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
