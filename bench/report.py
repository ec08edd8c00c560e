"""``python -m bench.report``: how long the review (复盘) of one long show takes to build, against
plain ``orjson.loads`` of every line of the same recording measured in the same run.

The recording is a file (``--file``) or the simulator's show (``--minutes``, ``--rate`` events
per second, one room, written to ``--dir`` once and reused). The review is timed as ``livecue
report FILE`` builds it, stage by stage: reading the room's events, the figures (core and fold),
then the page and its charts. Printed: events, seconds (wall and CPU) per stage, events/s, and
the ratio of the whole to the baseline; ``--json`` writes the same as JSON.

A 4-hour show at 50k events a minute: ``python -m bench.report --minutes 240 --rate 833``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

__all__ = ["main"]


def _say(msg: str) -> None:
    print(f"bench.report: {msg}", file=sys.stderr, flush=True)


def _recording(args: argparse.Namespace) -> Path:
    if args.file is not None:
        return Path(args.file)
    path = Path(args.dir) / f"show-{args.minutes:g}m-{args.rate:g}r-s{args.seed}.jsonl"
    if not path.is_file():
        _say(f"simulating {args.minutes:g} min at {args.rate:g} events/s into {path} ...")
        tmp = path.with_suffix(".tmp")
        subprocess.run([sys.executable, "-m", "livecue.cli", "simulate", "--rooms", "1", "--seed",
                        str(args.seed), "--scenario", "mixed", "--duration", str(args.minutes * 60),
                        "--rate", str(args.rate), "--out", str(tmp), "--quiet"], check=True)
        tmp.replace(path)
    return path


def _baseline(path: Path) -> tuple[int, float, float]:
    loads = orjson.loads
    n = 0
    w, c = time.perf_counter(), time.process_time()
    with open(path, "rb") as f:
        for line in f:
            loads(line)
            n += 1
    return n, time.perf_counter() - w, time.process_time() - c


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--file", default=None, help="a recording (default: simulate one)")
    p.add_argument("--minutes", type=float, default=30.0, help="simulated show length (default 30)")
    p.add_argument("--rate", type=float, default=833.0, help="simulated events per second (default 833 = 50k/min)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dir", default="/tmp", help="where a simulated recording is kept (default /tmp)")
    p.add_argument("--out", default=None, help="directory for the review (default: a temporary one)")
    p.add_argument("--no-write", action="store_true", help="skip the page and charts")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args(argv)

    import tempfile

    from livecue.report import build_report, write_report
    from livecue.report.source import read_file
    from stream.playbook import default_playbook

    path = _recording(args)
    size = path.stat().st_size
    _say(f"baseline: orjson.loads of every line of {path} ({size / 1e6:,.0f} MB) ...")
    lines, base_w, base_c = _baseline(path)

    stages: dict[str, tuple[float, float]] = {}
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 2 or done >= total:
            last[0] = now
            _say(f"  {stage} {100 * done / max(1, total):5.1f}%")

    def timed(name: str, fn: Any) -> Any:
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        stages[name] = (time.perf_counter() - w, time.process_time() - c)
        _say(f"{name}: {stages[name][0]:.2f} s")
        return out

    _say("review ...")
    inputs = timed("read", lambda: read_file(path, None, progress))
    rep = timed("figures", lambda: build_report(inputs.ordered(), default_playbook(), acks=inputs.acks,
                                                 deadletters=inputs.deadletters, core_rejections=True,
                                                 progress=progress))
    if not args.no_write:
        out = args.out or tempfile.mkdtemp(prefix="bench-report-")
        timed("write", lambda: write_report(rep, out, "zh"))
    events = len(inputs.events)
    wall = sum(w for w, _ in stages.values())
    cpu = sum(c for _, c in stages.values())
    res = {
        "file": str(path), "bytes": size, "lines": lines, "events": events,
        "cues": len(rep.cues), "minutes": len(rep.minutes),
        "baseline_orjson_s": round(base_w, 3), "baseline_orjson_cpu_s": round(base_c, 3),
        "stages": {k: {"s": round(w, 3), "cpu_s": round(c, 3)} for k, (w, c) in stages.items()},
        "total_s": round(wall, 3), "total_cpu_s": round(cpu, 3),
        "events_per_s": round(events / wall), "ratio_to_baseline": round(wall / base_w, 2),
        "ratio_to_baseline_cpu": round(cpu / base_c, 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    print(f"events           {events:,} ({lines:,} lines, {size / 1e6:,.0f} MB)")
    print(f"baseline         {base_w:7.2f} s wall {base_c:7.2f} s CPU  orjson.loads of every line "
          f"({lines / base_w:,.0f} lines/s)")
    for k, (w, c) in stages.items():
        print(f"{k:<16} {w:7.2f} s wall {c:7.2f} s CPU")
    print(f"review           {wall:7.2f} s wall {cpu:7.2f} s CPU  {events / wall:,.0f} events/s  "
          f"x{wall / base_w:.1f} the baseline (CPU x{cpu / base_c:.1f})")
    print(f"cues {len(rep.cues)}, minutes {len(rep.minutes)}, max RSS {res['max_rss_mb']:,} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
