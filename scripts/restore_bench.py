#!/usr/bin/env python3
"""Changelog restore on both brokers: a worker state of ``--rooms`` rooms (10,000 by default),
killed with SIGKILL and restored by a fresh worker; prints the figures for each broker.

    .venv/bin/python scripts/restore_bench.py [--rooms 10000] [--rounds 3] [--brokers tansu,kafka] [--json OUT]

What is measured and checked is described in ``tests/integration/restore_tools.py``: changelog
writes made vs records held (and, on Kafka, after compaction), time from the fresh worker's
spawn to partitions assigned / processing again / first cue / every input committed, every
backtest cue on live.cues, and a sample of rooms' states equal to a recomputation. Exit status 0
when every check holds on every broker.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

from restore_tools import restore_run  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rooms", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3, help="rounds of events per room before the kill")
    p.add_argument("--brokers", default="tansu,kafka")
    p.add_argument("--sample", type=int, default=10_000, help="rooms whose state is compared with a recomputation (default: up to 10,000)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="a LIVECUE_* setting for the workers (repeatable)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="livecue-restore-"))
    figures = []
    for kind in [b.strip() for b in args.brokers.split(",") if b.strip()]:
        fig = restore_run(kind, args.rooms, tmp / kind, uuid.uuid4().hex[:8], rounds=args.rounds,
                          sample=args.sample, timeout=600, env=dict(e.split("=", 1) for e in args.env))
        print("\n".join(fig.lines()), flush=True)
        figures.append(fig)
    print("\nverdict: " + ", ".join(f"{f.broker} {'PASS' if f.ok else 'FAIL'}" for f in figures))
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(f) for f in figures], indent=1))
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
