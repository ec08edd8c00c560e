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
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

from schemas.events import INPUT_TOPICS, Event, SessionStart
from schemas.outputs import Ack, Cue, RoomStats
from stream.core import Playbook, new_state, step_many

from .model import Report, _Fold

__all__ = ["SessionFollower", "FAR_PAST"]

#: The last ts of a topic that has delivered nothing yet.
FAR_PAST: Final = -(1 << 62)
_TOPICS: Final = len(INPUT_TOPICS)


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
        #: A session_start of another session came: the review would be of that one.
        self.superseded = False
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
        if self.broken is not None or self.superseded:
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
        if self.broken is not None or self.superseded or not self.pending:
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
        for i, ev in enumerate(events):
            if type(ev) is SessionStart and ev is not self.start:
                # a review from scratch starts at the room's last session_start (a new session,
                # or this one announced again): not what this follower folded
                events = events[:i]
                self.superseded = True
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
        records (``cues``: those of ``live.cues``, None for the core's). Raises ``ValueError``
        when the follower is broken or superseded: build from scratch then."""
        if self.broken is not None:
            raise ValueError(f"incremental review not possible: {self.broken}")
        self._take(1 << 62)  # everything still pending
        if self.superseded:
            raise ValueError("incremental review not possible: another session started")
        sid = self.session_id
        core_cues = [c for c in self._cues if c.session_id == sid]
        stats = [s for s in self._stats if s.session_id == sid]
        chosen = [c for c in cues if c.session_id == sid] if cues is not None else core_cues
        self._fold.close()
        rep = self._fold.finish(self.room_id, stats, chosen, list(acks), Counter(deadletters))
        rep.events = self._fold.folded
        rep.playbook_name = playbook_name
        return rep
