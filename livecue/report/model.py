"""The review's figures: a room's events (plus its cues, acks and dead letters) in, numbers out.

Pure: no files, no Kafka, no clock, no plotting. :func:`build_report` takes one room's decoded
input events, runs them through the decision core (:func:`stream.core.step_many` in the canonical
order of :func:`stream.core.align.canonical_order`, exactly as the backtest and the worker do) to
get the cues it fired and the popularity tier from its ``room_stats``, and folds the same events
into the figures of the review. Rendering lives in :mod:`livecue.report.charts` and
:mod:`livecue.report.html`.

Definitions (the report states them too)
----------------------------------------
* Session: from its ``session_start`` to its ``session_end`` (or the room's last event). Audience
  events (viewers, chat, likes, cart adds) count inside that window; order status updates count
  until the room's next session starts (late payments).
* Online: the last ``viewers`` sample, held until the next (0 before the first). Average online
  and viewer-minutes integrate it over the session; peak online is the largest sample.
* Interactions: chat messages plus likes (a like event's ``count``).
* Orders: an order id is *created* when first seen as created or paid; *paid* when a paid status
  arrives and it is never cancelled; *cancelled* when a cancel arrives. GMV sums ``amount_cents``
  of paid orders only. Units: quantity of created orders not cancelled.
* Conversion: buyers (users with a paid order) / unique viewers, where unique viewers are
  estimated as the first online sample plus every ``entered`` (visits; the contract carries no
  viewer ids), and orders created / cart adds.
* GPM: GMV per thousand viewer-minutes.
* Stock per SKU: the lineup's stock, set by ``stock_set``, minus created orders, plus cancelled
  ones. A *sell-out* is an order taking it from > 0 to 0; a *held period* (憋单) runs from a
  ``stock_set`` to 0 until stock is set above 0 again (or the session ends).
* Reaction times: from the cue (its ``emitted_at`` when the worker stamped one, else its event
  time ``ts``) to the first ``ack`` and the first ``done`` on ``live.acks``.
* Effects (:data:`EFFECT_RULES`): push_stock / release_orders compare the SKU's units sold in
  the 2 minutes after its stock came back (the first ``stock_set`` at or after the cue that
  raised it, within 5 minutes of the cue; else the cue was not acted on) with the 2 minutes
  before; switch_to_traffic_driver compares online viewers and the
  interaction rate (per minute, over the minute before) 3 minutes after the cue with those at the
  cue. Verdict: helped at +10 % or more, worse at -10 % or less, else no change.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from schemas.events import (
    CartAdd, Chat, Event, Like, Order, SessionEnd, SessionStart, SkuOnAir,
    StockSet, Viewers,
)
from schemas.outputs import Ack, Cue, RoomStats
from stream.core import Playbook, new_state, step_many
from stream.core.align import TOPIC_RANK, canonical_order

from ._gc import gc_paused

__all__ = [
    "Summary", "Minute", "TierSpan", "SkuRow", "Effect", "CueRow", "CompareRow", "Report",
    "build_report", "select_session", "in_canonical_order", "EFFECT_RULES", "EFFECT_WINDOW_MS", "SWITCH_AFTER_MS",
    "RESPONSE_WINDOW_MS",
    "VERDICT_THRESHOLD",
]

MINUTE_MS: Final = 60_000
#: Interactions are counted per second in a list up to this second of the session (a week).
_INTER_CAP: Final = 7 * 86_400
#: Units sold this long before / after the stock came back (push_stock, release_orders).
EFFECT_WINDOW_MS: Final = 120_000
#: A restock later than this after a push_stock / release_orders cue is not its answer.
RESPONSE_WINDOW_MS: Final = 300_000
#: Online viewers and interaction rate this long after a switch_to_traffic_driver cue.
SWITCH_AFTER_MS: Final = 180_000
#: Relative change that counts as helped (>= +) or worse (<= -).
VERDICT_THRESHOLD: Final = 0.10
EFFECT_RULES: Final = {
    "push_stock": "units_2min",
    "release_orders": "units_2min",
    "switch_to_traffic_driver": "online_3min",
}

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class Summary:
    started_ts: int
    ended_ts: int
    duration_s: float
    peak_online: int
    avg_online: float
    viewer_minutes: float
    chats: int
    likes: int
    interactions: int
    cart_adds: int
    orders_created: int
    orders_paid: int
    orders_cancelled: int
    units: int
    gmv_cents: int
    buyers: int
    unique_viewers: int | None
    conv_buyers_viewers: float | None
    conv_orders_cart: float | None
    gpm_cents: float | None


@dataclass(frozen=True, slots=True)
class Minute:
    """Minute ``index`` of the session (from its start): averages and totals in that minute."""

    index: int
    ts: int
    online: float
    interactions: int
    gmv_cents: int
    orders: int
    tier: str | None


@dataclass(frozen=True, slots=True)
class TierSpan:
    start_ts: int
    end_ts: int
    tier: str


@dataclass(frozen=True, slots=True)
class SkuRow:
    sku_id: str
    name: str
    role: str
    price_cents: int
    on_air_s: float
    cart_adds: int
    orders: int
    units: int
    gmv_cents: int
    conversion: float | None
    sellouts: int
    held_periods: int
    held_s: float


@dataclass(frozen=True, slots=True)
class Effect:
    """A cue's measured effect: ``before`` / ``after`` of ``metric``, and the verdict.

    ``verdict`` is helped / no_change / worse, or not_acted when nothing happened to measure (the
    stock never came back) and no_data when the show ended before the window did.
    """

    metric: str
    at_ts: int | None
    before: float | None
    after: float | None
    change: float | None
    verdict: str
    extra_before: float | None = None
    extra_after: float | None = None


@dataclass(frozen=True, slots=True)
class CueRow:
    cue: Cue
    offset_s: float
    ack_s: float | None
    ack_by: str | None
    done_s: float | None
    done_by: str | None
    dismissed_s: float | None
    dismissed_by: str | None
    effect: Effect | None


@dataclass(frozen=True, slots=True)
class CompareRow:
    """One row of the side-by-side comparison: the cue of playbook A and/or B with the same id
    (``side`` "both"), or a cue only one of them fires ("a" / "b"). ``cue`` is A's when A has it."""

    side: str
    cue: Cue
    offset_s: float
    a: Cue | None = None
    b: Cue | None = None


@dataclass(slots=True)
class Report:
    room_id: str
    session_id: str
    summary: Summary
    minutes: list[Minute]
    tiers: list[TierSpan]
    skus: list[SkuRow]
    cues: list[CueRow]
    deadletters: Counter[str]
    events: int
    playbook_name: str = "default"
    compare: list[CompareRow] | None = None
    compare_name: str | None = None
    notes: list[str] = field(default_factory=list)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _verdict(before: float, after: float) -> tuple[float | None, str]:
    if before <= 0:
        return (None, "helped" if after > 0 else "no_change")
    ch = (after - before) / before
    if ch >= VERDICT_THRESHOLD:
        return ch, "helped"
    if ch <= -VERDICT_THRESHOLD:
        return ch, "worse"
    return ch, "no_change"


def select_session(events: Sequence[Event], session_id: str | None) -> tuple[int, int] | None:
    """Index range ``[lo, hi)`` of ``events`` (one room's, in canonical order) that belongs to
    the session ``session_id`` (None: the last session that started). None if there is none."""
    starts = [i for i, e in enumerate(events) if type(e) is SessionStart
              and (session_id is None or e.session_id == session_id)]
    if not starts:
        return None
    lo = starts[-1] if session_id is None else starts[0]
    sid = events[lo].session_id  # type: ignore[union-attr]
    hi = len(events)
    for i in range(lo + 1, len(events)):
        e = events[i]
        if type(e) is SessionStart and e.session_id != sid:
            hi = i
            break
    return lo, hi


def build_report(
    events: Iterable[tuple[str, int, Event]] | Sequence[Event],
    playbook: Playbook,
    *,
    session_id: str | None = None,
    cues: Sequence[Cue] | None = None,
    acks: Iterable[Ack] = (),
    deadletters: Iterable[str] = (),
    compare_playbook: Playbook | None = None,
    playbook_name: str = "default",
    compare_name: str | None = None,
    core_rejections: bool = False,
    progress: Progress | None = None,
) -> Report:
    """The review of one room's session.

    ``events``: the room's decoded input events, either as ``(topic, ts, event)`` items in
    arrival order (they are put in canonical order here) or already as a list of events in
    canonical order. ``cues``: the cues the worker sent (``live.cues``), when known; otherwise
    the core's cues for these events are used (the backtest's). ``deadletters``: one reason per
    dead letter; with ``core_rejections`` the events the core refused in context count too (a
    recording has no ``live.deadletter``; the worker would have sent them there). Raises ``ValueError`` when there is no session to report on.
    """
    with gc_paused():
        return _build(events, playbook, session_id, cues, acks, deadletters, compare_playbook,
                      playbook_name, compare_name, core_rejections, progress)


def _build(events: Iterable[tuple[str, int, Event]] | Sequence[Event], playbook: Playbook,
           session_id: str | None, cues: Sequence[Cue] | None, acks: Iterable[Ack],
           deadletters: Iterable[str], compare_playbook: Playbook | None, playbook_name: str,
           compare_name: str | None, core_rejections: bool, progress: Progress | None) -> Report:
    items = events if isinstance(events, list) else list(events)
    ordered: list[Event]
    if items and isinstance(items[0], tuple):
        ordered = in_canonical_order(items)  # type: ignore[arg-type]
    else:
        ordered = items  # type: ignore[assignment]
    rng = select_session(ordered, session_id)
    if rng is None:
        raise ValueError("no session_start" + (f" for session {session_id}" if session_id else ""))
    lo, hi = rng
    room_id = ordered[lo].room_id
    sess = ordered[lo]
    assert isinstance(sess, SessionStart)
    # The core runs from the room's beginning (its state before this session matters little,
    # but cue ids and tiers are then the worker's exactly).
    core_cues, stats, refused = _run_core(room_id, ordered[:hi], playbook, progress)
    core_cues = [c for c in core_cues if c.session_id == sess.session_id]
    stats = [s for s in stats if s.session_id == sess.session_id]
    chosen = [c for c in cues if c.session_id == sess.session_id] if cues is not None else core_cues
    agg = _Fold(sess)
    agg.run(ordered[lo:hi], progress)
    dls = Counter(deadletters)
    if core_rejections:
        dls.update(refused)
    rep = agg.finish(room_id, stats, chosen, list(acks), dls)
    rep.events = hi - lo
    rep.playbook_name = playbook_name
    if compare_playbook is not None:
        b_cues, _, _ = _run_core(room_id, ordered[:hi], compare_playbook, progress)
        b_cues = [c for c in b_cues if c.session_id == sess.session_id]
        rep.compare = _compare(core_cues, b_cues, agg.t0)
        rep.compare_name = compare_name
    return rep


def in_canonical_order(items: list[tuple[str, int, Event]]) -> list[Event]:
    """:func:`~stream.core.align.canonical_order` of one room's ``(topic, ts, event)`` items,
    five times faster when every topic's events are in time order (a recording of a live
    platform, the simulator, a replay): the merge is then the stable sort by ``(ts, topic
    rank)`` (see :mod:`stream.core.align`). Otherwise it is computed by canonical_order itself."""
    last: dict[str, int] = {}
    get = last.get
    rank = TOPIC_RANK
    keys: list[int] = []
    key = keys.append
    for topic, ts, _ in items:
        if ts < get(topic, ts):
            return canonical_order(items)
        last[topic] = ts
        key(ts * 8 + rank[topic])  # (ts, rank) as one int: ranks are < 8
    order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: ties keep their position
    return [items[i][2] for i in order]


def _run_core(room_id: str, events: list[Event], pb: Playbook,
              progress: Progress | None) -> tuple[list[Cue], list[RoomStats], list[str]]:
    """The core over the room's events, in chunks (a fold: same result as one call)."""
    state = new_state(room_id)
    cues: list[Cue] = []
    stats: list[RoomStats] = []
    refused: list[str] = []
    n = len(events)
    chunk = 200_000
    for i in range(0, n, chunk):
        res = step_many(state, events[i:i + chunk], pb)
        state = res.state
        cues.extend(res.cues)
        stats.extend(res.stats)
        refused.extend(reason for _, reason in res.rejected)
        if progress is not None:
            progress("core", min(n, i + chunk), n)
    return cues, stats, refused


def _compare(a: list[Cue], b: list[Cue], t0: int) -> list[CompareRow]:
    ids_a = {c.cue_id for c in a}
    ids_b = {c.cue_id: c for c in b}
    rows = [CompareRow("both" if c.cue_id in ids_b else "a", c, (c.ts - t0) / 1000, c,
                       ids_b.get(c.cue_id)) for c in a]
    rows += [CompareRow("b", c, (c.ts - t0) / 1000, None, c) for c in b if c.cue_id not in ids_a]
    rows.sort(key=lambda r: (r.cue.ts, r.side))
    return rows


class _Sku:
    __slots__ = ("sku_id", "name", "role", "price", "stock", "on_air_ms", "cart", "orders",
                 "units", "gmv", "sellouts", "held_periods", "held_ms", "held_since",
                 "sales", "raises", "_placed")

    def __init__(self, sku_id: str, name: str, role: str, price: int, stock: int) -> None:
        self.sku_id, self.name, self.role, self.price, self.stock = sku_id, name, role, price, stock
        self.on_air_ms = 0
        self.cart = self.orders = self.units = self.gmv = self.sellouts = 0
        self.held_periods = self.held_ms = 0
        self.held_since = -1
        self.sales: list[tuple[int, int]] = []  # (ts, qty) of created orders (cancels: -qty)
        self.raises: list[int] = []  # ts of stock_set that raised the stock
        self._placed: tuple[list[int], list[int]] | None = None

    def units_placed(self, a: int, b: int) -> int:
        """Units of the orders placed in ``[a, b)`` (cancels not subtracted): prefix sums over
        the placed sales sorted by time, built once when the figures are read."""
        if self._placed is None:
            placed = sorted((ts, q) for ts, q in self.sales if q > 0)
            cum = [0]
            for _, q in placed:
                cum.append(cum[-1] + q)
            self._placed = ([ts for ts, _ in placed], cum)
        times, cum = self._placed
        return cum[bisect.bisect_left(times, b)] - cum[bisect.bisect_left(times, a)] if b > a else 0


class _Ord:
    __slots__ = ("qty", "amount", "sku", "user", "ts", "placed", "paid", "cancelled")

    def __init__(self, ev: Order) -> None:
        self.qty, self.amount, self.sku, self.user, self.ts = (
            ev.qty, ev.amount_cents, ev.sku_id, ev.user_id, ev.ts)
        self.placed = self.paid = self.cancelled = False


class _Fold:
    """One pass over the session's events (canonical order), a few µs an event."""

    def __init__(self, sess: SessionStart) -> None:
        self.sid = sess.session_id
        self.t0 = sess.ts
        self.end = -1
        self.last_ts = sess.ts
        self.skus: dict[str, _Sku] = {}
        self.order_of: dict[str, _Ord] = {}
        self.viewers: list[tuple[int, int]] = []
        self.entered = 0
        self.chats = self.likes = self.cart = 0
        # interactions per second of the session: a list for seconds 0.._INTER_CAP, a Counter
        # for anything outside (an event dated before the start or far ahead)
        self.inter_s: list[int] = []
        self.inter_x: Counter[int] = Counter()
        self.on_air: str | None = None
        self.on_air_since = 0
        self.folded = 0

    def _sku(self, sku_id: str) -> _Sku | None:
        return self.skus.get(sku_id)

    def run(self, events: Sequence[Event], progress: Progress | None) -> None:
        """Fold a whole session's events (canonical order) and close it."""
        n = len(events)
        chunk = 500_000
        for i in range(0, n, chunk):
            self.feed(events[i:i + chunk] if n > chunk else events)
            if progress is not None:
                progress("figures", min(n, i + chunk), n)
        self.close()

    def feed(self, events: Sequence[Event]) -> None:
        """Fold the next events of the session (canonical order); may be called repeatedly."""
        n = len(events)
        t0 = self.t0
        inter = self.inter_s
        cap = len(inter)
        chats, likes, last_ts = self.chats, self.likes, self.last_ts
        ended = self.end >= 0
        self.folded += n
        for ev in events:
            t = type(ev)
            ts = ev.ts
            if t is Chat or t is Like:
                if not ended:
                    c = 1 if t is Chat else ev.count  # type: ignore[union-attr]
                    if t is Chat:
                        chats += 1
                    else:
                        likes += c
                    sec = (ts - t0) // 1000
                    if 0 <= sec < cap:
                        inter[sec] += c
                    elif 0 <= sec < _INTER_CAP:
                        inter.extend([0] * (max(sec + 1, cap + 3600) - cap))
                        cap = len(inter)
                        inter[sec] += c
                    else:
                        self.inter_x[sec] += c
                    if ts > last_ts:
                        last_ts = ts
                continue
            if t is Viewers:
                if not ended:
                    self.viewers.append((ts, ev.online))  # type: ignore[union-attr]
                    self.entered += ev.entered  # type: ignore[union-attr]
            elif t is CartAdd:
                if not ended:
                    k = self._sku(ev.sku_id)  # type: ignore[union-attr]
                    if k is not None:
                        self.cart += 1
                        k.cart += 1
            elif t is Order:
                self._order(ev)  # type: ignore[arg-type]
            elif t is SessionStart:
                if ev.session_id == self.sid and not self.skus:  # type: ignore[union-attr]
                    for it in ev.lineup:  # type: ignore[union-attr]
                        self.skus[it.sku_id] = _Sku(it.sku_id, it.name, it.role, it.price_cents,
                                                    it.stock)
            elif t is SkuOnAir:
                if not ended and ev.sku_id in self.skus:  # type: ignore[union-attr]
                    self._off_air(ts)
                    self.on_air, self.on_air_since = ev.sku_id, ts  # type: ignore[union-attr]
            elif t is StockSet:
                k = self._sku(ev.sku_id)  # type: ignore[union-attr]
                if not ended and k is not None:
                    new = ev.stock  # type: ignore[union-attr]
                    if new > k.stock:
                        k.raises.append(ts)
                    if new == 0 and k.held_since < 0:
                        k.held_since = ts
                        k.held_periods += 1
                    elif new > 0 and k.held_since >= 0:
                        k.held_ms += ts - k.held_since
                        k.held_since = -1
                    k.stock = new
            elif t is SessionEnd:
                if not ended:
                    self._close(ts)
            if not ended:
                if ts > last_ts:
                    last_ts = ts
                ended = self.end >= 0
        self.chats, self.likes, self.last_ts = chats, likes, last_ts

    def close(self) -> None:
        """The session's events are all folded: an unended session ends at its last event."""
        if self.end < 0:
            self._close(self.last_ts)

    def _off_air(self, ts: int) -> None:
        if self.on_air is not None:
            self.skus[self.on_air].on_air_ms += max(0, ts - self.on_air_since)
            self.on_air = None

    def _close(self, ts: int) -> None:
        self.end = ts
        self._off_air(ts)
        for k in self.skus.values():
            if k.held_since >= 0:
                k.held_ms += ts - k.held_since
                k.held_since = -1

    def _order(self, ev: Order) -> None:
        k = self.skus.get(ev.sku_id)
        if k is None:
            return
        rec = self.order_of.get(ev.order_id)
        if rec is None:
            if self.end >= 0 and ev.ts > self.end:
                return  # placed after the show: not this session's
            rec = self.order_of[ev.order_id] = _Ord(ev)
            if ev.status != "cancelled":
                rec.placed = True
                k.orders += 1
                k.units += ev.qty
                k.sales.append((ev.ts, ev.qty))
                if 0 < k.stock <= ev.qty:
                    k.sellouts += 1
                k.stock = max(0, k.stock - ev.qty)
        if rec.cancelled:
            return
        if ev.status == "paid":
            rec.paid = True
        elif ev.status == "cancelled":
            rec.cancelled = True
            if rec.placed:
                k.units -= rec.qty
                k.sales.append((ev.ts, -rec.qty))
                k.stock += rec.qty

    # ------------------------------------------------------------------ figures

    def _online_integral(self, a: int, b: int) -> float:
        """∫ online dt (viewer-ms) over [a, b)."""
        v = self.viewers
        if b <= a:
            return 0.0
        i = bisect.bisect_right(v, (a, 1 << 62)) - 1
        total = 0.0
        cur_t = a
        cur = v[i][1] if i >= 0 else 0
        j = i + 1
        while j < len(v) and v[j][0] < b:
            total += cur * (v[j][0] - cur_t)
            cur_t, cur = v[j][0], v[j][1]
            j += 1
        total += cur * (b - cur_t)
        return total

    def _online_at(self, ts: int) -> int:
        i = bisect.bisect_right(self.viewers, (ts, 1 << 62)) - 1
        return self.viewers[i][1] if i >= 0 else 0

    def _inter_rate(self, ts: int) -> float:
        """Interactions per minute over the minute before ``ts``."""
        s = (ts - self.t0) // 1000
        inter, x = self.inter_s, self.inter_x
        cap = len(inter)
        return float(sum(inter[i] if 0 <= i < cap else x.get(i, 0) for i in range(s - 60, s)))

    def finish(self, room_id: str, stats: list[RoomStats], cues: list[Cue], acks: list[Ack],
               dls: Counter[str]) -> Report:
        t0, t1 = self.t0, max(self.end, self.t0)
        dur_ms = t1 - t0
        vms = self._online_integral(t0, t1)
        paid = [r for r in self.order_of.values() if r.paid and not r.cancelled]
        created = sum(1 for r in self.order_of.values() if r.placed)
        gmv = sum(r.amount for r in paid)
        for r in paid:
            self.skus[r.sku].gmv += r.amount
        buyers = len({r.user for r in paid})
        uv = self.viewers[0][1] + self.entered if self.viewers else None
        vmin = vms / MINUTE_MS
        summary = Summary(
            started_ts=t0, ended_ts=t1, duration_s=dur_ms / 1000,
            peak_online=max((o for _, o in self.viewers), default=0),
            avg_online=vms / dur_ms if dur_ms else 0.0, viewer_minutes=vmin,
            chats=self.chats, likes=self.likes, interactions=self.chats + self.likes,
            cart_adds=self.cart, orders_created=created, orders_paid=len(paid),
            orders_cancelled=sum(1 for r in self.order_of.values() if r.cancelled),
            units=sum(k.units for k in self.skus.values()), gmv_cents=gmv, buyers=buyers,
            unique_viewers=uv, conv_buyers_viewers=_ratio(buyers, uv or 0),
            conv_orders_cart=_ratio(created, self.cart),
            gpm_cents=gmv * 1000 / vmin if vmin else None,
        )
        minutes = self._minutes(stats, paid)
        skus = [SkuRow(k.sku_id, k.name, k.role, k.price, k.on_air_ms / 1000, k.cart, k.orders,
                       k.units, k.gmv, _ratio(k.orders, k.cart), k.sellouts, k.held_periods,
                       k.held_ms / 1000) for k in self.skus.values()]
        rows = self._cue_rows(cues, acks)
        return Report(room_id, self.sid, summary, minutes, _tier_spans(stats, t1), skus, rows, dls,
                      0)

    def _minutes(self, stats: list[RoomStats], paid: list[_Ord]) -> list[Minute]:
        t0, t1 = self.t0, max(self.end, self.t0)
        n = max(1, -(-(t1 - t0) // MINUTE_MS))
        inter = [0] * n
        for m in range(min(n, -(-len(self.inter_s) // 60))):
            inter[m] = sum(self.inter_s[m * 60:m * 60 + 60])
        for sec, c in self.inter_x.items():
            m = sec // 60
            if 0 <= m < n:
                inter[m] += c
        gmv = [0] * n
        orders = [0] * n
        tiers: list[str | None] = [None] * n
        for s in stats:
            m = (s.ts - t0) // MINUTE_MS
            if 0 <= m < n:
                tiers[m] = s.tier  # the last snapshot of the minute
        for k in self.skus.values():
            for ts, q in k.sales:
                m = (ts - t0) // MINUTE_MS
                if 0 <= m < n and q > 0:
                    orders[m] += 1
        for r in paid:  # GMV in the minute the order was placed (the sale's moment)
            m = min(n - 1, max(0, (r.ts - t0) // MINUTE_MS))
            gmv[m] += r.amount
        return [Minute(i, t0 + i * MINUTE_MS,
                       self._online_integral(t0 + i * MINUTE_MS, min(t1, t0 + (i + 1) * MINUTE_MS))
                       / max(1, min(t1, t0 + (i + 1) * MINUTE_MS) - (t0 + i * MINUTE_MS)),
                       inter[i], gmv[i], orders[i], tiers[i]) for i in range(n)]

    def _cue_rows(self, cues: list[Cue], acks: list[Ack]) -> list[CueRow]:
        first: dict[tuple[str, str], Ack] = {}
        for a in sorted(acks, key=lambda a: a.ts):
            first.setdefault((a.cue_id, a.action), a)
        seen: set[str] = set()
        rows = []
        for c in sorted(cues, key=lambda c: c.ts):
            if c.cue_id in seen:
                continue
            seen.add(c.cue_id)
            ref = c.emitted_at or c.ts

            def when(action: str, c: Cue = c, ref: int = ref) -> tuple[float | None, str | None]:
                a = first.get((c.cue_id, action))
                return ((a.ts - ref) / 1000, a.by) if a is not None else (None, None)

            ack_s, ack_by = when("ack")
            done_s, done_by = when("done")
            dis_s, dis_by = when("dismiss")
            rows.append(CueRow(c, (c.ts - self.t0) / 1000, ack_s, ack_by, done_s, done_by, dis_s,
                               dis_by, self._effect(c)))
        return rows

    def _effect(self, c: Cue) -> Effect | None:
        rule = EFFECT_RULES.get(c.kind)
        if rule is None:
            return None
        if rule == "units_2min":
            k = self.skus.get(c.sku_id or "")
            if k is None:
                return None
            i = bisect.bisect_left(k.raises, c.ts)
            if i >= len(k.raises) or k.raises[i] > c.ts + RESPONSE_WINDOW_MS:
                return Effect("units_2min", None, None, None, None, "not_acted")
            back = k.raises[i]
            # units of the orders placed in each window (a later cancel does not unsell them)
            before = k.units_placed(back - EFFECT_WINDOW_MS, back)
            after = k.units_placed(back, back + EFFECT_WINDOW_MS)
            if back + EFFECT_WINDOW_MS > self.end:
                return Effect("units_2min", back, before, after, None, "no_data")
            ch, verdict = _verdict(before, after)
            return Effect("units_2min", back, before, after, ch, verdict)
        later = c.ts + SWITCH_AFTER_MS
        o0, o1 = self._online_at(c.ts), self._online_at(later)
        r0, r1 = self._inter_rate(c.ts), self._inter_rate(later)
        if later > self.end:
            return Effect("online_3min", later, o0, o1, None, "no_data", r0, r1)
        ch, verdict = _verdict(o0, o1)
        return Effect("online_3min", later, o0, o1, ch, verdict, r0, r1)


def _tier_spans(stats: list[RoomStats], end: int) -> list[TierSpan]:
    spans: list[TierSpan] = []
    cur: str | None = None
    start = 0
    for s in stats:
        if s.tier != cur:
            if cur is not None:
                spans.append(TierSpan(start, s.ts, cur))
            cur, start = s.tier, s.ts
    if cur is not None:
        spans.append(TierSpan(start, max(end, start), cur))
    return spans

