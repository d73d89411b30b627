"""Generate CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019) from the CIFAR-10 test set.

The recipe is the authors' CIFAR one: the 15 corruptions with the per-severity
parameters of `make_cifar_c.py` (github.com/hendrycks/robustness,
ImageNet-C/create_c/). It is *not* `imagecorruptions`' own `corrupt()`: that
package carries the ImageNet-C parameters, which are far stronger on 32x32
images (its gaussian_noise at severity 1, sigma 0.08, is CIFAR-10-C's severity 3;
its severity 5, sigma 0.38, is almost four times CIFAR-10-C's 0.10), so its
output would not be comparable with published CIFAR-10-C numbers.

From the optional `imagecorruptions-imaug` package (`pip install 'limelight[corrupt]'`)
come the two pieces the authors' script takes from elsewhere: the frost textures,
and a NumPy motion blur standing in for ImageMagick's `MotionBlurImage` (used by
motion_blur and snow; the authors called ImageMagick through Wand). OpenCV comes
with it and does what the authors' script does with OpenCV.

Known differences from the published files: the random draws (the published
ones came from an unseeded global NumPy state), and motion blur, computed by
imagecorruptions' re-implementation instead of ImageMagick (it agrees with
ImageMagick 6.9.11 to within one grey level; `_motion_blur`). Everything else
follows the script, including two quirks that shape the published data:
glass_blur's pixel "swap" is a copy (a NumPy tuple swap of two views), and
frost draws from the first five of its six textures.

Randomness: image i of the test set under corruption c at severity s uses its own
generator, `numpy.random.default_rng((seed, k, s, i))`, k being c's index in
`CIFAR10C_CORRUPTIONS`. The output therefore depends only on the seed (default
0): not on the order of generation, on `limit` (a run on the first N images
reproduces the first N rows of each severity of a full run) or on `workers`.

Layout (what `load_cifar10c` reads): `<out>/CIFAR-10-C/<corruption>.npy`,
(5N, 32, 32, 3) uint8, severity s in rows (s-1)N : sN, and `labels.npy`, the N
test labels tiled five times, uint8. Each severity block is first written to
`CIFAR-10-C/.parts/` (an interrupted run resumes from the finished blocks); the
corruption's file is assembled once all five exist. Every file is written under
a temporary name and renamed, so no half-written file ever carries a final name.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import shlex
import time
import types
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from methods.data._base import DataNotFoundError, one_line, resolve_data_dir
from methods.data.cifar10c import CIFAR10C_CORRUPTIONS, CIFAR10C_FOLDER, SEVERITIES

logger = logging.getLogger(__name__)

DEFAULT_SEED = 0
SIDE = 32  # the recipe's parameters are for 32x32 images
EXTRA_INSTALL = "pip install 'limelight[corrupt]'"
PARTS_FOLDER = ".parts"
MANIFEST = "limelight_corrupt.json"
CHUNK = 250  # images per task of a worker pool and per progress update (~0.25 s of work)


class MissingExtraError(ImportError):
    """The optional `imagecorruptions-imaug` package is not installed; the message says how."""


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


# ----------------------------------------------------------------------------- the extra


@functools.lru_cache(maxsize=1)
def _extra() -> types.ModuleType:
    """imagecorruptions' corruptions module (with cv2), or MissingExtraError with the fix."""
    try:
        import cv2
        from imagecorruptions import corruptions
    except ImportError as err:
        raise MissingExtraError(
            f"limelight corrupt needs the optional imagecorruptions-imaug package "
            f"({one_line(err)}); install it with: {EXTRA_INSTALL}"
        ) from err
    if not hasattr(corruptions, "_motion_blur"):
        raise MissingExtraError(
            "the installed imagecorruptions has no _motion_blur (not the imagecorruptions-imaug "
            f"fork?); install it with: pip uninstall imagecorruptions && {EXTRA_INSTALL}"
        )
    cv2.setNumThreads(1)  # 32x32 images: threads only cost; parallelism is across images
    return corruptions


def require_extra() -> None:
    """Raise MissingExtraError (one line, with the install command) unless the extra imports."""
    _extra()


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion blur of a (H,W) or (H,W,3) uint8 array, as uint8.

    imagecorruptions' NumPy version, truncated to integers: so it matches
    ImageMagick 6.9.11's `-motion-blur RADIUSxSIGMA+ANGLE` (the script's PNG round
    trip) to within 0.003 grey levels on average, at most 1, at CIFAR-10-C's
    parameters (rounding instead would be 0.5 off on average).
    """
    blurred = _extra()._motion_blur(x, radius=radius, sigma=sigma, angle=angle)
    return np.clip(blurred, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _frost_textures() -> tuple[np.ndarray, ...]:
    """The frost textures, RGB uint8, scaled by 0.2 as the script does (once per process)."""
    from importlib.resources import as_file, files

    import cv2

    textures = []
    # The script draws np.random.randint(5) over six names: frost6 is never used.
    for name in ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"):
        with as_file(files("imagecorruptions") / "frost" / name) as path:
            bgr = cv2.imread(str(path))
        if bgr is None:
            raise MissingExtraError(
                f"cannot read the frost texture {name}; reinstall: {EXTRA_INSTALL}"
            )
        textures.append(cv2.resize(bgr, (0, 0), fx=0.2, fy=0.2)[..., ::-1].copy())
    return tuple(textures)


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


# ----------------------------------------------------------------------------- public API


def check_corruptions(names: Iterable[str]) -> tuple[str, ...]:
    """The names, in CIFAR-10-C's order, or ValueError naming a bad one and the valid ones."""
    names = tuple(names)
    for name in names:
        if name not in _CORRUPT:
            raise ValueError(
                f"unknown corruption {name!r}; valid: {', '.join(CIFAR10C_CORRUPTIONS)}"
            )
    if not names:
        raise ValueError(f"name at least one corruption; valid: {', '.join(CIFAR10C_CORRUPTIONS)}")
    return tuple(c for c in CIFAR10C_CORRUPTIONS if c in names)


def check_severities(values: Iterable[int]) -> tuple[int, ...]:
    """The severities, sorted and unique, or ValueError unless each is one of 1..5."""
    values = tuple(values)
    for s in values:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s not in SEVERITIES:
            raise ValueError(f"severity must be one of 1, 2, 3, 4, 5, got {s!r}")
    if not values:
        raise ValueError("name at least one severity of 1, 2, 3, 4, 5")
    return tuple(sorted({int(s) for s in values}))


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


def read_cifar10_test(
    data_dir: str | Path | None, *, download: bool = False, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-10 test images (N, 32, 32, 3) uint8 RGB and labels (N,) int64.

    Reads `<data_dir>/cifar-10-batches-py` with the same reader (and the same one-line
    `DataNotFoundError`s) as the `cifar10` data set; `limit` keeps the first N.
    """
    from methods.data.torchvision_sets import _CIFAR10, _read  # torchvision: ~1.5 s

    root = resolve_data_dir(data_dir)
    expected = root / _CIFAR10.base_folder
    if not download and not expected.is_dir():
        raise DataNotFoundError(
            f"--data-dir: no CIFAR-10 under {root} (expected {expected}); fetch it with: "
            f"limelight corrupt --data-dir {shlex.quote(str(root))} --download"
        )
    _, test = _read(_CIFAR10, "cifar10", "CIFAR-10", _CIFAR10.base_folder, root, download)
    images = np.ascontiguousarray(test.data[:limit])
    labels = np.asarray(test.targets[:limit], dtype=np.int64)
    return images, labels


# ----------------------------------------------------------------------------- files


class OutputConflictError(ValueError):
    """An existing output file does not fit this run; the message names it and the fix."""


@dataclass(frozen=True)
class GenerationReport:
    """What `generate_cifar10c` did.

    Attributes:
        folder: the CIFAR-10-C folder written.
        written: corruptions whose `<corruption>.npy` this call wrote.
        skipped: corruptions whose complete file already existed (kept: no overwrite).
        pending: corruption -> its severities still missing; the finished blocks wait
            in `.parts/`, and a run with the missing severities completes the file.
        images: test images per severity block (N).
        blocks: (corruption, severity) blocks computed by this call.
        seconds: wall time of the call.
    """

    folder: Path
    written: tuple[str, ...]
    skipped: tuple[str, ...]
    pending: dict[str, tuple[int, ...]]
    images: int
    blocks: int
    seconds: float


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """np.save under a temporary name in the same folder, then rename it to `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: leave nothing half-written
        tmp.unlink(missing_ok=True)
        raise


def _rows(path: Path) -> int | None:
    """Row count of an existing .npy file (from its header); None if missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return int(np.load(path, mmap_mode="r").shape[0])
    except (OSError, ValueError, IndexError):
        return None


def _part_path(folder: Path, corruption: str, severity: int, seed: int, n: int) -> Path:
    # seed and N in the name: blocks of another seed or size never mix into one file
    return folder / PARTS_FOLDER / f"{corruption}-s{severity}-seed{seed}-n{n}.npy"


def _conflict(path: Path, found: str, wanted: str) -> OutputConflictError:
    return OutputConflictError(
        f"--out: {path} {found}, this run writes {wanted}; pass --overwrite to replace it, "
        "or choose another --out"
    )


def _complete(folder: Path, corruptions: Sequence[str], tiled: np.ndarray) -> tuple[str, ...]:
    """The corruptions whose file exists with this run's row count.

    Raises:
        OutputConflictError: a file (or labels.npy) that this run would not write as it
            is: another row count, unreadable, or other labels. Checked before any work.
    """
    wanted = f"{len(tiled)} rows ({len(tiled) // len(SEVERITIES)} images x 5 severities)"
    complete = []
    for name in corruptions:
        path = folder / f"{name}.npy"
        if path.exists():
            rows = _rows(path)
            if rows != len(tiled):
                raise _conflict(
                    path, "is unreadable" if rows is None else f"has {rows} rows", wanted
                )
            complete.append(name)
    labels = folder / "labels.npy"
    if labels.exists():
        rows = _rows(labels)
        if rows != len(tiled):
            raise _conflict(labels, "is unreadable" if rows is None else f"has {rows} rows", wanted)
        if not np.array_equal(np.load(labels), tiled):
            raise _conflict(labels, "holds other labels", "this CIFAR-10 test set's labels")
    return tuple(complete)


def _write_manifest(folder: Path, corruption: str, entry: dict) -> None:
    """Record how `<corruption>.npy` was made in `limelight_corrupt.json` (atomically)."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        manifest = {}
    try:
        package = metadata.version("imagecorruptions-imaug")
    except metadata.PackageNotFoundError:
        package = None
    manifest[corruption] = {
        **entry,
        "recipe": "CIFAR-10-C parameters of make_cifar_c.py (hendrycks/robustness)",
        "imagecorruptions_imaug": package,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _block(
    images: np.ndarray,
    corruption: str,
    severity: int,
    seed: int,
    chunk: int,
    pool: ProcessPoolExecutor | None,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    """One severity block, `chunk` images at a time (in the pool when given)."""
    starts = range(0, len(images), chunk)
    if pool is None:
        chunks: Iterable[np.ndarray] = (
            corrupt_images(images[s : s + chunk], corruption, severity, seed=seed, start=s)
            for s in starts
        )
    else:
        futures = [
            pool.submit(
                corrupt_images, images[s : s + chunk], corruption, severity, seed=seed, start=s
            )
            for s in starts
        ]
        chunks = (f.result() for f in futures)
    out = []
    for done in chunks:
        out.append(done)
        if progress is not None:
            progress(len(done))
    return np.concatenate(out)


def _assemble(folder: Path, corruption: str, seed: int, n: int) -> tuple[int, ...]:
    """Write `<corruption>.npy` from its five blocks when all are there; then drop them.

    A block missing from `.parts/` is taken from the existing `<corruption>.npy` when
    it has this run's size (an --overwrite of some severities keeps the others).

    Returns:
        The severities still missing (empty when the file was written).
    """
    path = folder / f"{corruption}.npy"
    parts = {s: _part_path(folder, corruption, s, seed, n) for s in SEVERITIES}
    kept = [s for s, p in parts.items() if not p.exists()]
    if kept and _rows(path) != len(SEVERITIES) * n:
        return tuple(kept)
    blocks = []
    for s, part in parts.items():
        if s in kept:  # copied out of the memory map before the file is replaced
            blocks.append(np.array(np.load(path, mmap_mode="r")[(s - 1) * n : s * n]))
        else:
            blocks.append(np.load(part))
    _atomic_save(path, np.concatenate(blocks))
    entry = {"seed": seed, "images": n}
    if kept:
        entry["severities_kept_from_the_previous_file"] = kept
    _write_manifest(folder, corruption, entry)
    for part in parts.values():
        part.unlink(missing_ok=True)
    logger.info("%s: wrote %s", corruption, path)
    return ()


def _pool(workers: int) -> ProcessPoolExecutor | None:
    if workers == 1:
        return None
    import multiprocessing

    # spawn, not fork: the parent may hold torch or OpenCV threads, which fork does not copy
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def generate_cifar10c(
    images: np.ndarray,
    labels: np.ndarray,
    out: str | Path,
    *,
    corruptions: Sequence[str] = CIFAR10C_CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    seed: int = DEFAULT_SEED,
    overwrite: bool = False,
    workers: int = 1,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> GenerationReport:
    """Write CIFAR-10-C for `images` under `<out>/CIFAR-10-C/` (layout: module docstring).

    Args:
        images: (N, 32, 32, 3) uint8 RGB test images; labels: (N,) their classes.
        out: the folder to hold `CIFAR-10-C/` (a `--data-dir` for `load_cifar10c`).
        corruptions: which of `CIFAR10C_CORRUPTIONS` to make (default all 15).
        severities: which severity blocks to compute now (default 1..5); a corruption's
            file is written once all five blocks exist.
        seed: the generation's seed (default 0).
        overwrite: recompute the requested blocks and replace existing files; without
            it a complete file is skipped and a finished block in `.parts/` reused.
        workers: processes corrupting chunks of images (1: this process).
        chunk: images per chunk (a task of the pool, a step of the progress).
        progress: called with the number of images just corrupted.

    Raises:
        ValueError: bad names or arguments. MissingExtraError: imagecorruptions-imaug
            missing. OutputConflictError: an existing file this run would not write as it
            is (no overwrite); raised before any work.
    """
    corruptions = check_corruptions(corruptions)
    severities = check_severities(severities)
    if workers < 1 or chunk < 1:
        raise ValueError(f"workers and chunk must be >= 1, got {workers} and {chunk}")
    n = len(images)
    if n == 0 or labels.shape != (n,):
        raise ValueError(f"need N >= 1 images and N labels, got {images.shape}, {labels.shape}")
    require_extra()
    started = time.perf_counter()
    folder = Path(out).expanduser().absolute() / CIFAR10C_FOLDER
    tiled = np.tile(labels, len(SEVERITIES)).astype(np.uint8)  # the published dtype
    skipped = () if overwrite else _complete(folder, corruptions, tiled)
    (folder / PARTS_FOLDER).mkdir(parents=True, exist_ok=True)
    label_path = folder / "labels.npy"
    if overwrite or not label_path.exists():
        _atomic_save(label_path, tiled)

    written, pending, blocks = [], {}, 0
    pool = _pool(workers)
    try:
        for corruption in corruptions:
            if corruption in skipped:
                logger.info("%s: %s exists, skipped", corruption, folder / f"{corruption}.npy")
                if progress is not None:
                    progress(n * len(severities))
                continue
            for severity in severities:
                part = _part_path(folder, corruption, severity, seed, n)
                if not overwrite and _rows(part) == n:
                    logger.info("%s severity %d: reusing %s", corruption, severity, part)
                    if progress is not None:
                        progress(n)
                    continue
                tick = time.perf_counter()
                block = _block(images, corruption, severity, seed, chunk, pool, progress)
                _atomic_save(part, block)
                blocks += 1
                logger.info(
                    "%s severity %d: %d images in %.1fs",
                    corruption, severity, n, time.perf_counter() - tick,
                )  # fmt: skip
            missing = _assemble(folder, corruption, seed, n)
            if missing:
                pending[corruption] = missing
            else:
                written.append(corruption)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if not any((folder / PARTS_FOLDER).iterdir()):
        (folder / PARTS_FOLDER).rmdir()
    return GenerationReport(
        folder=folder,
        written=tuple(written),
        skipped=tuple(skipped),
        pending=pending,
        images=n,
        blocks=blocks,
        seconds=time.perf_counter() - started,
    )
