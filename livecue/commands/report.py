"""``livecue report``: the post-show review (复盘) of one room's session, as a self-contained HTML
page plus PNG charts in ``--out``: from a recording (``livecue report FILE.jsonl``; its cues are
the backtest's) or from the topics (``livecue report --room R --broker URL``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from livecue.config import Settings
from livecue.kafka_client import client_kwargs
from schemas.errors import ConfigError, LiveCueError

NAME = "report"
HELP = "write the post-show review (复盘) of a room's session: HTML + PNG charts, from a recording or the topics"
SETTINGS = ("broker", "playbook", "log_format", "log_level")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", nargs="?", metavar="FILE.jsonl",
                   help="a recording (livecue record / simulate --out); without it, read the topics at --broker")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory for index.html and the PNGs")
    p.add_argument("--lang", choices=("zh", "en"), default="zh", help="language of the page (default zh)")
    p.add_argument("--room", default=None, metavar="R", help="the room (required with several rooms or from the topics)")
    p.add_argument("--session", default=None, metavar="S", help="the session id (default: the room's last session)")
    p.add_argument("--compare", type=Path, default=None, metavar="PLAYBOOK",
                   help="also show the cues another playbook would have fired on the same show")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


class _Progress:
    """Progress lines on stderr, at most a few a second."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or (now - self.last < 0.5 and done < total):
            return
        self.last = now
        pct = 100 * done / total if total else 100.0
        print(f"livecue report: {stage} {pct:5.1f}% ({now - self.t0:.1f} s)", file=sys.stderr, flush=True)

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(f"livecue report: {msg} ({time.monotonic() - self.t0:.1f} s)", file=sys.stderr, flush=True)


def _playbook(path: Path | None) -> Any:
    from stream.playbook import default_playbook, load_playbook

    return default_playbook() if path is None else load_playbook(path)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from livecue.report import build_report, write_report
    from livecue.report.source import read_broker, read_file

    prog = _Progress(args.quiet)
    try:
        pb = _playbook(settings.playbook)
        pb_b = _playbook(args.compare) if args.compare is not None else None
    except (ConfigError, OSError, ValueError) as exc:
        print(f"livecue report: {exc}", file=sys.stderr)
        return 2
    try:
        if args.file:
            inputs = read_file(args.file, args.room, prog)
        else:
            if not args.room:
                print("livecue report: --room is required when reading the topics", file=sys.stderr)
                return 2
            inputs = asyncio.run(read_broker(settings.broker, args.room, prog, security=client_kwargs(settings)))
        prog.say(f"room {inputs.room_id}: {len(inputs.events):,} events, {len(inputs.acks)} acks")
        rep = build_report(
            inputs.ordered(), pb, session_id=args.session, cues=inputs.cues or None, acks=inputs.acks,
            deadletters=inputs.deadletters, compare_playbook=pb_b,
            playbook_name=str(settings.playbook or "default"),
            compare_name=str(args.compare) if args.compare else None,
            core_rejections=bool(args.file), progress=prog)
        prog.say(f"figures done: {len(rep.cues)} cues, {len(rep.minutes)} minutes")
        path = write_report(rep, args.out, args.lang)
    except (OSError, ValueError, LiveCueError) as exc:
        print(f"livecue report: {exc}", file=sys.stderr)
        return 1
    prog.say("written")
    print(path)
    return 0
