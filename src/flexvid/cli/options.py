"""How flexvid's command-line options look: help that shows every default, and on/off switches.

Every flag is spelled with underscores (`--batch_size`, as in the authors' scripts), and every
boolean is a switch: `--name` turns it on and `--no_name` turns it off. `add_config_flags` makes the
flags of a settings dataclass from its fields, so a flag, a YAML key and a field share one name.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Sequence
from typing import Any

from flexvid.config import field_type

NEGATION_PREFIX = "--no_"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that ends each option's text with its default, unless the text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.required or action.default is argparse.SUPPRESS or "default" in text:
            return text
        if action.default is None:
            return f"{text} (default: none)"
        if (
            isinstance(action.default, bool) and action.nargs == 0
        ):  # a switch shows its state; a flag is off until given
            on = isinstance(action, Switch) and action.default
            return f"{text} (default: {'on' if on else 'off'})"
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser (and, through add_subparsers, its sub-parsers) with DefaultsHelpFormatter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


class Switch(argparse.Action):
    """A boolean option: `--name` sets True, `--no_name` sets False."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, default: bool | None = False, help: str | None = None
    ) -> None:
        names = [name for flag in option_strings for name in (flag, NEGATION_PREFIX + flag.removeprefix("--"))]
        super().__init__(names, dest, nargs=0, default=default, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, not str(option_string).startswith(NEGATION_PREFIX))

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    exclude: Sequence[str] = (),
    given_only: bool = False,
) -> None:
    """Add `--<field>` for every field of dataclass `cls` but `exclude`: typed by its annotation (booleans
    are switches, tuples comma-separated), with the help text and choices of its metadata
    (`flexvid.config.setting`). With `given_only` every flag defaults to None, "not given", and its help
    states the field's default, so only the flags typed override other layers (a YAML preset)."""
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        kind = field_type(cls, f.name)
        text = f.metadata.get("help", "")
        if given_only and "default" not in text:
            text = f"{text} (default: {_shown(f.default)})"
        options: dict[str, Any] = {"default": None if given_only else f.default, "help": text}
        if kind is bool:
            parser.add_argument(f"--{f.name}", action=Switch, **options)
            continue
        if f.metadata.get("choices"):
            options["choices"] = list(f.metadata["choices"])
        parser.add_argument(f"--{f.name}", type=_parser_of(kind), **options)


def given_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` given as flags added with `add_config_flags(..., given_only=True)`."""
    values = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls)}
    return {name: value for name, value in values.items() if value is not None}


def _parser_of(kind: Any) -> Callable[[str], Any]:
    """The argparse `type` of a field annotation: the type itself, or a comma-separated list for tuples."""
    if typing.get_origin(kind) is not tuple:
        return kind
    item = typing.get_args(kind)[0]

    def parse(text: str) -> list[Any]:
        return [item(value) for value in text.split(",") if value.strip()]

    parse.__name__ = f"comma-separated {item.__name__}"  # argparse names it in "invalid ... value"
    return parse


def _shown(default: Any) -> str:
    """A field default as --help shows it: on/off, none, or comma-separated values."""
    if isinstance(default, bool):
        return "on" if default else "off"
    if default is None:
        return "none"
    if default == "":
        return '""'
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return str(default)
