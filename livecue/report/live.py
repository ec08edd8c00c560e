"""A room's session followed while it runs, so that its review is ready when it ends.

Pure, like :mod:`.model`: events in, a :class:`~livecue.report.model.Report` out; no Kafka, no
clock. The reporter (:mod:`consumers.reporter`) feeds a :class:`SessionFollower` each of the
room's input events as its topic delivers it, from the session's ``session_start`` on, and asks
for the review after the ``session_end``: by then the core and the fold have run over all but
the last few events, so what is left is the page and its charts.

Why this gives the review of a from-scratch build (:func:`~livecue.report.model.build_report`
over everything the topics hold for the room):

* The order. When each topic delivers the room's events in time order, the canonical order
  (:mod:`stream.core.align`) is the stable sort by ``(ts, topic rank)``. An event later on topic
  T has ``ts >=`` the last one T delivered, so every pending event dated before the *frontier*
  ``min over the six topics of their last ts`` has its final place: those are released, sorted,
  to the core and the fold. Nothing that arrives later can sort before them. A topic that
  delivers an event dated before its previous one breaks that (canonical order is then a merge,
  not a sort): the follower says so in :attr:`SessionFollower.broken` and the reporter builds
  from scratch instead. A topic the room is silent on holds the frontier back: its events wait
  (bounded by the show), and the end does the rest; never wrong, only slower.
* The state. The core runs from the session's start on a fresh state. A ``session_start`` of a
  new session id resets every part of a room's state but its largest ts, so that equals the
  state of a core that ran from the room's beginning provided that nothing before it was dated
  at or after it. The reporter checks that (what it consumed of the room before the start, and
  what each topic held before the reporter started) and follows only such a session.
* The range. A review from scratch is of the room's last ``session_start`` (a new session, or
  this one announced again); if another comes, the follower is
  :attr:`~SessionFollower.superseded` (the reporter builds from scratch).

Memory: the core's state of the room, the fold's per-session figures (samples, orders, sales,
interactions per second) and the events dated after the frontier, not the show's events.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from schemas.decode import decode_event
from schemas.errors import InvalidEvent
from schemas.events import (
    INPUT_TOPICS, TOPIC_ACKS, TOPIC_CUES, TOPIC_DEADLETTER, Event, SessionStart,
)
from schemas.outputs import Ack, Cue, RoomStats
from stream.core import Playbook, new_state, step_many

from .model import Report, _Fold
from .source import ack_of, cue_of

__all__ = ["SessionFollower", "LiveTracker", "Taken", "NotFollowable", "FAR_PAST"]

#: The last ts of a topic that has delivered nothing yet.
FAR_PAST: Final = -(1 << 62)
_TOPICS: Final = len(INPUT_TOPICS)
_RANK: Final = {t: i for i, t in enumerate(INPUT_TOPICS)}
_OUTPUTS: Final = (TOPIC_CUES, TOPIC_ACKS, TOPIC_DEADLETTER)


class NotFollowable(ValueError):
    """The followed session cannot give the from-scratch review (the reason says why)."""


class SessionFollower:
    """One room's session, folded as its events arrive (see the module docstring).

    ``prior_last``: per topic rank, the last ts of the room's events the caller consumed before
    the start (FAR_PAST when none); they are all dated before the start, or the caller would
    not follow the session.
    """

    def __init__(self, start: SessionStart, playbook: Playbook,
                 prior_last: Sequence[int] | None = None) -> None:
        self.room_id = start.room_id
        self.session_id = start.session_id
        self.start = start
        self.playbook = playbook
        #: Why this follower cannot give the from-scratch review (None: it can).
        self.broken: str | None = None
        #: This session's start announced again: a from-scratch review reads from the last one.
        self.superseded = False
        #: The next session started (its session_start released): this session's records end
        #: there, as a from-scratch review of this session ends them (select_session).
        self.over = False
        self._state = new_state(self.room_id)
        self._last = list(prior_last) if prior_last is not None else [FAR_PAST] * _TOPICS
        self._last[0] = max(self._last[0], start.ts)
        # per topic rank: events pending (arrival order = time order) and their merge keys
        self._ev: list[list[Event]] = [[] for _ in range(_TOPICS)]
        self._key: list[list[int]] = [[] for _ in range(_TOPICS)]
        self._frontier = start.ts
        self._cues: list[Cue] = []
        self._stats: list[RoomStats] = []
        self._fold = _Fold(start)
        self.pending = 0
        self._release([start])

    @property
    def folded(self) -> int:
        """Events of the session run through the core and the fold so far."""
        return self._fold.folded

    def add(self, rank: int, ev: Event) -> None:
        """The room's next event on the topic of rank ``rank`` (arrival order)."""
        if self.broken is not None or self.superseded or self.over:
            return
        ts = ev.ts
        if ts < self._last[rank]:
            self.broken = f"{INPUT_TOPICS[rank]}: an event dated before the previous one"
            return
        self._last[rank] = ts
        if ts < self.start.ts:
            return  # dated before the session: its place is before the start (not this session's)
        self._ev[rank].append(ev)
        self._key[rank].append(ts * 8 + rank)
        self.pending += 1

    def advance(self) -> int:
        """Run the core and the fold over every pending event dated before the frontier;
        returns how many."""
        if self.broken is not None or self.superseded or self.over or not self.pending:
            return 0
        frontier = min(self._last)
        if frontier <= self._frontier:
            return 0
        self._frontier = frontier
        return self._take(frontier * 8)

    def _take(self, below: int) -> int:
        evs: list[Event] = []
        keys: list[int] = []
        for r in range(_TOPICS):
            klist = self._key[r]
            if not klist or klist[0] >= below:
                continue
            cut = bisect.bisect_left(klist, below)
            evs += self._ev[r][:cut]
            keys += klist[:cut]
            del self._ev[r][:cut], klist[:cut]
        if not evs:
            return 0
        self.pending -= len(evs)
        # ties of key are one topic's events, contiguous here in that topic's order: a stable
        # sort by key is the canonical order
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self._release([evs[i] for i in order])
        return len(evs)

    def _release(self, events: list[Event]) -> None:
        if self.over:
            return
        for i, ev in enumerate(events):
            if type(ev) is SessionStart and ev is not self.start:
                events = events[:i]
                if ev.session_id == self.session_id:
                    # announced again: a review from scratch starts at its last session_start,
                    # not what this follower folded
                    self.superseded = True
                else:  # the next show: this one's records end here
                    self.over = True
                break
        if not events:
            return
        res = step_many(self._state, events, self.playbook)
        self._state = res.state
        self._cues += res.cues
        self._stats += res.stats
        self._fold.feed(events)

    def finish(self, cues: Sequence[Cue] | None = None, acks: Iterable[Ack] = (),
               deadletters: Iterable[str] = (), playbook_name: str = "default") -> Report:
        """The review, as :func:`~livecue.report.model.build_report` gives it for the room's
        records (``cues``: those of ``live.cues``, None for the core's). Raises
        :class:`NotFollowable` when the follower is broken or superseded: build from scratch."""
        if self.broken is not None:
            raise NotFollowable(self.broken)
        self._take(1 << 62)  # everything still pending
        if self.superseded:
            raise NotFollowable("another session_start came")
        sid = self.session_id
        core_cues = [c for c in self._cues if c.session_id == sid]
        stats = [s for s in self._stats if s.session_id == sid]
        chosen = [c for c in cues if c.session_id == sid] if cues is not None else core_cues
        self._fold.close()
        rep = self._fold.finish(self.room_id, stats, chosen, list(acks), Counter(deadletters))
        rep.events = self._fold.folded
        rep.playbook_name = playbook_name
        return rep


#: Events of a room not followed kept for when its session_start comes (see :class:`_Pre`):
#: at most this many, and none dated this long before the newest of its topic.
PRE_KEEP: Final = 100_000
PRE_KEEP_MS: Final = 600_000
#: Cues, acks and dead letters of a room not followed kept for when it is.
OUT_KEEP: Final = 1000


class _Pre:
    """A room not followed: the largest ts consumed per topic rank, and its events on the other
    topics since its last ``live.room`` record (one of them may be the session_start that
    they follow: the topics are read at different speeds). A live.room record dated t drops
    the kept events dated before t (a session_start to come is dated t or later); events dated
    more than :data:`PRE_KEEP_MS` before the newest of their topic go, and past
    :data:`PRE_KEEP` events the oldest half. ``cut``: per rank, the largest ts of what was
    dropped (a session_start dated at or before it cannot be followed)."""

    __slots__ = ("last", "buf", "cut", "n", "cues", "acks", "deadletters", "any_cue")

    def __init__(self) -> None:
        self.last = [FAR_PAST] * _TOPICS
        self.buf: list[deque[Event]] = [deque() for _ in range(_TOPICS)]
        self.cut = [FAR_PAST] * _TOPICS
        self.n = 0
        # the room's latest cues, acks and dead letters (a session's first may come before its
        # session_start is consumed)
        self.cues: deque[Cue] = deque(maxlen=OUT_KEEP)
        self.acks: deque[Ack] = deque(maxlen=OUT_KEEP)
        self.deadletters: deque[str] = deque(maxlen=OUT_KEEP)
        #: a cue of the room was consumed (a from-scratch build then uses live.cues' cues)
        self.any_cue = False

    def keep(self, rank: int, ev: Event) -> None:
        b = self.buf[rank]
        b.append(ev)
        self.n += 1
        old = ev.ts - PRE_KEEP_MS
        while b[0].ts < old:
            self._drop(rank, 1)
        if self.n > PRE_KEEP:
            for r in range(1, _TOPICS):
                self._drop(r, len(self.buf[r]) // 2 + 1)

    def prune(self, ts: int) -> None:
        """Drop the kept events dated before ``ts`` (each topic's oldest first)."""
        for r in range(1, _TOPICS):
            b = self.buf[r]
            while b and b[0].ts < ts:
                self._drop(r, 1)

    def _drop(self, r: int, k: int) -> None:
        b = self.buf[r]
        cut = self.cut[r]
        for _ in range(min(k, len(b))):
            ts = b.popleft().ts
            if ts > cut:
                cut = ts
            self.n -= 1
        self.cut[r] = cut

    def clear(self) -> None:
        for r in range(_TOPICS):
            self._drop(r, len(self.buf[r]))


class _Followed:
    __slots__ = ("follower", "cues", "acks", "deadletters", "unverified", "any_cue")

    def __init__(self, follower: SessionFollower, unverified: set[int]) -> None:
        self.follower = follower
        self.cues: list[Cue] = []
        self.acks: list[Ack] = []
        self.deadletters: list[str] = []
        self.any_cue = False
        #: topic ranks whose records from before the reporter started are not known to be
        #: dated before the start yet (checked at the room's first record on that topic)
        self.unverified = unverified


@dataclass(slots=True)
class Taken:
    """A followed session handed over for its review: the follower and the room's cues, acks
    and dead letters consumed (those of just before the session_start too). ``cues`` is None
    when the room had no cue on live.cues (the review then shows the core's, as from scratch)."""

    follower: SessionFollower
    cues: list[Cue] | None
    acks: list[Ack]
    deadletters: list[str]


class LiveTracker:
    """Which sessions the reporter follows, fed every record it consumes (pure: the reporter
    does the I/O). It reads every input topic and ``live.cues`` / ``live.acks`` /
    ``live.deadletter`` from where they ended when it started (:meth:`started` per partition).

    A session is followed from its ``session_start`` only when nothing the room's topics hold
    before it can be dated at or after it (see the module docstring): what the reporter consumed
    of the room before is all dated before the start, and on each topic, either the reporter
    consumed a record of the room's partition dated before the start, or the partition was empty
    when it started (each partition delivers in time order, as the worker's merge assumes).
    :meth:`take` hands a followed session over, or says why there is none (the reporter then
    builds from scratch).

    The review's cues, acks and dead letters are the room's consumed since the reporter started
    (the last :data:`OUT_KEEP` of each from before the session_start, and the keyless dead
    letters); a from-scratch build counts the room's dead letters of all time (earlier shows'
    too, and written before the reporter started), and uses the worker's cues if live.cues ever
    held one of the room's: the places where the two can differ.
    """

    def __init__(self, playbook_for: Callable[[str], Playbook]) -> None:
        self._playbook_for = playbook_for
        #: (topic, partition) -> ts of the first record consumed since the start; FAR_PAST: the
        #: partition was empty then; None: nothing consumed yet
        self._first: dict[tuple[str, int], int | None] = {}
        self._parts: dict[str, list[int]] = {}
        #: room -> what the reporter consumed of it while it was not followed
        self._pre: dict[str, _Pre] = {}
        self._live: dict[str, _Followed] = {}
        self._refused: dict[str, str] = {}
        self._touched: set[str] = set()
        self._keyless: deque[str] = deque(maxlen=OUT_KEEP)

    def started(self, topic: str, partition: int, empty: bool) -> None:
        """The reporter reads ``topic``/``partition`` from its end; ``empty``: it holds nothing."""
        self._first[(topic, partition)] = FAR_PAST if empty else None
        self._parts.setdefault(topic, []).append(partition)

    @property
    def followed(self) -> list[str]:
        return sorted(self._live)

    def record(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> Event | None:
        """One consumed record. Returns the decoded input event (None for anything else)."""
        rank = _RANK.get(topic)
        if rank is None:
            self._output(topic, key, value)
            return None
        try:
            ev = decode_event(value or b"", key=key, topic=topic)
        except InvalidEvent as exc:
            self._deadletter(None if not key else key.decode("utf-8", "replace"), exc.reason)
            return None
        ts = ev.ts
        tp = (topic, partition)
        if self._first.get(tp) is None:
            self._first[tp] = ts
        room = ev.room_id
        pre = self._pre.get(room)
        if pre is None:
            pre = self._pre[room] = _Pre()
        lv = self._live.get(room)
        if lv is not None:
            if rank in lv.unverified:
                lv.unverified.discard(rank)
                first = self._first[tp]
                assert first is not None
                if first != FAR_PAST and first >= lv.follower.start.ts:
                    lv.follower.broken = f"{topic}: records from before the reporter started"
            lv.follower.add(rank, ev)
            self._touched.add(room)
        elif rank == 0:
            pre.prune(ts)
            if type(ev) is SessionStart:
                self._maybe_follow(ev, tp, pre)
        else:
            pre.keep(rank, ev)
        if ts > pre.last[rank]:
            pre.last[rank] = ts
        return ev

    def _maybe_follow(self, start: SessionStart, tp: tuple[str, int], pre: _Pre) -> None:
        room, ts = start.room_id, start.ts
        if pre.last[0] > ts:
            self._refused[room] = "live.room: a record dated after the session_start came before it"
            return
        if any(x >= ts for x in pre.cut[1:]):
            self._refused[room] = "records dated after the session_start were not kept (too many)"
            return
        first = self._first[tp]
        if pre.last[0] == FAR_PAST and first != FAR_PAST and first is not None and first >= ts:
            self._refused[room] = "live.room: records from before the reporter started"
            return
        unverified = {r for r in range(1, _TOPICS) if pre.last[r] == FAR_PAST}
        self._refused.pop(room, None)
        prior = [pre.last[0]] + pre.cut[1:]
        follower = SessionFollower(start, self._playbook_for(room), prior)
        for r in range(1, _TOPICS):  # what came before the start on the other topics
            for ev in pre.buf[r]:
                follower.add(r, ev)
        pre.clear()
        lv = _Followed(follower, unverified)
        lv.cues, lv.acks, lv.any_cue = list(pre.cues), list(pre.acks), pre.any_cue
        lv.deadletters = list(pre.deadletters) + list(self._keyless)
        pre.cues.clear()
        pre.acks.clear()
        pre.deadletters.clear()
        self._live[room] = lv
        self._touched.add(room)

    def _sink(self, room: str) -> _Followed | _Pre:
        lv = self._live.get(room)
        if lv is not None:
            return lv
        pre = self._pre.get(room)
        if pre is None:
            pre = self._pre[room] = _Pre()
        return pre

    def _deadletter(self, room: str | None, reason: str) -> None:
        """A dead letter of ``room``, or of every room (None: a from-scratch build counts a
        keyless one in each room's review)."""
        if room is not None:
            self._sink(room).deadletters.append(reason)
            return
        self._keyless.append(reason)
        for lv in self._live.values():
            lv.deadletters.append(reason)

    def _output(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if topic not in _OUTPUTS:
            return
        rkey = None if key is None else key.decode("utf-8", "replace")
        try:
            d = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return
        if type(d) is not dict:
            return
        if topic == TOPIC_CUES:
            c = cue_of(d)
            if c is not None and rkey in (None, c.room_id):
                sink = self._sink(c.room_id)
                sink.cues.append(c)
                sink.any_cue = True
        elif topic == TOPIC_ACKS:
            a = ack_of(d)
            if a is not None and rkey in (None, a.room_id):
                self._sink(a.room_id).acks.append(a)
        else:
            k = d.get("key") if isinstance(d.get("key"), str) else rkey
            if rkey is not None and k is not None and k != rkey:
                return  # counted in no room's review (from scratch neither)
            self._deadletter(k, str(d.get("reason") or "?"))

    def advance(self) -> int:
        """Run the core and the fold of the sessions that got records since the last call."""
        n = 0
        for room in self._touched:
            lv = self._live.get(room)
            if lv is not None:
                n += lv.follower.advance()
        self._touched.clear()
        return n

    def take(self, room_id: str, playbook: Playbook, ended_ts: int | None = None) -> Taken | str:
        """Hand the room's followed session over (it is followed no more), or the reason there
        is none to use. ``playbook``: the room's playbook now (a from-scratch build uses it).
        ``ended_ts``: the session_end's ts; a followed session that started after it is the next
        show's, kept followed (the one that ended was not followed)."""
        lv = self._live.get(room_id)
        if lv is not None and ended_ts is not None and lv.follower.start.ts > ended_ts:
            return "the session that ended was not followed (the next one is)"
        lv = self._live.pop(room_id, None)
        if lv is None:
            return self._refused.pop(room_id, "session_start not seen since the reporter started")
        f = lv.follower
        if f.playbook != playbook:
            return "the room's playbook changed during the show"
        for r in sorted(lv.unverified):  # the room never had a record there: every partition
            topic = INPUT_TOPICS[r]
            for p in self._parts.get(topic, []):
                first = self._first.get((topic, p))
                if first is None or (first != FAR_PAST and first >= f.start.ts):
                    return f"{topic}: records from before the reporter started"
        if f.broken is not None:
            return f.broken
        if f.superseded:
            return "another session_start came"
        return Taken(f, lv.cues if lv.any_cue else None, lv.acks, lv.deadletters)
