"""The optional `imagecorruptions-imaug` package: the two pieces of the recipe the
authors' script takes from elsewhere (ImageMagick's motion blur, the frost textures),
and OpenCV. Imported on first use; missing, it raises `MissingExtraError` naming the
install command."""

from __future__ import annotations

import functools
import types

import numpy as np

from methods.data._base import one_line
from methods.options import InputError

EXTRA_INSTALL = "pip install 'limelight[corrupt]'"


class MissingExtraError(InputError, ImportError):
    """The optional `imagecorruptions-imaug` package is not installed; the message says how."""


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
