"""Typed, validated option records: a setting's default, range, choices and help live once.

A field declared with ``option(...)`` carries what the command line needs (help,
choices) and what validation needs (range, choices). ``validate`` checks a record
against them and raises ``ConfigError`` naming the field, so a method's options, a
run's config and the flags derived from them never restate each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["ConfigError", "InputError", "Options", "option", "validate"]


class InputError(ValueError):
    """Bad input whose one-line message says how to fix it (a missing data set or
    checkpoint, a missing optional package): the command line exits 2 on it."""


class ConfigError(InputError):
    """A configuration value is not allowed. ``field`` names it (snake_case)."""

    #: The command line shows ``field`` as the flag the user typed (``--mask-ratio``); a
    #: subclass for input from a file (a sweep spec's key path) shows it as written.
    names_a_flag: bool = True

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


Choices = Iterable[str] | Callable[[], Iterable[str]]


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Choices | None = None,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    metavar: str | None = None,
    flag: bool = True,
    positional: bool = False,
    repeat: bool = False,
    note: str | None = None,
) -> Any:
    """A dataclass field with its validation and command-line description.

    Args:
        help: one phrase for ``--help``; the default is appended by the CLI.
        choices: the allowed values (or a callable giving them: a registry that fills
            after this module is imported).
        low, high: the allowed range; ``open_low``/``open_high`` exclude the bound.
        flag: False for fields that never become a command-line flag.
        positional: the field is a positional argument (named by its upper-case
            ``metavar``), not a ``--flag``.
        repeat: a tuple field whose flag is given once per value (``--spec a --spec b``).
        note: appended to a range error, e.g. the scale a value is on.
    """
    metadata = {
        "help": help,
        "choices": choices,
        "low": low,
        "high": high,
        "open_low": open_low,
        "open_high": open_high,
        "metavar": metavar,
        "flag": flag,
        "positional": positional,
        "repeat": repeat,
        "note": note,
    }
    return dataclasses.field(default=default, metadata=metadata)


def choices_of(field: dataclasses.Field) -> tuple[str, ...] | None:
    choices = field.metadata.get("choices")
    if choices is None:
        return None
    return tuple(choices() if callable(choices) else choices)


def _check_range(name: str, value: float, meta: Any) -> None:
    low, high = meta.get("low"), meta.get("high")
    below = low is not None and (value <= low if meta.get("open_low") else value < low)
    above = high is not None and (value >= high if meta.get("open_high") else value > high)
    if not (below or above):
        return
    if low is not None and high is not None:
        left = "(" if meta.get("open_low") else "["
        right = ")" if meta.get("open_high") else "]"
        note = f" ({meta['note']})" if meta.get("note") else ""
        raise ConfigError(name, f"must lie in {left}{low:g}, {high:g}{right}{note}, got {value:g}")
    if low is not None:
        raise ConfigError(
            name, f"must be {'>' if meta.get('open_low') else '>='} {low:g}, got {value:g}"
        )
    raise ConfigError(
        name, f"must be {'<' if meta.get('open_high') else '<='} {high:g}, got {value:g}"
    )


def validate(record: Any) -> None:
    """Check every ``option`` field of a dataclass instance; None always passes."""
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if value is None or "help" not in field.metadata:
            continue
        values = value if isinstance(value, tuple) else (value,)
        valid = choices_of(field)
        for item in values:
            if valid is not None and item not in valid:
                raise ConfigError(field.name, f"unknown value {item!r}; valid: {', '.join(valid)}")
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                _check_range(field.name, item, field.metadata)


def _tuples_from_text_and_lists(record: Any) -> None:
    """A tuple-valued option also takes "a,b" (a flag, a spec) or a list (JSON)."""
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if not isinstance(field.default, tuple):
            continue
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        elif isinstance(value, list):
            value = tuple(value)
        object.__setattr__(record, field.name, value)


@dataclass(frozen=True)
class Options:
    """A method's hyperparameters: subclass as a frozen dataclass of ``option`` fields.

    ``attack_eps`` is special: None means the data set's default eps, filled in by
    ``resolved``. Override ``resolved`` for other defaults that depend on the run.
    """

    def __post_init__(self) -> None:
        _tuples_from_text_and_lists(self)
        validate(self)

    def resolved(self, *, default_eps: float, epochs: int) -> Options:
        """These options with run-dependent defaults filled in (never None after)."""
        if getattr(self, "attack_eps", 0.0) is None:
            return dataclasses.replace(self, attack_eps=default_eps)
        return self

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))
