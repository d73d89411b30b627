"""The results root, shared by every module that writes under it (no heavy imports:
``orchestrator.leaderboard`` stays importable without torch)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from methods.options import ConfigError

__all__ = [
    "DEFAULT_STORAGE",
    "STORAGE_ENV",
    "as_uri",
    "check_folder_name",
    "default_root",
    "is_uri",
    "local_root",
]

#: Where results go when neither --storage nor LIMELIGHT_STORAGE says.
DEFAULT_STORAGE = "results"
STORAGE_ENV = "LIMELIGHT_STORAGE"


def default_root(storage: str | None) -> str:
    """``storage``, else ``$LIMELIGHT_STORAGE``, else ``./results``."""
    return storage or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def as_uri(root: str | Path) -> str:
    """A pyarrow filesystem URI: URIs as given, local paths made absolute."""
    text = str(root)
    return text if is_uri(text) else str(Path(text).resolve())


def local_root(storage: str, what: str) -> Path:
    """``storage`` as a local path; a URI exits 2 saying which part needs a local one."""
    if is_uri(storage):
        raise ConfigError(
            "storage",
            f"{storage} is a URI; {what} with local file APIs: give a local or shared file "
            "system path (URI roots serve limelight explain's mask store)",
        )
    return Path(storage)


def check_folder_name(field: str, value: Any) -> str:
    """A name that becomes one folder under the root (a sweep, a benchmark): every reader
    must take it literally. ``/ \\ =`` and whitespace would change the path, a leading
    ``.`` or ``_`` makes pyarrow and pandas skip the folder, and ``%`` would be
    URL-decoded by Hive readers. ``ConfigError`` names ``field``."""
    if not isinstance(value, str) or not value:
        raise ConfigError(field, f"must be a non-empty string, got {value!r}")
    if re.search(r"[/\\=%\s]", value) or value[0] in "._":
        raise ConfigError(
            field,
            f"{value!r} must be a plain folder name (no / \\ = % or spaces, not starting "
            "with . or _)",
        )
    return value
