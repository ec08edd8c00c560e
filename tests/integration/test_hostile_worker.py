"""Hostile input interleaved with a real show on the same partitions: every bad record becomes
exactly one dead letter, the show's cues are exactly the backtest of the clean show (ids and event
times), and the worker neither crashes nor restarts its agent.

Bad records: every malformed kind of ``test_worker.BAD``, records at the producer's size limit
(~1 MB, legal for the broker), events dated far past the worker's wall clock (a session_start in
2096 included: it must not brick the room), an event dated two hours past its room's clock but
in the wall clock's past (the merge lets it go first; the core refuses it), and an order for a
SKU the session does not have.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from livecue.broker import EmbeddedBroker
from livecue.config import Settings
from livecue.recording import Record
from livecue.sim.backtest import run_backtest
from livecue.sim.show import generate
from stream.playbook import default_playbook

from harness import collect, fresh_broker, metric_value, produce, records_of, start_worker
from test_worker import BAD

pytestmark = pytest.mark.slow

FUTURE = 4_000_000_000_000  # 2096


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with fresh_broker(tmp_path) as b:
        yield b


def _bad_records(room: str, t0: int, uid: str) -> list[tuple[str, bytes, bytes, str]]:
    """(topic, key, value, expected reason prefix) for one room; ``t0`` is the event time of the
    show where they are produced (a bad record that is not about time carries the time of its
    neighbours, as a real producer's would)."""
    rk = room.encode()
    out = [("live.likes", rk, v.replace(b"ROOM", rk), reason) for v, reason in BAD]
    big_text = "没抢到" * 100_000  # ~900 KB of UTF-8: a record at the producer's size limit
    big = orjson.dumps({"type": "chat", "event_id": f"big{uid}", "room_id": room, "ts": t0 + 5000,
                        "user_id": "u", "text": big_text})
    out.append(("live.chat", rk, big, "value: larger than"))  # decoded size check, not the broker
    out.append(("live.chat", rk, b"{" + b" " * 990_000 + b"}", "value: larger than"))
    out.append(("live.room", rk, orjson.dumps({
        "type": "session_start", "event_id": f"fut{uid}", "room_id": room, "ts": FUTURE,
        "session_id": "wrong-clock", "lineup": []}), "ts: more than"))
    out.append(("live.chat", rk, orjson.dumps({
        "type": "chat", "event_id": f"fut2{uid}", "room_id": room, "ts": FUTURE, "user_id": "u",
        "text": "hi"}), "ts: more than"))
    out.append(("live.likes", rk, orjson.dumps({
        "type": "like", "event_id": f"ahead{uid}", "room_id": room, "ts": t0 + 2 * 3600_000,
        "count": 1}), "ts: too far ahead"))
    out.append(("live.orders", rk, orjson.dumps({
        "type": "order", "event_id": f"x{uid}", "room_id": room, "ts": t0, "order_id": "o-x",
        "user_id": "u", "sku_id": "NO-SUCH-SKU", "qty": 1, "amount_cents": 100, "status": "created"}),
        "sku_id"))
    return out


async def test_bad_records_amid_a_show_are_dead_lettered_one_for_one_and_change_no_cue(
    broker: EmbeddedBroker, test_settings: Settings, tmp_path: Path, uid: str
) -> None:
    rooms = [f"h{uid}-{i}" for i in range(3)]
    events = sorted(generate(9, rooms, "mixed", duration=240.0, rate=15.0), key=lambda e: e.ts)
    clean = records_of(events)
    bt = run_backtest(clean, default_playbook())
    expected = {(c.cue_id, c.ts, c.kind, c.severity) for c in bt.cues}
    assert len(expected) >= 3 and not bt.rejected
    # interleave: every 40th clean record is followed by a bad one, dated like its neighbours
    per_room = len(_bad_records(rooms[0], 0, uid))
    slots = [(i, ev.ts) for i, ev in enumerate(events) if i % 40 == 39][: per_room * len(rooms)]
    assert len(slots) == per_room * len(rooms), "precondition: the show is long enough"
    bad: list[tuple[str, bytes, bytes, str]] = []
    after: dict[int, tuple[str, bytes, bytes, str]] = {}
    for n, (i, ts) in enumerate(slots):
        b = _bad_records(rooms[n % len(rooms)], ts, uid)[n // len(rooms)]
        bad.append(b)
        after[i] = b
    mixed: list[Record | tuple[str, bytes, bytes]] = []
    for i, rec in enumerate(clean):
        mixed.append(rec)
        if i in after:
            mixed.append(after[i][:3])
    # produced at full speed while the worker runs: records of one moment reach the broker up to
    # seconds apart (1 MB records included), so the worker waits longer for quiet topics, as an
    # exact replay at --speed max should (README: cross-topic order)
    settings = test_settings.replace(align_grace_ms=3000)
    w = start_worker(settings, tmp_path / "worker.log", "hostile")
    try:
        produce(broker.bootstrap, mixed)
        rs = set(rooms)
        got_dl = await collect(broker.bootstrap, "live.deadletter", lambda v: v.get("key") in rs,
                               lambda got: len(got) >= len(bad), timeout=120, settle_s=2.0)
        ids = {e[0] for e in expected}
        cues = await collect(broker.bootstrap, "live.cues", lambda v: v.get("room_id") in rs,
                             lambda got: ids <= {c["cue_id"] for c in got}, timeout=120)
        text = w.metrics()
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert w.proc.poll() is None, "the worker died"
        # one dead letter per bad record, identified by the hash of the whole value
        assert len(got_dl) == len(bad), f"{len(got_dl)} dead letters for {len(bad)} bad records"
        by_hash = {(g["key"], g["raw_sha256"]): g for g in got_dl}
        assert len(by_hash) == len(bad)
        for topic, key, value, reason in bad:
            dl = by_hash[(key.decode(), hashlib.sha256(value).hexdigest())]
            assert dl["topic"] == topic and dl["reason"].startswith(reason), (dl["reason"], reason)
            assert dl["raw_len"] == len(value)
            assert base64.b64decode(dl["raw_b64"]) == value[:16 * 1024]
            assert len(orjson.dumps(dl)) < 32 * 1024
        got = {(c["cue_id"], c["ts"], c["kind"], c["severity"]) for c in cues}
        assert got == expected, f"missing {sorted(expected - got)[:5]} extra {sorted(got - expected)[:5]}"
        assert metric_value(text, "livecue_aligner_forced_total") == 0
        for marker in ("Traceback", "crashed", "Agent error", "pump failed"):
            assert marker not in log, f"{marker!r} in the worker log:\n{w.log_tail()}"
        print(f"hostile: {len(clean)} show events, {len(bad)} bad records -> {len(got_dl)} dead "
              f"letters, {len(expected)} cues as the backtest")
    finally:
        w.stop()
