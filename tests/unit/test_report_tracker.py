"""The reporter's tracker (livecue.report.live.LiveTracker), fed records as a consumer would:
which sessions it follows, what it hands over, and every case where it must refuse (the reporter
then builds from scratch): records from before it started, records dated after the start that it
did not keep, a topic out of time order, another session_start, a changed playbook."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from livecue.recording import record_of
from livecue.report import build_report
from livecue.report import live as live_mod
from livecue.report.live import LiveTracker, NotFollowable, Taken
from livecue.sim.show import generate
from schemas.events import INPUT_TOPICS, TOPIC_OF_TYPE, Event, SessionEnd, SessionStart
from stream.playbook import default_playbook

ROOM = "room-1"
PB = default_playbook()


@pytest.fixture(scope="module")
def show() -> list[Event]:
    return sorted(generate(5, 1, "mixed", duration=240.0, rate=40.0), key=lambda e: e.ts)


def _tracker(empty: bool = True) -> LiveTracker:
    t = LiveTracker(lambda room: PB)
    for topic in INPUT_TOPICS:
        t.started(topic, 0, empty=empty)
    return t


def _feed(t: LiveTracker, events: list[Event]) -> None:
    for e in events:
        r = record_of(e)
        t.record(r.topic, 0, r.key_bytes, r.value)
    t.advance()


def _skewed(show: list[Event], ahead: int) -> list[Event]:
    """The other topics read ``ahead`` events ahead of live.room (the session_start comes late)."""
    room = [e for e in show if TOPIC_OF_TYPE[e.type] == "live.room"]
    rest = [e for e in show if TOPIC_OF_TYPE[e.type] != "live.room"]
    return rest[:ahead] + room[:1] + rest[ahead:] + room[1:]


def test_follows_and_hands_over_the_review_of_scratch(show: list[Event]) -> None:
    t = _tracker()
    events = _skewed(show, 3000)  # 3000 events of the show came before its session_start
    _feed(t, events)
    assert t.followed == [ROOM]
    t.record("live.acks", 0, ROOM.encode(), orjson.dumps({"cue_id": "c", "room_id": ROOM, "action": "ack",
                                                          "by": "x", "ts": show[-1].ts}))
    t.record("live.chat", 0, ROOM.encode(), b"{bad")
    taken = t.take(ROOM, PB)
    assert isinstance(taken, Taken) and t.followed == []
    rep = taken.follower.finish(acks=taken.acks, deadletters=taken.deadletters)
    scratch = build_report([(TOPIC_OF_TYPE[e.type], e.ts, e) for e in events], PB, acks=taken.acks,
                           deadletters=["value: not valid JSON"])
    assert rep == scratch and rep.events == len(show)
    assert t.take(ROOM, PB) == "session_start not seen since the reporter started"


def test_partitions_not_empty_at_start_need_an_earlier_record(show: list[Event]) -> None:
    t = _tracker(empty=False)  # the topics held records when the reporter started
    _feed(t, show)  # the show's first records are the first the reporter consumed
    assert "before the reporter started" in str(t.take(ROOM, PB))
    # a record of the room on every topic before the start proves what came before is older
    t = _tracker(empty=False)
    start = next(e for e in show if isinstance(e, SessionStart))
    early = []
    for topic in INPUT_TOPICS:
        e = next(e for e in show if TOPIC_OF_TYPE[e.type] == topic and not isinstance(e, SessionStart))
        early.append(dataclasses.replace(e, ts=start.ts - 5000))
    _feed(t, early + show)
    assert isinstance(t.take(ROOM, PB), Taken)


@pytest.mark.parametrize("topic", ["live.orders", "live.room"])
def test_one_topic_not_empty_at_start(show: list[Event], topic: str) -> None:
    t = LiveTracker(lambda room: PB)
    for tp in INPUT_TOPICS:
        t.started(tp, 0, empty=tp != topic)
    _feed(t, show)
    assert t.take(ROOM, PB) == f"{topic}: records from before the reporter started"


def test_a_topic_the_room_never_used_not_empty_at_start(show: list[Event]) -> None:
    t = LiveTracker(lambda room: PB)
    for tp in INPUT_TOPICS:
        t.started(tp, 0, empty=tp != "live.orders")
    t.started("live.orders", 1, empty=True)
    _feed(t, [e for e in show if e.type != "order"])  # no order of the room: its partition unknown
    assert t.take(ROOM, PB) == "live.orders: records from before the reporter started"
    t = _tracker()
    t.started("live.orders", 1, empty=True)
    _feed(t, [e for e in show if e.type != "order"])
    assert isinstance(t.take(ROOM, PB), Taken)


def test_records_dated_after_the_start_not_kept(show: list[Event], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_mod, "PRE_KEEP", 1000)
    t = _tracker()
    _feed(t, _skewed(show, 3000))
    assert t.take(ROOM, PB) == "records dated after the session_start were not kept (too many)"
    t = _tracker()
    _feed(t, _skewed(show, 800))  # within what is kept
    assert isinstance(t.take(ROOM, PB), Taken)


def test_topic_out_of_order_and_other_session_and_playbook(show: list[Event]) -> None:
    chats = [i for i, e in enumerate(show) if e.type == "chat"]
    swapped = list(show)
    i, j = chats[100], chats[400]
    swapped[i], swapped[j] = swapped[j], swapped[i]
    t = _tracker()
    _feed(t, swapped)
    assert "live.chat: an event dated before the previous one" == t.take(ROOM, PB)

    start = next(e for e in show if isinstance(e, SessionStart))
    end = next(e for e in show if isinstance(e, SessionEnd))
    again = dataclasses.replace(start, ts=end.ts - 10_000, event_id="again")
    t = _tracker()
    _feed(t, sorted(show + [again], key=lambda e: e.ts))
    res = t.take(ROOM, PB)
    if isinstance(res, Taken):  # still pending when taken: found out at the end
        with pytest.raises(NotFollowable, match="another session_start came"):
            res.follower.finish()
    else:
        assert res == "another session_start came"

    t = _tracker()
    _feed(t, show)
    other = dataclasses.replace(PB, stats_interval_ms=PB.stats_interval_ms * 2)
    assert t.take(ROOM, other) == "the room's playbook changed during the show"


def test_live_room_out_of_order_before_the_start(show: list[Event]) -> None:
    start = next(e for e in show if isinstance(e, SessionStart))
    later = next(e for e in show if e.type == "sku_on_air" and e.ts > start.ts)
    t = _tracker()
    _feed(t, [later] + [e for e in show if e is not later])
    assert "live.room: a record dated after the session_start" in str(t.take(ROOM, PB))
    assert start.ts < later.ts


def test_kept_events_are_bounded_by_age(show: list[Event], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_mod, "PRE_KEEP_MS", 5_000)
    t = _tracker()
    _feed(t, _skewed(show, 3000))  # ~75 s of the show before its session_start: some dropped
    assert t.take(ROOM, PB) == "records dated after the session_start were not kept (too many)"
    t = _tracker()
    no_room = [e for e in show if TOPIC_OF_TYPE[e.type] != "live.room"]
    _feed(t, no_room)  # a room that sends no live.room record: only the last 5 s are kept
    span = no_room[-1].ts - no_room[0].ts
    kept = t._pre[ROOM].n
    assert span > 200_000 and 0 < kept < len(no_room) * 10_000 / span


def test_outputs_consumed_before_the_start_count(show: list[Event]) -> None:
    from livecue.sim.backtest import run_backtest

    cues = run_backtest(show, PB).cues
    t = _tracker()
    t.record("live.chat", 0, None, b"{no key")  # keyless: every room's review counts it
    t.record("live.deadletter", 0, ROOM.encode(), orjson.dumps({"key": ROOM, "reason": "r-before"}))
    t.record("live.deadletter", 0, b"other", orjson.dumps({"key": ROOM, "reason": "r-nobody"}))
    t.record("live.cues", 0, ROOM.encode(), orjson.dumps(cues[0]))  # read before live.room's start
    _feed(t, show[:1])
    t.record("live.acks", 0, ROOM.encode(), orjson.dumps({"cue_id": cues[0].cue_id, "room_id": ROOM,
                                                          "action": "ack", "by": "x", "ts": cues[0].ts + 1}))
    for c in cues[1:]:
        t.record("live.cues", 0, None, orjson.dumps(c))
    _feed(t, show[1:])
    taken = t.take(ROOM, PB)
    assert isinstance(taken, Taken)
    assert taken.cues is not None and [c.cue_id for c in taken.cues] == [c.cue_id for c in cues]
    assert sorted(taken.deadletters) == ["r-before", "value: not valid JSON"]
    rep = taken.follower.finish(cues=taken.cues, acks=taken.acks, deadletters=taken.deadletters)
    assert rep.cues[0].ack_s is not None
    # no cue on live.cues: the review shows the core's (as from scratch)
    t = _tracker()
    _feed(t, show)
    taken = t.take(ROOM, PB)
    assert isinstance(taken, Taken) and taken.cues is None
