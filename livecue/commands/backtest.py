"""``livecue backtest``: run a recording through the pure decision core (no Kafka) and print the
cues it fires, or with ``--compare`` the cues that differ between two playbooks."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from livecue.config import Settings
from livecue.recording import read_recording
from livecue.sim.backtest import BacktestResult, compare, run_backtest
from schemas.errors import ConfigError
from schemas.outputs import Cue

NAME = "backtest"
HELP = "replay a recording through the decision core offline and print its cues (--compare: two playbooks)"
SETTINGS = ("log_format", "log_level")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="JSONL recording (livecue record / simulate --out)")
    p.add_argument("--playbook", type=Path, default=None, metavar="P.toml", help="playbook A (default: the shipped default)")
    p.add_argument("--compare", type=Path, default=None, metavar="Q.toml",
                   help="playbook B: print the cues that differ between A and B")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout instead of text")
    p.add_argument("--show-rejected", type=int, default=10, metavar="N",
                   help="list at most N rejected inputs (default 10; all are counted)")


def _load(path: Path | None) -> Any:
    from stream.playbook import default_playbook, load_playbook

    return default_playbook() if path is None else load_playbook(path)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        pb_a = _load(args.playbook)
        pb_b = _load(args.compare) if args.compare is not None else None
    except (ConfigError, OSError, ValueError) as exc:
        print(f"livecue backtest: {exc}", file=sys.stderr)
        return 2
    try:
        lines = list(read_recording(args.file))
    except OSError as exc:
        print(f"livecue backtest: {exc}", file=sys.stderr)
        return 2
    a = run_backtest(lines, pb_a)
    b = run_backtest(lines, pb_b) if pb_b is not None else None
    name_a = str(args.playbook or "default")
    out = sys.stdout
    if args.json:
        out.write(orjson.dumps(_json(a, b, name_a, str(args.compare)), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if b is None:
        _print_cues(out, a, a.cues)
        _print_summary(out, a, name_a, args.show_rejected)
        return 0
    diff = compare(a, b)
    out.write(f"A = {name_a}   B = {args.compare}\n\n")
    out.write(f"only with A ({len(diff.only_a)}):\n")
    _print_cues(out, a, diff.only_a, indent="  ")
    out.write(f"\nonly with B ({len(diff.only_b)}):\n")
    _print_cues(out, b, diff.only_b, indent="  ")
    out.write(f"\nsame id in both: {len(diff.both)}")
    if diff.changed:
        out.write(f", of which {len(diff.changed)} changed (time, severity or text):\n")
        for ca, cb in diff.changed:
            out.write(f"  {ca.cue_id}: A {_offset(a, ca)} {ca.severity} {ca.headline!r}"
                      f"  |  B {_offset(b, cb)} {cb.severity} {cb.headline!r}\n")
    else:
        out.write("\n")
    out.write(f"\nA: {_kinds(a)}\nB: {_kinds(b)}\n")
    return 0


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts % 1000:03d}Z"


def _offset(r: BacktestResult, cue: Cue) -> str:
    d = (cue.ts - r.started.get(cue.room_id, cue.ts)) // 1000
    return f"+{d // 3600:d}:{d // 60 % 60:02d}:{d % 60:02d}" if d >= 0 else f"-{-d}s"


def _evidence(cue: Cue) -> str:
    return " ".join(f"{k}={v}" for k, v in cue.evidence.items())


def _print_cues(out: Any, r: BacktestResult, cues: list[Cue], indent: str = "") -> None:
    room = None
    for c in cues:
        if c.room_id != room and not indent:
            room = c.room_id
            out.write(f"\nroom {room}  (session {c.session_id}, started {_iso(r.started[room])})\n")
        sku = c.sku_id or "-"
        if c.target_sku_id:
            sku += f" -> {c.target_sku_id}"
        where = f"{c.room_id} " if indent else ""
        out.write(f"{indent}{_iso(c.ts)}  {_offset(r, c):>8}  {where}{c.kind:<24} {c.severity:<8} {sku}\n"
                  f"{indent}    {c.headline}\n"
                  f"{indent}    evidence: {_evidence(c)}   [{c.cue_id}]\n")


def _kinds(r: BacktestResult) -> str:
    k = r.kinds()
    return f"{len(r.cues)} cues" + (" (" + ", ".join(f"{n} {kind}" for kind, n in sorted(k.items())) + ")" if k else "")


def _print_summary(out: Any, r: BacktestResult, name: str, show: int) -> None:
    out.write(f"\n{r.events} events in {len(r.started)} rooms, playbook {name}: {_kinds(r)}, "
              f"{r.stats_count} stats snapshots, {len(r.rejected)} rejected\n")
    if r.rejected:
        for reason, n in r.reasons().most_common():
            out.write(f"  rejected {n:>6}  {reason}\n")
        for rej in r.rejected[:show]:
            where = f"line {rej.line_no}" if rej.line_no else f"room {rej.room_id} event {rej.event_id}"
            out.write(f"    {where}: {rej.reason}\n")


def _cue_json(r: BacktestResult, c: Cue) -> dict[str, Any]:
    d = orjson.loads(orjson.dumps(c))
    d["time"] = _iso(c.ts)
    d["offset_s"] = (c.ts - r.started.get(c.room_id, c.ts)) / 1000
    return d


def _json(a: BacktestResult, b: BacktestResult | None, name_a: str, name_b: str) -> dict[str, Any]:
    def summary(r: BacktestResult) -> dict[str, Any]:
        return {"events": r.events, "rooms": sorted(r.started), "cues": len(r.cues), "kinds": dict(r.kinds()),
                "stats_count": r.stats_count, "rejected": len(r.rejected),
                "rejected_reasons": dict(r.reasons())}

    if b is None:
        return {"playbook": name_a, **summary(a), "cues": [_cue_json(a, c) for c in a.cues],
                "cue_count": len(a.cues),
                "rejected_inputs": [{"line_no": x.line_no, "room_id": x.room_id, "topic": x.topic,
                                     "event_id": x.event_id, "reason": x.reason} for x in a.rejected]}
    diff = compare(a, b)
    return {
        "a": {"playbook": name_a, **summary(a)}, "b": {"playbook": name_b, **summary(b)},
        "only_a": [_cue_json(a, c) for c in diff.only_a],
        "only_b": [_cue_json(b, c) for c in diff.only_b],
        "same": [c.cue_id for c, _ in diff.both],
        "changed": [{"a": _cue_json(a, x), "b": _cue_json(b, y)} for x, y in diff.changed],
    }
