"""Command-line flags derived from the config dataclasses.

Each ``option`` field becomes ``--field-name`` with its type, choices and help, and the
default shown from the dataclass. Every derived flag defaults to ``SUPPRESS``: the
namespace then holds only what the user typed, so a method can refuse an option it
does not use, and the dataclass (not argparse) fills in defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from methods.options import choices_of

__all__ = ["add_fields", "add_method_options", "flag_name", "from_flags", "given"]

T = TypeVar("T")


def flag_name(field: str) -> str:
    """``mask_ratio`` -> ``--mask-ratio``; an upper-case name (a positional such as
    ``KIND`` or ``SPEC``) stays as the user sees it in ``--help``."""
    if field.isupper():
        return field
    return "--" + field.replace("_", "-")


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        message = f"expected numbers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(v for v in text.replace(",", " ").split() if v)


def _base_type(hint: Any) -> Any:
    """``int | None`` -> int; other hints unchanged."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0]
    return hint


def _describe_default(value: Any) -> str | None:
    if value is None or value is dataclasses.MISSING:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _help(field: dataclasses.Field, default: Any = dataclasses.MISSING) -> str:
    text = field.metadata["help"]
    default = _describe_default(field.default if default is dataclasses.MISSING else default)
    if default is not None and "(default" not in text:
        text += f" (default: {default})"
    return text


def _argument_kwargs(field: dataclasses.Field, hint: Any, help_text: str) -> dict[str, Any]:
    kind = _base_type(hint)
    kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text, "dest": field.name}
    if field.metadata.get("metavar"):
        kwargs["metavar"] = field.metadata["metavar"]
    if field.metadata.get("positional"):
        del kwargs["dest"]  # argparse takes a positional's dest from its name
        if field.default is not dataclasses.MISSING:
            kwargs["nargs"] = "?"
    elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        kwargs["required"] = True
    if kind is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
        return kwargs
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if field.metadata.get("repeat"):  # --spec a --spec b
            kwargs.update(action="append", type=item)
            return kwargs
        if item is Path:  # several paths: --checkpoint a.pt b.pt
            kwargs.update(type=Path, nargs="+")
            return kwargs
        kwargs["type"] = _float_list if item is float else _name_list
        return kwargs
    kwargs["type"] = kind
    valid = choices_of(field)
    if valid is not None and kind is str:
        kwargs["choices"] = list(valid)
    return kwargs


def add_fields(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    exclude: Iterable[str] = (),
    include: Iterable[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """One flag per ``option`` field of dataclass ``cls`` (only ``include`` when given,
    never ``exclude``). ``defaults``: this command's own default of a field, shown in
    its help (the command must apply it: ``given`` returns only what the user typed)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude or not field.metadata.get("flag", False):
            continue
        if include is not None and field.name not in include:
            continue
        default = (defaults or {}).get(field.name, dataclasses.MISSING)
        kwargs = _argument_kwargs(field, hints[field.name], _help(field, default))
        name = field.name if field.metadata.get("positional") else flag_name(field.name)
        parser.add_argument(name, **kwargs)


def add_method_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    option_fields: dict[str, list[tuple[str, dataclasses.Field]]],
    hints: dict[str, dict[str, Any]],
) -> None:
    """One flag per method option; its help says which methods use it and, where they
    differ, what it means and defaults to for each (``--mask-ratio``: pixels for
    sgt/asgt, superpixels for lgr)."""
    for name, users in option_fields.items():
        described: dict[str, list[str]] = {}
        for method, field in users:
            described.setdefault(_help(field), []).append(method)
        help_text = "; ".join(f"{'/'.join(ms)}: {text}" for text, ms in described.items())
        method, field = users[0]
        kwargs = _argument_kwargs(field, hints[method][name], help_text)
        parser.add_argument(flag_name(name), **kwargs)


def given(args: argparse.Namespace, cls: type, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of ``cls`` the user gave on the command line."""
    names = {f.name for f in dataclasses.fields(cls)} - set(exclude)
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def from_flags(args: argparse.Namespace, cls: type[T], **fixed: Any) -> T:
    """The record ``cls`` from the flags the user gave (the record fills in the
    defaults and validates: a bad value raises ``ConfigError`` naming the field)."""
    return cls(**{**given(args, cls, exclude=tuple(fixed)), **fixed})
