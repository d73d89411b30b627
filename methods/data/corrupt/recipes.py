"""The recipe: CIFAR-10-C's 15 corruptions with the per-severity parameters of the
authors' `make_cifar_c.py`, and the randomness of each image.

Randomness: image i of the test set under corruption c at severity s uses its own
generator, `numpy.random.default_rng((seed, k, s, i))`, k being c's index in
`CIFAR10C_CORRUPTIONS`. The output therefore depends only on the seed (default
0): not on the order of generation, on `limit` (a run on the first N images
reproduces the first N rows of each severity of a full run) or on `workers`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from methods.data.cifar10c import CIFAR10C_CORRUPTIONS
from methods.data.corrupt.checks import check_corruptions, check_severities
from methods.data.corrupt.extra import _extra, _frost_textures, _motion_blur

DEFAULT_SEED = 0
SIDE = 32  # the recipe's parameters are for 32x32 images


# ----------------------------------------------------------------------------- parameters

# Per-severity parameters (severity 1 first) of the authors' make_cifar_c.py.
_PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # noise std, [0,1] scale
    "shot_noise": (500, 250, 100, 75, 50),  # Poisson photons per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # share of salt-and-pepper values
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # radius, alias
    # (sigma, max_delta, iterations); every severity has max_delta 1 (see _glass_shift)
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # radius, sigma (pixels)
    "zoom_blur": tuple(  # zoom factors, np.arange as the script has it (1.06 gives 7)
        tuple(np.arange(1, stop, 0.01).tolist()) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)
    ),
    # (mean, std, zoom, threshold, blur radius, blur sigma, image weight)
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),  # image, frost weight
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # strength, wibble decay
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor on the deviation from the mean
    # (displacement scale, displacement smoothing sigma, affine jitter), pixels
    "elastic_transform": tuple(
        (SIDE * a, SIDE * b, SIDE * c)
        for a, b, c in (
            (0, 0, 0.08),
            (0.05, 0.2, 0.07),
            (0.08, 0.06, 0.06),
            (0.1, 0.04, 0.05),
            (0.1, 0.03, 0.03),
        )
    ),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # downscale factor
    "jpeg_compression": (80, 65, 58, 50, 40),  # JPEG quality
}
assert tuple(_PARAMS) == CIFAR10C_CORRUPTIONS


# ----------------------------------------------------------------------------- helpers


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """Defocus kernel: a disk of `radius` on a 17x17 grid, normalized, smoothed 3x3."""
    import cv2

    grid = np.arange(-8, 8 + 1)
    xx, yy = np.meshgrid(grid, grid)
    kernel = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    kernel /= kernel.sum()
    return cv2.GaussianBlur(kernel, ksize=(3, 3), sigmaX=alias_blur)


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom (H,W,C) by `factor` around the centre (bilinear), cropped back to H x W."""
    from scipy.ndimage import zoom

    h = x.shape[0]
    crop = int(np.ceil(h / factor))
    top = (h - crop) // 2
    zoomed = zoom(x[top : top + crop, top : top + crop], (factor, factor, 1), order=1)
    trim = (zoomed.shape[0] - h) // 2
    return zoomed[trim : trim + h, trim : trim + h]


def _plasma_fractal(rng: np.random.Generator, size: int, decay: float) -> np.ndarray:
    """A (size, size) diamond-square height map in [0, 1]; roughness falls by `decay` a level."""
    assert size & (size - 1) == 0, "size must be a power of two"
    field = np.zeros((size, size), dtype=np.float64)
    step, wibble = size, 100.0

    def jitter(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        # squares: each cell's centre from its four corners
        corners = field[0:size:step, 0:size:step]
        total = corners + np.roll(corners, -1, axis=0)
        total += np.roll(total, -1, axis=1)
        field[half:size:step, half:size:step] = jitter(total)
        # diamonds: each edge midpoint from its two corners and two centres
        centres = field[half:size:step, half:size:step]
        corners = field[0:size:step, 0:size:step]
        total = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        field[0:size:step, half:size:step] = jitter(total)
        total = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        field[half:size:step, 0:size:step] = jitter(total)
        step //= 2
        wibble /= decay
    field -= field.min()
    return field / field.max()


def _glass_shift(x: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """One pass of glass blur's local pixel shuffle, as the published data has it.

    The script visits rows and columns 31..2 in descending order and "swaps"
    x[h, w] with x[h+dy, w+dx] by `a, b = b, a` on NumPy views, which copies
    x[h+dy, w+dx] into x[h, w] and leaves the other pixel as it was. With offsets
    in {-1, 0} the source is always a pixel not yet visited, so the whole pass is
    one gather from the unchanged image. dx, dy: (30, 30) offsets in {-1, 0} for
    rows/columns 2..31.
    """
    rows = np.arange(2, SIDE)[:, None]
    cols = np.arange(2, SIDE)[None, :]
    out = x.copy()
    out[rows, cols] = x[rows + dy, cols + dx]
    return out


# ----------------------------------------------------------------------------- corruptions
# Each takes a (32, 32, 3) uint8 RGB image, the severity's parameters and a generator,
# and returns values on the [0, 255] scale (float or uint8).


def _gaussian_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    x = x / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def _shot_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.poisson(x / 255.0 * c) / c, 0, 1) * 255


def _impulse_noise(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    from skimage.util import random_noise

    return np.clip(random_noise(x / 255.0, mode="s&p", amount=c, rng=rng), 0, 1) * 255


def _defocus_blur(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    import cv2

    kernel = _disk(radius=c[0], alias_blur=c[1])
    x = x / 255.0
    blurred = np.stack([cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)], axis=-1)
    return np.clip(blurred, 0, 1) * 255


def _glass_blur(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    from skimage.filters import gaussian

    sigma, max_delta, iterations = c
    assert max_delta == 1, "_glass_shift is exact for offsets in {-1, 0} only"
    x = (gaussian(x / 255.0, sigma=sigma, channel_axis=-1) * 255).astype(np.uint8)
    for _ in range(iterations):
        dx, dy = rng.integers(-max_delta, max_delta, size=(2, SIDE - 2, SIDE - 2))
        x = _glass_shift(x, dx, dy)
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def _motion_blur_image(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    return _motion_blur(x, radius=c[0], sigma=c[1], angle=rng.uniform(-45, 45))


def _zoom_blur(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    x = (x / 255.0).astype(np.float32)
    total = np.zeros_like(x)
    for factor in c:
        total += _clipped_zoom(x, factor)
    return np.clip((x + total) / (len(c) + 1), 0, 1) * 255


def _snow(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    import cv2

    mean, std, zoom, threshold, radius, sigma, weight = c
    x = x.astype(np.float32) / 255.0
    flakes = rng.normal(size=x.shape[:2], loc=mean, scale=std)
    flakes = _clipped_zoom(flakes[..., None], zoom)
    flakes[flakes < threshold] = 0
    flakes = (np.clip(flakes.squeeze(-1), 0, 1) * 255).astype(np.uint8)
    flakes = _motion_blur(flakes, radius=radius, sigma=sigma, angle=rng.uniform(-135, -45))
    flakes = (flakes / 255.0)[..., None]
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(SIDE, SIDE, 1)
    x = weight * x + (1 - weight) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + flakes + np.rot90(flakes, k=2), 0, 1) * 255


def _frost(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    textures = _frost_textures()
    texture = textures[rng.integers(len(textures))]
    top = rng.integers(0, texture.shape[0] - SIDE)
    left = rng.integers(0, texture.shape[1] - SIDE)
    patch = texture[top : top + SIDE, left : left + SIDE]
    return np.clip(c[0] * x + c[1] * patch, 0, 255)


def _fog(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    x = x / 255.0
    peak = x.max()
    x = x + c[0] * _plasma_fractal(rng, SIDE, c[1])[..., None]
    return np.clip(x * peak / (peak + c[0]), 0, 1) * 255


def _brightness(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(x / 255.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def _contrast(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    x = x / 255.0
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _elastic_transform(x: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    import cv2
    from scipy.ndimage import gaussian_filter, map_coordinates

    scale, smooth, jitter = c
    x = x.astype(np.float32) / 255.0
    # a random affine map: three points around the centre, each moved by up to `jitter`
    centre, half = np.float32(SIDE // 2), SIDE // 3
    source = np.float32(
        [[centre + half, centre + half], [centre + half, centre - half], [centre - half] * 2]
    )
    target = source + rng.uniform(-jitter, jitter, size=source.shape).astype(np.float32)
    affine = cv2.getAffineTransform(source, target)
    x = cv2.warpAffine(x, affine, (SIDE, SIDE), borderMode=cv2.BORDER_REFLECT_101)
    # then a smooth random displacement field (skimage's gaussian is this scipy call)
    dx, dy = (
        gaussian_filter(rng.uniform(-1, 1, size=(SIDE, SIDE)), smooth, mode="reflect", truncate=3)
        * scale
        for _ in range(2)
    )
    rows, cols, chans = np.meshgrid(np.arange(SIDE), np.arange(SIDE), np.arange(3), indexing="ij")
    coords = [
        rows + dy.astype(np.float32)[..., None],
        cols + dx.astype(np.float32)[..., None],
        chans,
    ]
    return np.clip(map_coordinates(x, coords, order=1, mode="reflect"), 0, 1) * 255


def _pixelate(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    small = int(SIDE * c)
    image = Image.fromarray(x).resize((small, small), Image.Resampling.BOX)
    return np.asarray(image.resize((SIDE, SIDE), Image.Resampling.BOX))


def _jpeg_compression(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(x).save(buffer, "JPEG", quality=c)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


_CORRUPT: dict[str, Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur_image,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}
assert tuple(_CORRUPT) == CIFAR10C_CORRUPTIONS


# ----------------------------------------------------------------------------- applying it


def image_rng(seed: int, corruption: str, severity: int, index: int) -> np.random.Generator:
    """The generator of test image `index` under `corruption` at `severity`."""
    return np.random.default_rng((seed, CIFAR10C_CORRUPTIONS.index(corruption), severity, index))


def corrupt_images(
    images: np.ndarray, corruption: str, severity: int, *, seed: int = DEFAULT_SEED, start: int = 0
) -> np.ndarray:
    """CIFAR-10-C's `corruption` at `severity` applied to each image.

    Args:
        images: (n, 32, 32, 3) uint8 RGB, test images `start` .. `start + n - 1`.
        seed: the generation's seed; image i uses `image_rng(seed, corruption, severity, i)`.
        start: test-set index of the first image (so that a chunk draws what a whole run does).

    Returns:
        (n, 32, 32, 3) uint8. Values are truncated to integers as the script's `np.uint8` does.
    """
    (corruption,) = check_corruptions([corruption])
    (severity,) = check_severities([severity])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (SIDE, SIDE, 3):
        raise ValueError(
            f"images must be (n, {SIDE}, {SIDE}, 3) uint8, got {images.dtype} {images.shape}"
        )
    _extra()
    function, params = _CORRUPT[corruption], _PARAMS[corruption][severity - 1]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        rng = image_rng(seed, corruption, severity, start + i)
        corrupted = np.asarray(function(image, params, rng))
        # the script's np.uint8(...) truncates; every function has clipped to [0, 255]
        out[i] = np.clip(corrupted, 0, 255).astype(np.uint8)
    return out
