"""A room bricked by one far-future session_start comes back with an operator's room_reset."""

from __future__ import annotations

from livecue.sim.show import generate
from schemas.events import LineupItem, RoomReset, SessionStart
from stream.core import new_state, step_many
from stream.core.align import canonical_order
from stream.playbook import default_playbook
from livecue.recording import record_of

ROOM = "reset-room"


def _show() -> list:
    evs = sorted(generate(5, [ROOM], "mixed", duration=240, rate=20.0), key=lambda e: e.ts)
    return canonical_order([(record_of(e).topic, e.ts, e) for e in evs])


def test_a_future_session_bricks_the_room_and_a_reset_brings_it_back() -> None:
    pb = default_playbook()
    show = _show()
    clean = step_many(new_state(ROOM), show, pb)
    assert clean.cues, "precondition: the show fires cues"
    future = SessionStart("bad-1", ROOM, 4_000_000_000_000, "wrong-clock",
                          (LineupItem("x", "X", "hero", 100, 1),))
    bricked = step_many(new_state(ROOM), [future, *show], pb)
    # the wrong clock holds: every event of the real show is refused, no cue fires
    assert not bricked.cues
    assert len(bricked.rejected) == len(show)
    assert all(reason.startswith("ts: too far behind") for _ev, reason in bricked.rejected)
    reset = RoomReset("reset-1", ROOM, show[0].ts, "ops")
    healed = step_many(new_state(ROOM), [future, reset, *show], pb)
    assert not healed.rejected
    assert [(c.cue_id, c.ts) for c in healed.cues] == [(c.cue_id, c.ts) for c in clean.cues]
    assert healed.state.session_id == clean.state.session_id
