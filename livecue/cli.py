"""``livecue``: one command with subcommands, each in its own module under :mod:`livecue.commands`.

A command module defines ``NAME``, ``HELP`` (one line), ``SETTINGS`` (names of the settings it
takes as flags), ``add_arguments(parser)`` and ``run(args, settings) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

import prometheus_client

from schemas.errors import ConfigError, LiveCueError

from . import __version__
from .config import add_setting_flags, settings_from_args
from .kafka_client import preflight
from .logs import configure_logging

__all__ = ["main", "COMMANDS"]

#: Order shown in ``livecue --help``.
COMMANDS = (
    "demo", "broker", "topics", "room", "worker", "gateway", "token",
    "simulate", "record", "replay", "backtest", "report", "reporter", "bench",
)


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"livecue.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"livecue.commands.{name}":
            return None
        raise


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = argparse.ArgumentParser(
        prog="livecue",
        description="LiveCue: live-stream commerce events in, timely cues for the room out.",
    )
    parser.add_argument("--version", action="version", version=f"livecue {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, ModuleType] = {}
    for name in COMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        modules[name] = mod
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        add_setting_flags(p, mod.SETTINGS)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        settings = settings_from_args(args, os.environ)
    except ConfigError as exc:
        print(f"livecue {args.command}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    # One series per metric: no `*_created` gauges doubling every counter and histogram.
    prometheus_client.disable_created_metrics()
    try:
        # A secured cluster: a wrong password or untrusted certificate is one line and exit 1.
        preflight(args.command, args, settings)
        return int(modules[args.command].run(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except LiveCueError as exc:
        print(f"livecue {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
