"""The live path's follower (livecue.report.live.SessionFollower): fed a show's events as the
topics deliver them (each topic in time order, the topics interleaved at random), advanced now
and then, its review equals build_report's from scratch over the same records; and it says when
it cannot (a topic out of time order, another session_start)."""

from __future__ import annotations

import random

import pytest

from livecue.report import build_report
from livecue.report.live import FAR_PAST, NotFollowable, SessionFollower
from livecue.sim.backtest import run_backtest
from livecue.sim.show import generate
from schemas.events import INPUT_TOPICS, TOPIC_OF_TYPE, Chat, Event, SessionStart
from stream.core.align import canonical_order
from stream.playbook import default_playbook

RANK = {t: i for i, t in enumerate(INPUT_TOPICS)}


def _arrivals(events: list[Event], seed: int) -> list[tuple[str, Event]]:
    """The events as six topics deliver them: each topic in its own (time) order, the topics
    interleaved at random (one may run seconds ahead of another)."""
    per: dict[str, list[Event]] = {}
    for e in sorted(events, key=lambda e: e.ts):
        per.setdefault(TOPIC_OF_TYPE[e.type], []).append(e)
    rng = random.Random(seed)
    pos = dict.fromkeys(per, 0)
    out = [("live.room", per["live.room"][0])]  # the session_start comes first
    pos["live.room"] = 1
    while pos:
        t = rng.choice(sorted(pos))
        for _ in range(rng.randint(1, 200)):
            out.append((t, per[t][pos[t]]))
            pos[t] += 1
            if pos[t] == len(per[t]):
                del pos[t]
                break
    return out


@pytest.fixture(scope="module")
def show() -> list[Event]:
    return generate(21, 1, "mixed", duration=900.0, rate=80.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("with_cues", [False, True])
def test_incremental_equals_from_scratch(show: list[Event], seed: int, with_cues: bool) -> None:
    pb = default_playbook()
    arrivals = _arrivals(show, seed)
    cues = run_backtest(show, pb).cues if with_cues else None
    scratch = build_report([(t, e.ts, e) for t, e in arrivals], pb, cues=cues)
    assert scratch.events > 50_000 and scratch.cues and scratch.minutes

    start = next(e for _, e in arrivals if isinstance(e, SessionStart))
    i0 = next(i for i, (_, e) in enumerate(arrivals) if e is start)
    assert i0 == 0 or all(e.ts < start.ts for _, e in arrivals[:i0])
    f = SessionFollower(start, pb)
    most = 0
    for i, (t, e) in enumerate(arrivals[i0 + 1:]):
        f.add(RANK[t], e)
        if i % 500 == 0:
            f.advance()
            most = max(most, f.pending)
    assert f.broken is None and not f.superseded
    assert f.folded > 0.9 * scratch.events  # most of the show was folded before the end
    assert most < 20_000  # only what the frontier held back waits
    live = f.finish(cues=cues)
    assert live == scratch


def test_a_topic_out_of_time_order_breaks_it(show: list[Event]) -> None:
    pb = default_playbook()
    start = next(e for e in show if isinstance(e, SessionStart))
    f = SessionFollower(start, pb)
    chats = [e for e in show if isinstance(e, Chat)]
    f.add(RANK["live.chat"], chats[10])
    f.add(RANK["live.chat"], chats[5])
    assert f.broken is not None and "live.chat" in f.broken
    with pytest.raises(NotFollowable, match="live.chat"):
        f.finish()
    # and from scratch the order is then a merge, not a sort: the follower could not have it
    items = [("live.room", start.ts, start), ("live.chat", chats[10].ts, chats[10]),
             ("live.chat", chats[5].ts, chats[5])]
    assert canonical_order(items)[1:] == [chats[10], chats[5]]


def test_another_session_start_supersedes_it(show: list[Event]) -> None:
    pb = default_playbook()
    start = next(e for e in show if isinstance(e, SessionStart))
    f = SessionFollower(start, pb)
    later = [e for e in sorted(show, key=lambda e: e.ts) if e.ts > start.ts]
    for e in later[:3000]:
        f.add(RANK[TOPIC_OF_TYPE[e.type]], e)
    again = SessionStart("again", start.room_id, later[3000].ts, start.session_id, start.lineup)
    f.add(0, again)
    for e in later[3000:6000]:
        f.add(RANK[TOPIC_OF_TYPE[e.type]], e)
    f.advance()
    with pytest.raises(NotFollowable, match="another session"):
        f.finish()


def test_events_dated_before_the_start_are_not_the_sessions(show: list[Event]) -> None:
    pb = default_playbook()
    start = next(e for e in show if isinstance(e, SessionStart))
    early = Chat("early", start.room_id, start.ts - 1000, "u", "hi")
    prior = [FAR_PAST] * len(INPUT_TOPICS)
    f = SessionFollower(start, pb, prior)
    f.add(RANK["live.chat"], early)
    rest = [e for e in sorted(show, key=lambda e: e.ts) if e is not start]
    for e in rest:
        f.add(RANK[TOPIC_OF_TYPE[e.type]], e)
    scratch = build_report([("live.room", start.ts, start), ("live.chat", early.ts, early)]
                           + [(TOPIC_OF_TYPE[e.type], e.ts, e) for e in rest], pb)
    assert f.finish() == scratch


def test_the_next_show_ends_it_as_a_review_from_scratch_of_that_session_does() -> None:
    # Two shows of one room back to back (the next starts 5 s after the first ends, before the
    # reporter's delay is over): the follower of the first stops at the second's session_start
    # and gives the first show's review from scratch, not a superseded one nor the second's.
    pb = default_playbook()
    t0 = 1_800_000_000_000
    first = generate(31, ["room-b2b"], "mixed", t0, 300.0, rate=40.0)
    second = generate(32, ["room-b2b"], "mixed", t0 + 305_000, 300.0, rate=40.0)
    start1 = next(e for e in first if isinstance(e, SessionStart))
    start2 = next(e for e in second if isinstance(e, SessionStart))
    assert start1.session_id != start2.session_id and start2.ts > max(e.ts for e in first)
    arrivals = _arrivals(first + second, 4)
    f = SessionFollower(start1, pb)
    for i, (t, e) in enumerate(arrivals[1:]):
        f.add(RANK[t], e)
        if i % 700 == 0:
            f.advance()
    scratch = build_report([(t, e.ts, e) for t, e in arrivals], pb, session_id=start1.session_id)
    assert scratch.session_id == start1.session_id and scratch.summary.duration_s == 300
    live = f.finish()
    assert f.over and not f.superseded
    assert live == scratch
