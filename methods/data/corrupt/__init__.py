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

One module per job, their public names (and the helpers tests reach) exported here:

- `checks`: validation of corruption names and severities;
- `extra`: the optional package (`require_extra`, `MissingExtraError`), its motion
  blur and frost textures;
- `recipes`: the 15 corruptions with their parameters, and the per-image randomness
  (`image_rng`, `corrupt_images`);
- `files`: the on-disk layout (what `load_cifar10c` reads) and its atomic writes;
- `generate`: the driver (`generate_cifar10c`, its `GenerationReport`) and the
  CIFAR-10 test set it reads (`read_cifar10_test`).
"""

from __future__ import annotations

from methods.data.corrupt.checks import check_corruptions, check_severities
from methods.data.corrupt.extra import (
    EXTRA_INSTALL,
    MissingExtraError,
    _extra,
    _motion_blur,
    require_extra,
)
from methods.data.corrupt.files import MANIFEST, PARTS_FOLDER, OutputConflictError, _atomic_save
from methods.data.corrupt.generate import (
    CHUNK,
    GenerationReport,
    generate_cifar10c,
    read_cifar10_test,
)
from methods.data.corrupt.recipes import (
    DEFAULT_SEED,
    SIDE,
    _glass_shift,
    corrupt_images,
    image_rng,
)

__all__ = [
    "CHUNK",
    "DEFAULT_SEED",
    "EXTRA_INSTALL",
    "MANIFEST",
    "PARTS_FOLDER",
    "SIDE",
    "GenerationReport",
    "MissingExtraError",
    "OutputConflictError",
    "_atomic_save",
    "_extra",
    "_glass_shift",
    "_motion_blur",
    "check_corruptions",
    "check_severities",
    "corrupt_images",
    "generate_cifar10c",
    "image_rng",
    "read_cifar10_test",
    "require_extra",
]
