"""How flexvid's command-line options look: help that shows every default, and on/off switches.

Every flag is spelled with underscores (`--batch_size`, as in the authors' scripts), and every
boolean is a switch: `--name` turns it on and `--no_name` turns it off.
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

NEGATION_PREFIX = "--no_"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that ends each option's text with its default, unless the text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.required or action.default is argparse.SUPPRESS or "default" in text:
            return text
        if action.default is None:
            return f"{text} (default: none)"
        if isinstance(action.default, bool) and action.nargs == 0:  # a switch shows its state; a flag is off until given
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

    def __init__(self, option_strings: Sequence[str], dest: str, default: bool | None = False,
                 help: str | None = None) -> None:
        names = [name for flag in option_strings for name in (flag, NEGATION_PREFIX + flag.removeprefix("--"))]
        super().__init__(names, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, not str(option_string).startswith(NEGATION_PREFIX))

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)
