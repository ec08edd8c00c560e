"""``python -m bench.report``: how long the review (复盘) of one long show takes to build, against
plain ``orjson.loads`` of every line of the same recording measured in the same run.

The recording is a file (``--file``) or the simulator's show (``--minutes``, ``--rate`` events
per second, one room, written to ``--dir`` once and reused). Two ways of building it are timed:

* offline, as ``livecue report FILE`` builds it, stage by stage: reading the room's events, the
  figures (canonical order, core and fold), then the page and its charts; with events/s and the
  ratio of the whole to the baseline;
* live, as the reporter does (:mod:`consumers.reporter`, without the broker): every record goes
  to a :class:`~livecue.report.live.LiveTracker` in file order, advanced every 2000 records; the
  CPU spent while the show runs (spread over its hours) is reported apart from the time from the
  ``session_end`` to the written review, and the live review is checked equal to the offline one
  (dead letters aside: a recording's come from the reader and the core's refusals). Exit status
  1 if it is not.

Seconds are wall and CPU (``time.process_time``: the figure to compare on a shared machine).
``--json`` writes the same as JSON. Nothing is cached across runs but the simulated recording.

A 4-hour show at 50k events a minute: ``python -m bench.report --minutes 240 --rate 833``.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
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


def _live(path: Path, room: str, write_to: str | None) -> dict[str, Any]:
    """The reporter's live path over the same show, without a broker: every record of the
    recording goes to a LiveTracker in file order (each topic in its order, as a consumer gets
    them), advanced every 2000 records (a fetch); after the last record (the session_end and what
    came after it), the review is taken, finished and written. Timed apart: the CPU spent while
    the show ran (spread over its hours in the reporter) and the CPU from session_end to the
    written review (what the operations lead waits for)."""
    from livecue.report import write_report
    from livecue.report.live import LiveTracker, Taken
    from schemas.events import INPUT_TOPICS
    from stream.playbook import default_playbook

    pb = default_playbook()
    tracker = LiveTracker(lambda r: pb)
    for t in INPUT_TOPICS:
        tracker.started(t, 0, empty=True)
    fast = re.compile(rb'\{"topic":"([a-z_.]+)","key":(?:"([^"\\]*)"|null),"value":')
    names: dict[bytes, str] = {}
    record = tracker.record
    n = 0
    w, c = time.perf_counter(), time.process_time()
    with open(path, "rb") as f:
        for line in f:
            m = fast.match(line)
            if m is None or not line.endswith(b"}\n"):
                continue  # the file reader's business (bad lines): no record of a topic
            tb, kb = m.group(1, 2)
            topic = names.get(tb) or names.setdefault(tb, tb.decode())
            record(topic, 0, kb, line[m.end():-2])
            n += 1
            if not n % 2000:
                tracker.advance()
                if not n % 2_000_000:
                    _say(f"  live: {n:,} records")
    tracker.advance()
    show_w, show_c = time.perf_counter() - w, time.process_time() - c
    w, c = time.perf_counter(), time.process_time()
    taken = tracker.take(room, pb)
    if not isinstance(taken, Taken):
        raise SystemExit(f"bench.report: the live path could not follow the show: {taken}")
    rep = taken.follower.finish(cues=taken.cues, acks=taken.acks, deadletters=taken.deadletters)
    finish_w, finish_c = time.perf_counter() - w, time.process_time() - c
    write_w = write_c = 0.0
    if write_to is not None:
        w, c = time.perf_counter(), time.process_time()
        write_report(rep, write_to, "zh")
        write_w, write_c = time.perf_counter() - w, time.process_time() - c
    return {"records": n, "report": rep, "during_show": (show_w, show_c), "finish": (finish_w, finish_c),
            "write": (write_w, write_c)}


def _same(a: Any, b: Any) -> bool:
    """Same review, dead letters aside (a recording's come from the file reader and the core's
    refusals, which the live path, like the reporter, leaves to live.deadletter)."""
    return bool(a.summary == b.summary and a.minutes == b.minutes and a.tiers == b.tiers
                and a.skus == b.skus and a.cues == b.cues and a.events == b.events)


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
    p.add_argument("--no-live", action="store_true", help="skip the live path")
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

    _say("offline review (livecue report FILE) ...")
    inputs = timed("read", lambda: read_file(path, None, progress))
    rep = timed("figures", lambda: build_report(inputs.ordered(), default_playbook(), acks=inputs.acks,
                                                 deadletters=inputs.deadletters, core_rejections=True,
                                                 progress=progress))
    out = None
    if not args.no_write:
        out = args.out or tempfile.mkdtemp(prefix="bench-report-")
        timed("write", lambda: write_report(rep, out, "zh"))
    events = len(inputs.events)
    room = inputs.room_id
    del inputs
    gc.collect()
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
    print(f"offline review   {wall:7.2f} s wall {cpu:7.2f} s CPU  {events / wall:,.0f} events/s  "
          f"x{wall / base_w:.1f} the baseline (CPU x{cpu / base_c:.1f})")
    print(f"cues {len(rep.cues)}, minutes {len(rep.minutes)}, max RSS {res['max_rss_mb']:,} MB")
    if not args.no_live:
        _say("live path (the reporter following the show) ...")
        lv = _live(path, room, None if out is None else str(Path(out) / "live"))
        end_w = lv["finish"][0] + lv["write"][0]
        end_c = lv["finish"][1] + lv["write"][1]
        same = _same(lv["report"], rep)
        res["live"] = {
            "records": lv["records"],
            "during_show_s": round(lv["during_show"][0], 3), "during_show_cpu_s": round(lv["during_show"][1], 3),
            "during_show_cpu_us_per_record": round(lv["during_show"][1] / max(1, lv["records"]) * 1e6, 2),
            "finish_s": round(lv["finish"][0], 3), "finish_cpu_s": round(lv["finish"][1], 3),
            "write_s": round(lv["write"][0], 3), "write_cpu_s": round(lv["write"][1], 3),
            "session_end_to_review_s": round(end_w, 3), "session_end_to_review_cpu_s": round(end_c, 3),
            "same_review": same,
        }
        print(f"live: during the show {lv['during_show'][1]:7.2f} s CPU over {lv['records']:,} records "
              f"({lv['during_show'][1] / max(1, lv['records']) * 1e6:.1f} us each, spread over the show)")
        print(f"live: session_end -> review written {end_c:7.2f} s CPU ({end_w:.2f} s wall): finish "
              f"{lv['finish'][1]:.2f} s, write {lv['write'][1]:.2f} s; same review as offline: "
              f"{'yes' if same else 'NO'}")
        res["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        if not same:
            print("bench.report: the live review differs from the offline one", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if args.no_live or res["live"]["same_review"] else 1


if __name__ == "__main__":
    sys.exit(main())
