"""Per-room cue backlog and cue states, for resume without gaps (pure; time is passed in).

``seq`` is the cue record's offset in its ``live.cues`` partition. A room is one Kafka key, so
all its cues live in one partition and their offsets increase: every gateway instance reading
the same topic assigns the same seq to the same cue with no coordination. Seqs of a room are
increasing but not contiguous (other rooms share the partition), so a screen cannot detect a
gap from the numbers alone; it sends its last seq and the backlog answers with everything after
it, and says ``gap`` when cues after that seq were already pruned.

Bounds per room: the newest ``max_cues`` cues that are younger than ``max_age_s``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from .protocol import CUE_STATE_OF

__all__ = ["Backlog", "Entry", "CueState", "next_state", "Replay"]

_RANK: Final = {"acked": 1, "done": 2, "dismissed": 2}


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    at: float  # epoch seconds the cue was emitted (what ages it out)
    cue: dict[str, Any]  # the cue as screens get it, with "seq"


@dataclass(frozen=True, slots=True)
class CueState:
    cue_id: str
    room_id: str
    state: str  # acked | done | dismissed
    action: str
    by: str
    ts: int

    def message(self, seq: int | None) -> dict[str, Any]:
        return {"type": "cue_state", "cue_id": self.cue_id, "room_id": self.room_id, "seq": seq,
                "state": self.state, "action": self.action, "by": self.by, "ts": self.ts}


@dataclass(frozen=True, slots=True)
class Replay:
    entries: tuple[Entry, ...]
    states: tuple[CueState, ...]
    gap: bool  # cues after last_seq were pruned before the screen came back


def next_state(old: str | None, action: str) -> str | None:
    """The new state after ``action``, or None when nothing changes (done/dismissed are final)."""
    new = CUE_STATE_OF[action]
    if old is not None and (_RANK[old] >= _RANK[new]):
        return None
    return new


class _Room:
    __slots__ = ("entries", "by_id", "states", "pruned_upto")

    def __init__(self) -> None:
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self.by_id: dict[str, int] = {}
        self.states: OrderedDict[str, CueState] = OrderedDict()
        self.pruned_upto = -1


class Backlog:
    """The recent cues of every room, and the ack state of each."""

    def __init__(self, max_cues: int = 200, max_age_s: float = 900.0, max_states: int = 1000) -> None:
        self.max_cues = max_cues
        self.max_age_s = max_age_s
        self.max_states = max_states
        self._rooms: dict[str, _Room] = {}

    def _room(self, room_id: str) -> _Room:
        r = self._rooms.get(room_id)
        if r is None:
            r = self._rooms[room_id] = _Room()
        return r

    def _prune(self, r: _Room, now: float) -> None:
        while r.entries:
            seq, e = next(iter(r.entries.items()))
            if len(r.entries) > self.max_cues or e.at < now - self.max_age_s:
                r.entries.popitem(last=False)
                r.by_id.pop(e.cue["cue_id"], None)
                r.pruned_upto = max(r.pruned_upto, seq)
            else:
                break

    def add(self, cue: dict[str, Any], seq: int, at: float, now: float) -> Entry | None:
        """Record a cue at ``seq``. Returns the entry, or None for a duplicate (same seq or cue_id)
        or a cue already too old to keep."""
        room_id, cue_id = cue["room_id"], cue["cue_id"]
        r = self._room(room_id)
        if seq in r.entries or cue_id in r.by_id or seq <= r.pruned_upto:
            return None
        if at < now - self.max_age_s:
            r.pruned_upto = max(r.pruned_upto, seq)
            return None
        e = Entry(seq, at, {**cue, "seq": seq})
        r.entries[seq] = e
        if len(r.entries) > 1 and seq < next(reversed(r.entries)):  # out of order: keep sorted
            r.entries = OrderedDict(sorted(r.entries.items()))
        r.by_id[cue_id] = seq
        self._prune(r, now)
        return e if seq in r.entries else None

    def knows(self, room_id: str, cue_id: str) -> bool:
        r = self._rooms.get(room_id)
        return r is not None and cue_id in r.by_id

    def seq_of(self, room_id: str, cue_id: str) -> int | None:
        r = self._rooms.get(room_id)
        return r.by_id.get(cue_id) if r else None

    def apply(self, room_id: str, cue_id: str, action: str, by: str, ts: int) -> CueState | None:
        """Apply an acknowledgement. Returns the new state, or None when it changes nothing.

        Works for cues not (yet) in the backlog too: acks and cues are separate topics, so on a
        restart an ack can be read before its cue.
        """
        r = self._room(room_id)
        old = r.states.get(cue_id)
        new = next_state(old.state if old else None, action)
        if new is None:
            return None
        st = CueState(cue_id, room_id, new, action, by, ts)
        r.states[cue_id] = st
        r.states.move_to_end(cue_id)
        while len(r.states) > self.max_states:
            r.states.popitem(last=False)
        return st

    def state(self, room_id: str, cue_id: str) -> CueState | None:
        r = self._rooms.get(room_id)
        return r.states.get(cue_id) if r else None

    def since(self, room_id: str, last_seq: int, now: float) -> Replay:
        """Cues of ``room_id`` after ``last_seq`` (oldest first), and the states of all kept cues."""
        r = self._rooms.get(room_id)
        if r is None:
            return Replay((), (), False)
        self._prune(r, now)
        entries = tuple(e for s, e in r.entries.items() if s > last_seq)
        states = tuple(st for cid, st in r.states.items() if cid in r.by_id)
        return Replay(entries, states, last_seq >= 0 and last_seq < r.pruned_upto)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def __len__(self) -> int:
        return sum(len(r.entries) for r in self._rooms.values())
