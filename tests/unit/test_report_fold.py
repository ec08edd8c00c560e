"""The review's fold (livecue.report.model._Fold): interactions dated outside the per-second list
(before the session's start, or more than a week after it) still count where they did before,
and folding a session in pieces gives the figures of folding it at once."""

from __future__ import annotations

from collections import Counter

from livecue.report.model import _Fold
from livecue.sim.show import generate
from schemas.events import Chat, Like, LineupItem, SessionEnd, SessionStart

T0 = 1_800_000_000_000
DAY = 86_400_000


def test_interactions_outside_the_list() -> None:
    start = SessionStart("s", "r", T0, "sess", (LineupItem("k", "K", "hero", 100, 5),))
    evs = [start,
           Chat("c1", "r", T0 + 5_000, "u", "hi"),
           Like("l1", "r", T0 - 3_000, 4),  # dated before the start (a topic out of order)
           Chat("c2", "r", T0 + 8 * DAY + 30_000, "u", "late"),  # past the list's week
           Like("l2", "r", T0 + 8 * DAY + 59_000, 2),
           SessionEnd("e", "r", T0 + 8 * DAY + 120_000)]
    f = _Fold(start)
    f.run(evs, None)
    rep = f.finish("r", [], [], [], Counter())
    assert rep.summary.interactions == 1 + 4 + 1 + 2 and rep.summary.likes == 6
    assert rep.minutes[0].interactions == 1  # the like before the start is in no minute
    m = 8 * 24 * 60
    assert rep.minutes[m].interactions == 3 and sum(x.interactions for x in rep.minutes) == 4
    assert f._inter_rate(T0 + 2_000) == 4.0  # the minute before +2 s holds the early like
    assert f._inter_rate(T0 + 8 * DAY + 60_000) == 3.0


def test_feeding_in_pieces_equals_at_once() -> None:
    evs = generate(11, 1, "mixed", duration=300.0, rate=50.0)
    evs.sort(key=lambda e: e.ts)
    start = next(e for e in evs if isinstance(e, SessionStart))
    lo = evs.index(start)
    whole = _Fold(start)
    whole.run(evs[lo:], None)
    parts = _Fold(start)
    for i in range(lo, len(evs), 977):
        parts.feed(evs[i:i + 977])
    parts.close()
    a = whole.finish(start.room_id, [], [], [], Counter())
    b = parts.finish(start.room_id, [], [], [], Counter())
    assert a == b and a.summary.interactions > 1000
