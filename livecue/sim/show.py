"""The show model: a seeded, reproducible simulation of live selling rooms.

:func:`generate` is a pure function of ``(seed, rooms, scenario, start_ts, duration, rate)``:
it draws from :class:`random.Random` instances seeded from those arguments only, stamps events
with a simulated clock, and numbers them deterministically, so two runs give byte-identical
output. Each room is simulated on its own (its own random stream, seeded from the seed and its
room id), one second of show at a time:

* viewers arrive (Poisson, toward the mood's target) and leave (each viewer with a small
  probability a second, times the mood's churn); a ``viewers`` sample every 2-5 s;
* chat lines are drawn from :mod:`livecue.sim.corpus` with category weights that follow the
  show: intent while stock is held, "没抢到" right after a release sells out, complaints while
  the room drains;
* likes arrive in bursts, with occasional like storms;
* demand for the SKU on air depends on its role, its price and the room's popularity and
  engagement; while it is held (憋单) demand accumulates and is released as a rush of orders
  when stock is put back (放单), capped by the stock on the link;
* an order is ``created``, then mostly ``paid`` seconds later, sometimes ``cancelled``.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from schemas.events import (
    CartAdd, Chat, Event, Like, LineupItem, Order, SessionEnd, SessionStart, SkuOnAir, StockSet,
    Viewers,
)

from .corpus import CATEGORIES, CHAT, ENGLISH_SHARE, PRODUCTS
from .scenarios import SCENARIOS, Beat, Mood, Scenario

__all__ = ["generate", "DEFAULT_START_TS", "room_ids", "ACTIVITY_PER_VIEWER"]

#: 2026-11-20T12:00:00Z: a fixed default start, so output does not depend on the day it runs.
DEFAULT_START_TS: Final = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp() * 1000)

# Per online viewer and second, at engagement 1.
_CHAT_RATE: Final = 0.0060
_LIKE_RATE: Final = 0.0030
_LIKE_STORM_P: Final = 0.02  # chance a second starts a like storm
_STAY_S: Final = 150.0  # mean stay of a viewer at churn 1
#: Orders per online viewer and second for the SKU on air, by role (at its reference price).
_BUY: Final = {"traffic_driver": 0.00045, "giveaway": 0.0012, "hero": 0.00032, "profit": 0.00005}
_REF_PRICE: Final = {"traffic_driver": 990, "giveaway": 100, "hero": 6990, "profit": 29900}
#: Share of a SKU's demand that still buys while it is off air (a giveaway is only grabbed live).
_OFF_AIR: Final = {"traffic_driver": 0.04, "giveaway": 0.003, "hero": 0.04, "profit": 0.04}
_CART_PER_ORDER: Final = 1.6
_RELEASE_TAU_S: Final = 6.0  # pent-up demand floods a release within a few seconds
_GIVE_UP_TAU_S: Final = 25.0  # frustrated buyers give up after a sell-out
_PAID_P: Final = 0.86
_CANCEL_P: Final = 0.07

#: Rough events a second per online viewer at engagement 1 (chat, likes, cart, orders):
#: the room's baseline audience is ``rate / ACTIVITY_PER_VIEWER``.
ACTIVITY_PER_VIEWER: Final = 0.0120


def room_ids(rooms: int | Sequence[str], prefix: str = "room-") -> tuple[str, ...]:
    if isinstance(rooms, int):
        return tuple(f"{prefix}{i}" for i in range(1, rooms + 1))
    return tuple(rooms)


def _digest(*parts: object) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=6).hexdigest()


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam < 30:
        limit, k, p = math.exp(-lam), 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


@dataclass(slots=True)
class _Sku:
    item: LineupItem
    link: int
    stock: int
    held: bool = False
    pending: float = 0.0  # demand waiting for stock (held) or frustrated (sold out)
    sold_out_at: float = -1e9
    carts: list[str] = field(default_factory=list)  # recent cart adders (they tend to buy)


class _Room:
    """One room's simulation state and its event buffer."""

    def __init__(self, seed: int, room_id: str, sc: Scenario, start_ts: int, rate: float) -> None:
        self.rng = rng = random.Random(f"livecue-sim/{seed}/{sc.name}/{start_ts}/{room_id}")
        self.room_id = room_id
        self.sc = sc
        self.start_ts = start_ts
        tag = _digest(seed, sc.name, start_ts, room_id)
        self.session_id = f"{room_id}-{datetime.fromtimestamp(start_ts / 1000, UTC):%Y%m%dT%H%M}-{tag[:6]}"
        self.tag = tag
        self.base = max(20.0, rate / ACTIVITY_PER_VIEWER)
        self.mood = sc.opening
        self.engagement = sc.opening.engagement
        self.online = max(1, round(self.base * sc.opening.target * rng.uniform(0.9, 1.05)))
        self.entered = 0
        self.left = 0
        self.next_sample = rng.uniform(0.5, 2.0)
        self.storm_until = -1.0
        self.user_space = int(self.base * 8) + 1000
        self.on_air: _Sku | None = None
        self.buf: list[tuple[int, int, type[Event], dict[str, Any]]] = []
        self.n_orders = 0
        self.floor = 0.0
        self.skus = self._lineup()

    # -- helpers ---------------------------------------------------------------------------

    def _emit(self, t_s: float, cls: type[Event], **fields: Any) -> int:
        # Nothing of a tick may precede a beat played in that tick (a sale after the release).
        ts = self.start_ts + int(max(t_s, self.floor) * 1000)
        self.buf.append((ts, len(self.buf), cls, fields))
        return ts

    def _user(self) -> str:
        # Skewed: a core of regulars talks and buys more than the long tail.
        r = self.rng.random()
        return f"u{int(self.user_space * r * r * r):07d}"

    def _lineup(self) -> dict[str, _Sku]:
        rng = self.rng
        cat = rng.choice(CATEGORIES)
        products = PRODUCTS[cat]
        roles = ["traffic_driver", "giveaway", "hero", "profit", "profit"]
        used: set[str] = set()
        skus: dict[str, _Sku] = {}
        order = []
        for i, role in enumerate(roles, 1):
            choices = [p for p in products[role] if p[0] not in used]
            name, price = rng.choice(choices)
            used.add(name)
            stock = self.sc.stock.get(role, 300) if role not in skus else rng.choice((200, 300, 500))
            item = LineupItem(f"sku-{self.tag[:4]}-{i}", name, role, price, stock)  # type: ignore[arg-type]
            sku = _Sku(item, i, stock)
            order.append(sku)
            skus.setdefault(role, sku)
            skus[item.sku_id] = sku
        self.lineup = tuple(s.item for s in order)
        self.all_skus = order
        return skus

    # -- beats -----------------------------------------------------------------------------

    def beat(self, t: float, b: Beat) -> None:
        if b.action == "mood":
            assert b.mood is not None
            self.mood = b.mood
            return
        sku = self.skus[b.role]
        if b.action == "on_air":
            if self.on_air is not sku:
                self.on_air = sku
                self._emit(t, SkuOnAir, sku_id=sku.item.sku_id)
        elif b.action == "hold":
            sku.held, sku.stock = True, 0
            self._emit(t, StockSet, sku_id=sku.item.sku_id, stock=0)
        elif b.action == "release":
            sku.held, sku.stock = False, b.qty
            self._emit(t, StockSet, sku_id=sku.item.sku_id, stock=b.qty)

    # -- one second of show -----------------------------------------------------------------

    def tick(self, t: float) -> None:
        rng = self.rng
        mood = self.mood
        # Engagement follows the mood with a ~10 s lag.
        self.engagement += (mood.engagement - self.engagement) * 0.1
        e = self.engagement
        # Viewers: arrivals toward the target, departures by churn.
        p_out = mood.churn / _STAY_S
        arrivals = _poisson(rng, mood.target * self.base / _STAY_S)
        departures = min(self.online, _poisson(rng, self.online * p_out))
        self.online += arrivals - departures
        self.entered += arrivals
        self.left += departures
        if t >= self.next_sample:
            self._emit(t, Viewers, online=self.online, entered=self.entered, left=self.left)
            self.entered = self.left = 0
            self.next_sample = t + rng.uniform(2.0, 5.0)
        online = self.online

        # Demand for the SKU on air (and a trickle for the rest).
        sku = self.on_air
        weights = {"greeting": 0.05 + 8.0 * arrivals / max(1.0, online), "question": 0.15,
                   "intent": 0.12, "chat": 0.45, "complaint": 0.04, "missed": 0.0}
        if mood.churn > 1.2:
            weights["complaint"] += 0.12
            weights["chat"] -= 0.2
        if sku is not None:
            role = sku.item.role
            demand = online * _BUY[role] * e * math.sqrt(_REF_PRICE[role] / max(1, sku.item.price_cents))
            if role == "profit":
                weights["question"] += 0.08
            if sku.held:
                sku.pending += demand
                weights["intent"] += 0.45
                self._carts(t, sku, demand * _CART_PER_ORDER)
            elif sku.stock > 0:
                rush = sku.pending / _RELEASE_TAU_S
                sku.pending -= rush
                if rush > 0.5:
                    weights["intent"] += 0.25
                self._carts(t, sku, demand * _CART_PER_ORDER)
                self._orders(t, sku, demand + rush)
                if sku.stock == 0:
                    sku.sold_out_at = t
            else:
                # Sold out: buyers who came too late keep asking, then give up.
                sku.pending += demand
                give_up = sku.pending / _GIVE_UP_TAU_S
                sku.pending -= give_up
                if sku.pending > 1.0 and t - sku.sold_out_at < 90:
                    weights["missed"] += 0.5
                    weights["intent"] += 0.1
                self._carts(t, sku, demand * 0.6)
        for other in self.all_skus:
            if other is not sku and other.stock > 0 and not other.held:
                d = online * _BUY[other.item.role] * _OFF_AIR[other.item.role] * e
                self._carts(t, other, d * _CART_PER_ORDER)
                self._orders(t, other, d)

        # Chat and likes.
        n_chat = _poisson(rng, online * _CHAT_RATE * e * (1.0 + 0.8 * (sku is not None and sku.held)))
        if n_chat:
            cats = list(weights)
            ws = [max(0.0, weights[c]) for c in cats]
            for cat in rng.choices(cats, ws, k=n_chat):
                self._chat(t + rng.random(), cat, sku)
        if rng.random() < _LIKE_STORM_P * e:
            self.storm_until = t + rng.uniform(4, 10)
        storm = 4.0 if t < self.storm_until else 1.0
        for _ in range(_poisson(rng, online * _LIKE_RATE * e * storm)):
            count = 1 + int(rng.expovariate(1 / (5.0 * e * storm)))
            self._emit(t + rng.random(), Like, count=min(count, 999))

    def _chat(self, t: float, cat: str, sku: _Sku | None) -> None:
        rng = self.rng
        zh, en = CHAT[cat]
        text = rng.choice(en if rng.random() < ENGLISH_SHARE else zh)
        if "{" in text:
            text = text.format(n=sku.link if sku else 1, h=rng.randrange(150, 185), w=rng.randrange(85, 170))
        self._emit(t, Chat, user_id=self._user(), text=text)

    def _carts(self, t: float, sku: _Sku, lam: float) -> None:
        rng = self.rng
        for _ in range(_poisson(rng, lam)):
            user = self._user()
            sku.carts.append(user)
            if len(sku.carts) > 200:
                del sku.carts[:100]
            self._emit(t + rng.random(), CartAdd, user_id=user, sku_id=sku.item.sku_id,
                       qty=1 if rng.random() < 0.88 else 2)

    def _orders(self, t: float, sku: _Sku, lam: float) -> None:
        rng = self.rng
        n = _poisson(rng, lam)
        for _ in range(n):
            if sku.stock <= 0:
                break
            qty = min(sku.stock, 1 if rng.random() < 0.9 else 2)
            sku.stock -= qty
            self.n_orders += 1
            order_id = f"o-{self.tag}-{self.n_orders:06d}"
            user = rng.choice(sku.carts) if sku.carts and rng.random() < 0.6 else self._user()
            amount = qty * sku.item.price_cents
            at = t + rng.random()
            common = dict(order_id=order_id, user_id=user, sku_id=sku.item.sku_id, qty=qty, amount_cents=amount)
            self._emit(at, Order, status="created", **common)
            r = rng.random()
            if r < _PAID_P:
                self._emit(at + 3 + rng.expovariate(1 / 15), Order, status="paid", **common)
            elif r < _PAID_P + _CANCEL_P:
                self._emit(at + rng.uniform(20, 180), Order, status="cancelled", **common)

    # -- the whole show ---------------------------------------------------------------------

    def run(self, duration: float) -> list[Event]:
        rng = self.rng
        self._emit(0, SessionStart, session_id=self.session_id, lineup=self.lineup)
        beats: list[tuple[float, int, Beat]] = []
        cycle = 0
        while cycle * self.sc.cycle_s < duration:
            base = cycle * self.sc.cycle_s
            for i, b in enumerate(self.sc.beats):
                at = base + b.at + (rng.uniform(0.0, 3.0) if base + b.at > 0 else 0.0)
                if at < duration:
                    beats.append((at, i, b))
            cycle += 1
        beats.sort(key=lambda x: (x[0], x[1]))
        bi = 0
        t = 0
        while t < duration:
            while bi < len(beats) and beats[bi][0] < t + 1:
                self.beat(beats[bi][0], beats[bi][2])
                self.floor = beats[bi][0]
                bi += 1
            self.tick(float(t))
            t += 1
        end_ts = self._emit(duration, SessionEnd)
        self.buf.sort(key=lambda x: (x[0], x[1]))
        out: list[Event] = []
        for n, (ts, _seq, cls, fields) in enumerate(self.buf):
            if ts > end_ts:
                break
            if cls is SessionEnd and ts != end_ts:
                continue
            out.append(cls(event_id=f"e-{self.tag}-{n:07d}", room_id=self.room_id, ts=ts, **fields))
        # session_end last even if something landed on the same millisecond after it
        tail = [ev for ev in out if isinstance(ev, SessionEnd)]
        return [ev for ev in out if not isinstance(ev, SessionEnd)] + tail


def generate(
    seed: int,
    rooms: int | Sequence[str] = 1,
    scenario: str = "mixed",
    start_ts: int = DEFAULT_START_TS,
    duration: float = 600.0,
    rate: float = 30.0,
) -> list[Event]:
    """Simulate ``rooms`` live shows of ``duration`` seconds from ``start_ts`` (epoch ms).

    ``rate`` is the approximate number of events a second of event time *per room*. Returns
    every room's events merged by event time (ties: room order, then generation order); each
    room's own sequence is in non-decreasing ``ts``. Raises ``ValueError`` for an unknown
    scenario or non-positive duration/rate.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
    if duration <= 0 or rate <= 0:
        raise ValueError("duration and rate must be positive")
    ids = room_ids(rooms)
    if len(set(ids)) != len(ids):
        raise ValueError("room ids must be unique")
    per_room = [_Room(seed, rid, SCENARIOS[scenario], start_ts, rate).run(duration) for rid in ids]
    merged = [(ev.ts, r, i, ev) for r, evs in enumerate(per_room) for i, ev in enumerate(evs)]
    merged.sort(key=lambda x: (x[0], x[1], x[2]))
    return [m[3] for m in merged]
