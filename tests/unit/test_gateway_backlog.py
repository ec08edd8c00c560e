"""Per-room backlog (resume without gaps), cue states, and the connection table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.backlog import Backlog, next_state
from consumers.subscriptions import ConnectionTable, TooMany

NOW = 1_800_000_000.0


def cue(room: str, n: int) -> dict[str, object]:
    return {"type": "cue", "cue_id": f"{room}-{n}", "room_id": room, "headline": str(n)}


def test_since_returns_exactly_what_came_after() -> None:
    b = Backlog()
    for seq, n in ((3, 1), (8, 2), (9, 3), (20, 4)):
        assert b.add(cue("r", n), seq, NOW, NOW) is not None
    b.add(cue("other", 1), 10, NOW, NOW)
    rep = b.since("r", 8, NOW)
    assert [e.seq for e in rep.entries] == [9, 20] and not rep.gap
    assert [e.cue["cue_id"] for e in rep.entries] == ["r-3", "r-4"]
    assert rep.entries[0].cue["seq"] == 9
    assert [e.seq for e in b.since("r", -1, NOW).entries] == [3, 8, 9, 20]
    assert b.since("nobody", -1, NOW).entries == ()


def test_duplicates_by_seq_or_cue_id_are_dropped() -> None:
    b = Backlog()
    assert b.add(cue("r", 1), 5, NOW, NOW)
    assert b.add(cue("r", 1), 5, NOW, NOW) is None
    assert b.add(cue("r", 1), 6, NOW, NOW) is None, "a reprocessed cue (same id, new offset)"
    assert len(b) == 1


def test_bounded_by_count_and_age_and_reports_gap() -> None:
    b = Backlog(max_cues=3, max_age_s=60)
    for i in range(5):
        b.add(cue("r", i), i, NOW, NOW)
    assert [e.seq for e in b.since("r", -1, NOW).entries] == [2, 3, 4]
    assert b.since("r", 0, NOW).gap and not b.since("r", 1, NOW).gap
    assert not b.knows("r", "r-0") and b.knows("r", "r-4")
    assert b.since("r", 1, NOW + 61).entries == (), "older than max_age_s"
    assert b.add(cue("r", 9), 9, NOW - 120, NOW) is None, "too old to keep"


def test_cue_states_only_move_forward() -> None:
    assert next_state(None, "ack") == "acked"
    assert next_state("acked", "done") == "done"
    assert next_state("done", "ack") is None and next_state("dismissed", "done") is None
    assert next_state("acked", "ack") is None
    b = Backlog()
    b.add(cue("r", 1), 1, NOW, NOW)
    s = b.apply("r", "r-1", "ack", "ops", 1)
    assert s is not None and s.message(1) == {"type": "cue_state", "cue_id": "r-1", "room_id": "r", "seq": 1,
                                              "state": "acked", "action": "ack", "by": "ops", "ts": 1}
    assert b.apply("r", "r-1", "ack", "other", 2) is None
    assert b.apply("r", "r-1", "dismiss", "ops", 3).state == "dismissed"  # type: ignore[union-attr]
    assert [st.state for st in b.since("r", -1, NOW).states] == ["dismissed"]
    # An ack read before its cue (separate topics) is kept and shows up once the cue arrives.
    assert b.apply("r", "r-2", "done", "ops", 4) is not None
    assert [st.cue_id for st in b.since("r", -1, NOW).states] == ["r-1"]
    b.add(cue("r", 2), 2, NOW, NOW)
    assert {st.cue_id for st in b.since("r", -1, NOW).states} == {"r-1", "r-2"}


@given(st.lists(st.integers(0, 500), min_size=1, max_size=80, unique=True), st.integers(-1, 500))
def test_resume_property(seqs: list[int], last: int) -> None:
    b = Backlog(max_cues=1000)
    for s in sorted(seqs):
        b.add(cue("r", s), s, NOW, NOW)
    got = [e.seq for e in b.since("r", last, NOW).entries]
    assert got == sorted(s for s in seqs if s > last)


def test_connection_table_caps_and_membership() -> None:
    t: ConnectionTable[str] = ConnectionTable(max_total=3, max_per_token=2)
    for c in ("a", "b", "c"):
        t.open(c)
    with pytest.raises(TooMany) as e:
        t.open("d")
    assert e.value.scope == "total"
    t.authenticate("a", "fp1", ["r1", "r2"])
    t.authenticate("b", "fp1", ["r1"])
    with pytest.raises(TooMany) as e:
        t.authenticate("c", "fp1", ["r1"])
    assert e.value.scope == "token"
    t.authenticate("c", "fp2", ["r2"])
    assert set(t.members("r1")) == {"a", "b"} and set(t.members("r2")) == {"a", "c"}
    t.close("a")
    t.close("a")
    assert t.members("r1") == ("b",) and t.per_token("fp1") == 1 and len(t) == 2
    t.open("d")
    assert t.members("nobody") == ()
    t.close("b")
    assert "r1" not in t.rooms
