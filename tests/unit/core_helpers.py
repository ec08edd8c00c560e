"""A tiny script-a-show helper for the core's unit tests.

``Show`` builds events with increasing ids at a moving event time (``at(seconds)`` / ``wait``),
feeds them through the core one by one (``step``) and keeps every cue, stats snapshot and
rejection with the event that produced it, so a test can say *when* something fired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.events import (
    CartAdd, Chat, Event, Like, LineupItem, Order, SessionEnd, SessionStart, SkuOnAir, StockSet,
    Viewers,
)
from schemas.outputs import Cue, RoomStats
from stream.core import Playbook, RoomState, new_state, step

T0 = 1_760_000_000_000  # an event time in 2025 (epoch ms)

LINEUP = (
    LineupItem("td", "9块9纸巾", "traffic_driver", 990, 500),
    LineupItem("gift", "福利小样", "giveaway", 100, 50),
    LineupItem("hero", "爆款面霜", "hero", 19900, 100),
    LineupItem("profit", "精华套装", "profit", 39900, 200),
)


@dataclass
class Show:
    pb: Playbook = field(default_factory=Playbook)
    room: str = "room-1"
    t: int = T0
    state: RoomState | None = None
    n: int = 0
    events: list[Event] = field(default_factory=list)
    cues: list[tuple[Cue, Event, int]] = field(default_factory=list)  # (cue, event, index)
    stats: list[RoomStats] = field(default_factory=list)
    rejected: list[tuple[Event, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.state is None:
            self.state = new_state(self.room)

    # time
    def at(self, seconds: float) -> Show:
        self.t = T0 + int(seconds * 1000)
        return self

    def wait(self, seconds: float) -> Show:
        self.t += int(seconds * 1000)
        return self

    def _id(self) -> str:
        self.n += 1
        return f"e{self.n}"

    def feed(self, ev: Event) -> StepOut:
        assert self.state is not None
        res = step(self.state, ev, self.pb)
        self.state = res.state
        idx = len(self.events)
        self.events.append(ev)
        for c in res.cues:
            self.cues.append((c, ev, idx))
        self.stats.extend(res.stats)
        self.rejected.extend(res.rejected)
        return StepOut(res.cues, res.stats, res.rejected)

    # builders (each feeds at the current time)
    def start(self, session: str = "s1", lineup: tuple[LineupItem, ...] = LINEUP) -> StepOut:
        return self.feed(SessionStart(self._id(), self.room, self.t, session, lineup))

    def end(self) -> StepOut:
        return self.feed(SessionEnd(self._id(), self.room, self.t))

    def on_air(self, sku: str) -> StepOut:
        return self.feed(SkuOnAir(self._id(), self.room, self.t, sku))

    def stock(self, sku: str, n: int) -> StepOut:
        return self.feed(StockSet(self._id(), self.room, self.t, sku, n))

    def viewers(self, online: int, entered: int = 0, left: int = 0) -> StepOut:
        return self.feed(Viewers(self._id(), self.room, self.t, online, entered, left))

    def chat(self, text: str, user: str = "u1") -> StepOut:
        return self.feed(Chat(self._id(), self.room, self.t, user, text))

    def like(self, count: int = 1) -> StepOut:
        return self.feed(Like(self._id(), self.room, self.t, count))

    def cart(self, sku: str, user: str = "u1", qty: int = 1) -> StepOut:
        return self.feed(CartAdd(self._id(), self.room, self.t, user, sku, qty))

    def order(self, oid: str, sku: str, status: str = "created", qty: int = 1,
              amount: int = 990, user: str = "u1") -> StepOut:
        return self.feed(Order(self._id(), self.room, self.t, oid, user, sku, qty, amount,
                               status))  # type: ignore[arg-type]

    # queries
    def cues_of(self, kind: str) -> list[Cue]:
        return [c for c, _, _ in self.cues if c.kind == kind]

    def kinds(self) -> list[str]:
        return [c.kind for c, _, _ in self.cues]

    def last_stats(self) -> RoomStats:
        return self.stats[-1]

    def sku_stats(self, sku: str) -> Any:
        return next(s for s in self.last_stats().skus if s.sku_id == sku)

    def calm(self, seconds: int, online: int = 1000, chats_per_s: int = 2,
             likes_per_s: int = 5) -> None:
        """Steady room: a viewers sample per second, chatter without intent, likes."""
        for _ in range(seconds):
            self.viewers(online, 10, 10)
            for j in range(chats_per_s):
                self.chat("主播好美", user=f"u{(self.t // 1000 + j) % 300}")
            self.like(likes_per_s)
            self.wait(1)


@dataclass
class StepOut:
    cues: list[Cue]
    stats: list[RoomStats]
    rejected: list[tuple[Event, str]]
