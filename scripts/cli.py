"""Shared command-line plumbing: one flag per configuration parameter, one-line errors."""

import argparse
import dataclasses
import sys

from hw.config import PRESETS, AccelConfig

__all__ = ["ArgumentParser", "add_config_args", "config_from_args"]


class ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr and exit status 2."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def _bool(text):
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def add_config_args(parser):
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="starting configuration (default: %(default)s)")
    group = parser.add_argument_group("configuration parameters (override the preset)")
    for field in dataclasses.fields(AccelConfig):
        kind = {int: int, bool: _bool, str: str}[type(field.default)]
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=kind,
                           default=None, metavar=field.name.upper())


def config_from_args(parser, args):
    """The preset with every given flag applied; a bad value ends the program (exit 2)."""
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(AccelConfig)
               if getattr(args, f.name) is not None}
    try:
        return PRESETS[args.preset].replace(**changes)
    except ValueError as e:
        parser.error(str(e))
