"""The decision core: one room's events in, cues, room stats and rejections out.

``step(state, event, pb)`` is a pure function of the room's event sequence and the playbook:
time comes only from ``event.ts``, ids from hashlib, iteration in lineup / first-seen order.

Ownership: ``step`` updates ``state`` in place (speed) and hands it back in ``StepResult.state``,
like a move. Callers use the returned state and never the reference they passed in (today they
are the same object; dump it with :func:`~stream.core.state.dump_state` to keep a copy).

When things are looked at
-------------------------
* chat / like / viewers only touch the current bucket (a few µs); an intent chat also re-checks
  the on-air SKU when its link is empty;
* cart_add / order re-check that SKU's cues (and unpaid orders) at once;
* sku_on_air / stock_set / session_start re-check everything;
* a *tick* re-checks everything when an event's ts reaches ``state.due``: the next stats interval
  (the tier is updated and a RoomStats emitted there) or an earlier deadline (a cooldown that
  runs out while its condition holds, a "stays down for N s" rule). So a cue fires at the first
  event at or after the moment its trigger holds.

Context rules (rejections return a short, safe reason and leave the state unchanged)
-----------------------------------------------------------------------------------
* event for another room; ts more than ``bounds.max_behind_ms`` behind the room's max ts, or more
  than ``bounds.max_ahead_ms`` ahead (a session_start of a *new* session may jump ahead);
* order / cart_add / stock_set / sku_on_air / session_end before any session_start;
* stock_set / sku_on_air after session_end; SKUs not in the session's lineup.
* chat / like / viewers outside a running session are ignored (valid, but describe no session;
  not dead-lettered). Orders and cart adds after session_end still count (late payments), but
  no cue or stats is emitted once the session has ended.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import add
from typing import Any, Final
from zlib import crc32

from schemas.events import (
    CartAdd, Chat, Event, Like, Order, RoomReset, SessionEnd, SessionStart, SkuOnAir, StockSet,
    Viewers,
)
from schemas.outputs import Cue, CueKind, RoomStats, Severity, build_room_stats, build_sku_stats

from .rules import HEADLINE_MAX, TIER_LABELS, Playbook
from .state import (
    O_AMOUNT, O_CREATED, O_LAST, O_QTY, O_SKU, O_STATUS, R_CANCELLED, R_CART, R_CHAT, R_ENTERED,
    R_GMV, R_INTENT, R_LEFT, R_LEN, R_LIKES, R_MISSED, R_ONLINE, R_ORDERS, R_PAID, R_STAMP,
    R_UNITS, R_UNPAID, S_CART, S_CART_QTY, S_LEN, S_ORDERS, S_STAMP, S_UNITS, ST_CANCELLED,
    ST_CREATED, ST_PAID, EMPTY_ROOM_SLOT, EMPTY_SKU_SLOT, Episode, RoomState, SkuState, empty_room_slot,
    empty_sku_slot,
)

__all__ = ["StepResult", "step", "step_many", "snapshot"]

_RANK: Final = {"cold": 0, "warm": 1, "hot": 2}
_MIN: Final = 60_000.0


@dataclass(slots=True)
class StepResult:
    """What one step (or a batch) produced. ``state`` is the room's state to keep."""

    state: RoomState
    cues: list[Cue] = field(default_factory=list)
    stats: list[RoomStats] = field(default_factory=list)
    rejected: list[tuple[Event, str]] = field(default_factory=list)
    #: "all", "last" or "none" (see :func:`step_many`)
    snapshots: str = "all"
    #: a stats tick happened whose snapshot is not built yet ("last" mode)
    snapshot_due: bool = False


def step(state: RoomState, event: Event, pb: Playbook) -> StepResult:
    """Apply one event to the room. Never raises for a valid-by-schema event."""
    out = StepResult(state)
    _apply(state, event, pb, out)
    return out


def step_many(state: RoomState, events: Iterable[Event], pb: Playbook,
              snapshots: str = "all") -> StepResult:
    """Apply events in order; the same result as folding :func:`step` (concatenated outputs).

    State, cues and rejections never depend on ``snapshots``; only which room_stats are built:
    ``"all"``, one per stats tick (the backtest); ``"last"``, only the newest of the batch, from
    the state after it; ``"none"`` (the worker), none but a session's final one (at
    ``session_end``), and ``snapshot_due`` says a tick passed: the caller builds a snapshot with
    :func:`snapshot` when it actually sends one (a screen shows only the newest; building one
    per tick dominated a many-room worker's CPU).
    """
    out = StepResult(state, snapshots=snapshots)
    apply = _apply
    for ev in events:
        apply(state, ev, pb, out)
    if out.snapshot_due and snapshots == "last":
        out.snapshot_due = False
        out.stats.append(snapshot(state, pb))
    return out


def snapshot(state: RoomState, pb: Playbook, emitted_at: int = 0) -> RoomStats:
    """The room's room_stats snapshot now (at its latest event time), stamped ``emitted_at``
    (the caller's wall clock, epoch ms; 0 when not sent). Pure; no state change."""
    return _snapshot(state, state.max_ts, pb, _room_sums(state, state.n_short), emitted_at)


# --------------------------------------------------------------------------- dispatch and clock

def _apply(st: RoomState, ev: Event, pb: Playbook, out: StepResult) -> None:
    if ev.room_id != st.room_id:
        out.rejected.append((ev, "room_id: event belongs to another room's state"))
        return
    if type(ev) is RoomReset:  # an operator's reset: accepted whatever the room's clock says
        _reset(st)
        return
    ts = ev.ts
    mx = st.max_ts
    if mx:
        if ts < mx - pb.bounds.max_behind_ms:
            out.rejected.append((ev, "ts: too far behind the room's event time"))
            return
        if ts > mx + pb.bounds.max_ahead_ms and not (
                type(ev) is SessionStart and ev.session_id != st.session_id):
            out.rejected.append((ev, "ts: too far ahead of the room's event time"))
            return
    reason = _HANDLERS[ev.type](st, ev, pb, out)
    if reason is not None:
        if reason:
            out.rejected.append((ev, reason))
        return
    if ts >= st.due and st.active:
        _tick(st, ts, pb, out)


def _reset(st: RoomState) -> None:
    """Start the room over, in place (callers hold the state object)."""
    RoomState.__init__(st, st.room_id)  # every field as a new room's


def _clock(st: RoomState, ts: int, pb: Playbook) -> None:
    """Advance the room's event time to ``ts`` (no-op for a late event)."""
    if ts > st.max_ts:
        st.max_ts = ts
        b = ts // st.bucket_ms
        if b > st.cur_b:
            _advance(st, b, pb)


def _advance(st: RoomState, b: int, pb: Playbook) -> None:
    """A new bucket begins: fold the closed time into the session baseline, forget old orders."""
    if st.active and st.cur_b >= 0 and st.online > 0:
        gap = min(b - st.cur_b, st.n_long)
        sums = _room_sums(st, st.n_short)
        span = _span(st, st.max_ts, st.n_short)
        st.base_online_sum += st.online * gap
        st.base_ipv_sum += _ipv(sums, span, st.online, pb) * gap
        st.base_n += gap
    if st.active and st.cur_b > st.base_skip_b:
        _fold_intent_baseline(st)
    st.cur_b = b
    orders = st.orders
    if orders:
        horizon = st.max_ts - pb.bounds.order_horizon_ms
        while orders:
            oid = next(iter(orders))
            if orders[oid][O_LAST] >= horizon:
                break
            del orders[oid]


def _fold_intent_baseline(st: RoomState) -> None:
    """The bucket that just closed counts toward the intent baseline if the SKU on air (if any)
    had stock at its close: the room's ordinary selling chatter, not a hold or a sell-out."""
    if st.on_air >= 0 and st.skus[st.on_air].stock == 0:
        return
    slot = st.ring[st.cur_b % st.n_long]
    if slot[R_STAMP] != st.cur_b:
        return
    st.base_chat += slot[R_CHAT]
    st.base_intent += slot[R_INTENT]
    st.base_missed += slot[R_MISSED]
    st.base_ms += st.bucket_ms


def _room_slot(st: RoomState, b: int) -> list[int] | None:
    """The slot of bucket ``b`` (reset if it held an older bucket); None if ``b`` is too old.
    The caller writes to it: a closed bucket's change voids the remembered window sums."""
    if b != st.cur_b:
        st.sums_memo = st.uniq_memo = None
    ring = st.ring
    i = b % st.n_long
    slot = ring[i]
    if slot[R_STAMP] == b:
        return slot
    if slot[R_STAMP] > b or b <= st.cur_b - st.n_long:
        return None
    slot = empty_room_slot()
    slot[R_STAMP] = b
    ring[i] = slot
    return slot


def _sku_slot(st: RoomState, sku: SkuState, b: int) -> list[int] | None:
    # the caller writes to the slot: the current bucket's write voids only the remembered
    # total, a closed bucket's (a late event) the closed buckets' part too
    memo = sku.memo
    if memo is not None:
        sku.memo = (memo[0], memo[1], None) if b == st.cur_b == memo[0] else None
    ring = sku.ring
    n = st.n_short
    if ring is None:
        ring = sku.ring = [EMPTY_SKU_SLOT] * n
    i = b % n
    slot = ring[i]
    if slot[S_STAMP] == b:
        return slot
    if slot[S_STAMP] > b or b <= st.cur_b - n:
        return None
    slot = empty_sku_slot()
    slot[S_STAMP] = b
    ring[i] = slot
    return slot


# --------------------------------------------------------------------------- audience events

def _on_chat(st: RoomState, ev: Chat, pb: Playbook, out: StepResult) -> str | None:
    if not st.active:
        return ""
    ts = ev.ts
    if ts > st.max_ts:
        _clock(st, ts, pb)
    b = ts // st.bucket_ms
    slot = st.ring[b % st.n_long]
    if slot[R_STAMP] != b:
        slot2 = _room_slot(st, b)
        if slot2 is None:
            return None
        slot = slot2
    elif b != st.cur_b:
        st.sums_memo = st.uniq_memo = None  # a late chat in a closed bucket
    slot[R_CHAT] += 1
    j = b % st.n_short
    bits = st.uniq_bits[j]
    if bits is None or st.uniq_stamp[j] != b:
        if st.uniq_stamp[j] > b:
            bits = None
        else:
            bits = st.uniq_bits[j] = bytearray(st.unique_bits >> 3)
            st.uniq_stamp[j] = b
    if bits is not None:
        h = ((crc32(ev.user_id.encode()) * 0x9E3779B1) & 0xFFFFFFFF) >> st.uniq_shift
        bits[h >> 3] |= 1 << (h & 7)
    rx = pb.intent_re
    if rx is not None:
        text = ev.text.lower()
        if rx.search(text) is not None:
            slot[R_INTENT] += 1
            mrx = pb.missed_re
            if mrx is not None and mrx.search(text) is not None:
                slot[R_MISSED] += 1
            k = st.on_air
            if k >= 0 and st.skus[k].stock == 0:
                _eval_sku(st, k, pb, out, None)
    return None


def _on_like(st: RoomState, ev: Like, pb: Playbook, out: StepResult) -> str | None:
    if not st.active:
        return ""
    if ev.ts > st.max_ts:
        _clock(st, ev.ts, pb)
    slot = _room_slot(st, ev.ts // st.bucket_ms)
    if slot is not None:
        slot[R_LIKES] += ev.count
    return None


def _on_viewers(st: RoomState, ev: Viewers, pb: Playbook, out: StepResult) -> str | None:
    if not st.active:
        return ""
    ts = ev.ts
    _clock(st, ts, pb)
    slot = _room_slot(st, ts // st.bucket_ms)
    if slot is not None:
        slot[R_ENTERED] += ev.entered
        slot[R_LEFT] += ev.left
    if ts >= st.max_ts:  # a late sample never overrides the current count
        st.online = ev.online
        if slot is not None:
            slot[R_ONLINE] = ev.online
    return None


# --------------------------------------------------------------------------- room events

def _new_session(st: RoomState, ev: SessionStart, pb: Playbook) -> None:
    w = pb.windows
    # what is remembered was derived from the old session's ring (a restart in the same bucket
    # would otherwise read the old closed buckets' sums; a restored state has no memo)
    st.memo.clear()
    st.sums_memo = st.uniq_memo = None
    st.session_id = ev.session_id
    st.active, st.ended, st.started_ts = True, False, ev.ts
    st.bucket_ms = w.bucket_ms
    st.n_short = w.short_ms // w.bucket_ms
    st.n_long = w.long_ms // w.bucket_ms
    st.unique_bits = w.unique_bits
    st.uniq_shift = 33 - w.unique_bits.bit_length()
    st.stats_ms = pb.stats_interval_ms
    st.ring = [EMPTY_ROOM_SLOT] * st.n_long
    st.uniq_stamp = [-1] * st.n_short
    st.uniq_bits = [None] * st.n_short
    st.skus, st.sku_index = [], {}
    st.on_air, st.on_air_since, st.online = -1, 0, 0
    st.orders = {}
    st.gmv_total = 0
    st.tier, st.prev_tier, st.tier_since, st.cand, st.cand_since = "warm", "warm", ev.ts, "", 0
    st.base_online_sum, st.base_ipv_sum, st.base_n = 0.0, 0.0, 0
    st.stats_k, st.due = -1, 0
    st.episodes = {}
    st.base_chat = st.base_intent = st.base_missed = st.base_ms = 0
    st.base_skip_b = -1
    st.max_ts = max(st.max_ts, ev.ts)
    st.cur_b = st.max_ts // st.bucket_ms


def _on_session_start(st: RoomState, ev: SessionStart, pb: Playbook, out: StepResult) -> str | None:
    if ev.session_id != st.session_id:
        _new_session(st, ev, pb)
    else:  # re-announced: resume, merge the lineup, keep counted stock
        st.active, st.ended = True, False
        _clock(st, ev.ts, pb)
    cap = pb.bounds.max_skus
    for item in ev.lineup:
        i = st.sku_index.get(item.sku_id)
        if i is None:
            if len(st.skus) >= cap:
                continue
            st.sku_index[item.sku_id] = len(st.skus)
            sku = SkuState(item.sku_id, item.name, item.role, item.price_cents, item.stock)
            if item.stock == 0:
                sku.zero_since = ev.ts
            st.skus.append(sku)
        else:
            k = st.skus[i]
            k.name, k.role, k.price_cents = item.name, item.role, item.price_cents
    _evaluate_all(st, pb, out)
    return None


def _session_problem(st: RoomState) -> str | None:
    if not st.session_id:
        return "no session started in this room"
    if not st.active:
        return "session has ended"
    return None


def _on_sku_on_air(st: RoomState, ev: SkuOnAir, pb: Playbook, out: StepResult) -> str | None:
    problem = _session_problem(st)
    if problem:
        return problem
    i = st.sku_index.get(ev.sku_id)
    if i is None:
        return "sku_id: not in the session's lineup"
    _clock(st, ev.ts, pb)
    if st.on_air != i:
        st.on_air, st.on_air_since = i, ev.ts
        st.base_skip_b = st.cur_b
    _evaluate_all(st, pb, out)
    return None


def _on_stock_set(st: RoomState, ev: StockSet, pb: Playbook, out: StepResult) -> str | None:
    problem = _session_problem(st)
    if problem:
        return problem
    i = st.sku_index.get(ev.sku_id)
    if i is None:
        return "sku_id: not in the session's lineup"
    _clock(st, ev.ts, pb)
    k = st.skus[i]
    if ev.stock == 0:
        if k.stock > 0:
            k.zero_since = ev.ts
    else:
        # Stock put back: the SKU's selling and release episodes are over (a new one may start
        # at once, and speaks once its cooldown has passed).
        for key in (k.push_key, k.release_key):
            ep = st.episodes.get(key)
            if ep is not None:
                ep.active = False
    k.stock, k.managed, k.held = ev.stock, True, ev.stock == 0
    st.base_skip_b = st.cur_b
    _evaluate_all(st, pb, out)
    return None


def _on_session_end(st: RoomState, ev: SessionEnd, pb: Playbook, out: StepResult) -> str | None:
    if not st.session_id:
        return "no session started in this room"
    if not st.active:
        return ""  # a repeated session_end changes nothing
    _clock(st, ev.ts, pb)
    now = st.max_ts
    out.snapshot_due = False
    out.stats.append(_snapshot(st, now, pb, _room_sums(st, st.n_short)))
    st.stats_k = now // st.stats_ms
    st.active, st.ended = False, True
    return None


# --------------------------------------------------------------------------- commerce events

def _on_cart_add(st: RoomState, ev: CartAdd, pb: Playbook, out: StepResult) -> str | None:
    if not st.session_id:
        return "no session started in this room"
    i = st.sku_index.get(ev.sku_id)
    if i is None:
        return "sku_id: not in the session's lineup"
    _clock(st, ev.ts, pb)
    b = ev.ts // st.bucket_ms
    slot = _room_slot(st, b)
    if slot is not None:
        slot[R_CART] += 1
    k = st.skus[i]
    sslot = _sku_slot(st, k, b)
    if sslot is not None:
        sslot[S_CART] += 1
        sslot[S_CART_QTY] += ev.qty
    if st.active:
        _eval_sku(st, i, pb, out, None)
    return None


def _on_order(st: RoomState, ev: Order, pb: Playbook, out: StepResult) -> str | None:
    if not st.session_id:
        return "no session started in this room"
    i = st.sku_index.get(ev.sku_id)
    if i is None:
        return "sku_id: not in the session's lineup"
    _clock(st, ev.ts, pb)
    ts = ev.ts
    orders = st.orders
    rec = orders.pop(ev.order_id, None)
    if rec is None:
        status = ev.status
        if status == "cancelled":  # never saw it placed: nothing to give back
            rec = [i, ev.qty, ev.amount_cents, ST_CANCELLED, ts, ts]
        else:
            k = st.skus[i]
            if 0 < k.stock <= ev.qty:
                k.zero_since = ts
            k.stock = max(0, k.stock - ev.qty)
            k.sold += ev.qty
            st.gmv_total += ev.amount_cents
            b = ts // st.bucket_ms
            slot = _room_slot(st, b)
            if slot is not None:
                slot[R_ORDERS] += 1
                slot[R_UNITS] += ev.qty
                slot[R_GMV] += ev.amount_cents
                if status == "paid":
                    slot[R_PAID] += 1
                else:
                    slot[R_UNPAID] += 1
                _unpaid_moved(st, b, 1, 0 if status == "paid" else 1)
            sslot = _sku_slot(st, k, b)
            if sslot is not None:
                sslot[S_ORDERS] += 1
                sslot[S_UNITS] += ev.qty
            rec = [i, ev.qty, ev.amount_cents, ST_PAID if status == "paid" else ST_CREATED, ts, ts]
        if len(orders) >= pb.bounds.max_orders:
            del orders[next(iter(orders))]
    else:
        old = rec[O_STATUS]
        if old != ST_CANCELLED and ev.status != "created":
            cslot = _room_slot(st, rec[O_CREATED] // st.bucket_ms)
            nslot = _room_slot(st, ts // st.bucket_ms)
            if ev.status == "paid" and old == ST_CREATED:
                rec[O_STATUS] = ST_PAID
                if cslot is not None and cslot[R_UNPAID] > 0:
                    cslot[R_UNPAID] -= 1
                    _unpaid_moved(st, cslot[R_STAMP], 0, -1)
                if nslot is not None:
                    nslot[R_PAID] += 1
            elif ev.status == "cancelled":
                rec[O_STATUS] = ST_CANCELLED
                k = st.skus[rec[O_SKU]]
                k.stock += rec[O_QTY]
                k.sold = max(0, k.sold - rec[O_QTY])
                if k.stock > 0:
                    k.held = False
                st.gmv_total = max(0, st.gmv_total - rec[O_AMOUNT])
                if cslot is not None:
                    cslot[R_GMV] = max(0, cslot[R_GMV] - rec[O_AMOUNT])
                    if old == ST_CREATED and cslot[R_UNPAID] > 0:
                        cslot[R_UNPAID] -= 1
                        _unpaid_moved(st, cslot[R_STAMP], 0, -1)
                if nslot is not None:
                    nslot[R_CANCELLED] += 1
        if ts > rec[O_LAST]:
            rec[O_LAST] = ts
    orders[ev.order_id] = rec  # (re)inserted last: LRU order
    if st.active:
        _eval_sku(st, rec[O_SKU], pb, out, None)
        _eval_unpaid(st, pb, out)
    return None


_Handler = Callable[[RoomState, Any, Playbook, StepResult], "str | None"]
_HANDLERS: Final[dict[str, _Handler]] = {
    "chat": _on_chat,
    "like": _on_like,
    "viewers": _on_viewers,
    "session_start": _on_session_start,
    "sku_on_air": _on_sku_on_air,
    "stock_set": _on_stock_set,
    "session_end": _on_session_end,
    "cart_add": _on_cart_add,
    "order": _on_order,
}


# --------------------------------------------------------------------------- figures

def _stamped(ring: list[list[int]], n: int, lo: int, hi: int) -> list[list[int]]:
    """The slots of ``ring`` (``n`` slots) holding buckets ``lo`` .. ``hi - 1``: a bucket ``b`` can
    only sit at ``ring[b % n]``, stamped ``b`` at index 0 (``R_STAMP``, ``S_STAMP``), so a window
    reads only its own positions, not the whole ring."""
    out = []
    for b in range(lo, hi):
        slot = ring[b % n]
        if slot[0] == b:
            out.append(slot)
    return out


def _room_sums(st: RoomState, nb: int) -> list[int]:
    """Counters summed over the last ``nb`` (<= n_long) buckets (indexes R_STAMP and R_ONLINE
    unused, 0). A bucket ``b`` can only sit at ``ring[b % n_long]``: look at those ``nb``
    positions, not the whole ring, and sum the columns in C. The closed buckets' part is
    remembered (``sums_memo``) until the bucket moves on or a late event changes one: a tick
    then adds only the current bucket (py-spy: window sums were 16 % of the core)."""
    ring, n, cur = st.ring, st.n_long, st.cur_b
    memo = st.sums_memo
    if memo is not None and memo[0] == cur and memo[1] == nb:
        closed = memo[2]
    else:
        slots = _stamped(ring, n, cur - nb + 1, cur)
        closed = list(map(sum, zip(*slots))) if slots else [0] * R_LEN
        st.sums_memo = (cur, nb, closed)
    slot = ring[cur % n]
    tot = list(map(add, closed, slot)) if slot[R_STAMP] == cur else closed[:]
    tot[R_STAMP] = tot[R_ONLINE] = 0
    return tot


def _sku_sums(st: RoomState, sku: SkuState) -> list[int]:
    """The SKU's short-window sums (callers only read the list). Like :func:`_room_sums`, the
    closed buckets' part is remembered until the bucket moves on or a late event changes one,
    and the total until the SKU's ring is written again: a cart add or order in the current
    bucket costs the next call one addition of two slots, not a pass over the ring (py-spy:
    the pass was 5 % of the in-process many-room pipeline)."""
    memo = sku.memo
    cur = st.cur_b
    ring = sku.ring
    if memo is not None and memo[0] == cur:
        tot = memo[2]
        if tot is not None:
            return tot
        closed = memo[1]
    elif ring is None:
        return [0] * S_LEN
    else:
        slots = _stamped(ring, st.n_short, cur - st.n_short + 1, cur)
        closed = list(map(sum, zip(*slots))) if slots else [0] * S_LEN
    assert ring is not None  # a memo is only made for a SKU with a ring
    slot = ring[cur % st.n_short]
    tot = list(map(add, closed, slot)) if slot[S_STAMP] == cur else closed[:]
    tot[S_STAMP] = 0
    sku.memo = (cur, closed, tot)
    return tot


def _span(st: RoomState, now: int, nb: int) -> float:
    """Milliseconds the last ``nb`` buckets cover up to ``now`` (at least one bucket)."""
    bucket = st.bucket_ms
    begin = (st.cur_b - nb + 1) * bucket
    if st.started_ts > begin:  # conditionals, not max(): called for every SKU of every tick
        begin = st.started_ts
    span = now - begin
    return float(span if span > bucket else bucket)


def _ipv(sums: list[int], span: float, online: int, pb: Playbook) -> float:
    """Interactions (chat + weighted likes) per minute per viewer."""
    per_min = (sums[R_CHAT] + pb.tier.like_weight * sums[R_LIKES]) * _MIN / span
    return per_min / max(online, 1)


def _unique(st: RoomState) -> int:
    """Distinct chatters over the short window (linear counting on the OR of its buckets'
    bitmaps). The closed buckets' OR is remembered (``uniq_memo``) until the bucket moves on or a
    late chat changes one: a snapshot then ORs in only the current bucket (py-spy: 12 int
    conversions of 256 bytes were a third of a snapshot)."""
    cur = st.cur_b
    memo = st.uniq_memo
    if memo is not None and memo[0] == cur:
        acc = memo[1]
    else:
        acc = 0
        lo = cur - st.n_short + 1
        for stamp, bits in zip(st.uniq_stamp, st.uniq_bits):
            if bits is not None and lo <= stamp < cur:
                acc |= int.from_bytes(bits, "little")
        st.uniq_memo = (cur, acc)
    j = cur % st.n_short if st.uniq_stamp else -1
    if j >= 0 and st.uniq_stamp[j] == cur:
        bits = st.uniq_bits[j]
        if bits is not None:
            acc |= int.from_bytes(bits, "little")
    m = st.unique_bits
    zeros = m - acc.bit_count()
    if zeros == m:
        return 0
    return round(m * math.log(m / max(zeros, 1)))


def _r(x: float) -> float:
    return round(x, 3)


# --------------------------------------------------------------------------- tier

def _score(st: RoomState, sums: list[int], span: float, pb: Playbook) -> float:
    t = pb.tier
    online = st.online
    ipv = _ipv(sums, span, online, pb)
    if t.baseline == "absolute":
        base_on, base_ipv = float(t.ref_online), t.ref_ipv
    elif st.base_n:
        base_on, base_ipv = st.base_online_sum / st.base_n, st.base_ipv_sum / st.base_n
    else:
        base_on, base_ipv = float(online), ipv
    r1 = min(3.0, online / base_on) if base_on > 0 else 1.0
    r2 = min(3.0, ipv / base_ipv) if base_ipv > 0 else 1.0
    return t.online_weight * r1 + (1.0 - t.online_weight) * r2


def _update_tier(st: RoomState, now: int, sums: list[int], span: float, pb: Playbook) -> None:
    t = pb.tier
    if now - st.started_ts < t.warmup_ms:
        st.cand = ""
        return
    score = _score(st, sums, span, pb)
    cur = st.tier
    if score >= (t.hot_exit if cur == "hot" else t.hot_enter):
        raw = "hot"
    elif score <= (t.cold_exit if cur == "cold" else t.cold_enter):
        raw = "cold"
    else:
        raw = "warm"
    if raw == "hot" and st.online < t.hot_min_online:
        raw = "warm"
    if t.cold_max_online and st.online <= t.cold_max_online:
        raw = "cold"
    if raw == cur:
        st.cand = ""
        return
    if st.cand != raw:
        st.cand, st.cand_since = raw, now
    if now - st.cand_since >= t.confirm_ms and now - st.tier_since >= t.dwell_ms:
        st.prev_tier, st.tier, st.tier_since, st.cand = cur, raw, now, ""


# --------------------------------------------------------------------------- ticks and cues

def _tick(st: RoomState, ts: int, pb: Playbook, out: StepResult) -> None:
    now = st.max_ts
    k = now // st.stats_ms
    st.due = (k + 1) * st.stats_ms
    sums = _room_sums(st, st.n_short)
    if k > st.stats_k:
        _update_tier(st, now, sums, _span(st, now, st.n_short), pb)
    _evaluate_all(st, pb, out, sums)
    if k > st.stats_k:
        st.stats_k = k
        if out.snapshots != "all":
            out.snapshot_due = True
        else:
            out.stats.append(_snapshot(st, now, pb, sums))


def _evaluate_all(st: RoomState, pb: Playbook, out: StepResult,
                  sums: list[int] | None = None) -> None:
    if not st.active:
        return
    if sums is None:
        sums = _room_sums(st, st.n_short)
    _eval_room(st, pb, out, sums)
    eps = st.episodes
    for i, k in enumerate(st.skus):
        if k.ring is not None or i == st.on_air or k.push_key in eps or k.release_key in eps:
            _eval_sku(st, i, pb, out, sums)


def _fire(ep: Episode, cond: bool, now: int, st: RoomState, cooldown: int, end_ms: int,
          level: int, bad: float, factor: float) -> int:
    """Episode bookkeeping; returns 0 (quiet) or 1 + the cue's sequence number in its episode.

    Fires once per episode; within ``cooldown`` of the previous cue of this (kind, SKU) — in
    this episode or an earlier one — only if worse: a higher level, or the same level with
    badness × ``factor``. An episode ends once its condition has been false for ``end_ms``.
    """
    if not cond:
        if ep.active and now - ep.last_true >= end_ms:
            ep.active = False
        return 0
    if not ep.active or now - ep.last_true >= end_ms:
        ep.active, ep.start, ep.seq, ep.fired = True, now, 0, False
    ep.last_true = now
    worse = ep.last_fire > 0 and (
        level > ep.level or (level == ep.level and bad > 0 and bad >= ep.badness * factor))
    if ep.fired:
        fire = worse
    else:
        fire = ep.last_fire == 0 or now - ep.last_fire >= cooldown or worse
        if not fire and ep.last_fire + cooldown < st.due:
            st.due = ep.last_fire + cooldown
    if not fire:
        return 0
    ep.last_fire, ep.fired, ep.level, ep.badness = now, True, level, bad
    ep.seq += 1
    return ep.seq


def _episode(st: RoomState, key: str, cond: bool) -> Episode | None:
    ep = st.episodes.get(key)
    if ep is None and cond:
        ep = st.episodes[key] = Episode()
    return ep


def _sku_evidence(k: SkuState, on_air: bool, units_pm: float, cart_pm: float, intent_pm: float,
                  missed_pm: float, chat_pm: float) -> dict[str, Any]:
    """A SKU cue's evidence: built only when a cue fires (py-spy: 3 % when built every tick)."""
    ev: dict[str, Any] = {
        "stock": k.stock, "units_per_min": _r(units_pm), "cart_adds_per_min": _r(cart_pm),
        "on_air": on_air,
    }
    if on_air:
        ev["intent_per_min"] = _r(intent_pm)
        ev["missed_per_min"] = _r(missed_pm)
        ev["chat_per_min"] = _r(chat_pm)
    return ev


def _eval_sku(st: RoomState, i: int, pb: Playbook, out: StepResult,
              sums: list[int] | None) -> None:
    now = st.max_ts
    k = st.skus[i]
    ks = _sku_sums(st, k)
    span = _span(st, now, st.n_short)
    cart_pm = ks[S_CART] * _MIN / span
    units_pm = ks[S_UNITS] * _MIN / span
    on_air = st.on_air == i
    intent_pm = missed_pm = chat_pm = 0.0
    if on_air:
        if sums is None:
            sums = _room_sums(st, st.n_short)
        intent_pm = sums[R_INTENT] * _MIN / span
        missed_pm = sums[R_MISSED] * _MIN / span
        chat_pm = sums[R_CHAT] * _MIN / span
    weighted = intent_pm + pb.intent.missed_weight * missed_pm

    ps = pb.push_stock
    if ps.enabled:
        cond, level, eta, demand = False, 0, 0.0, 0.0
        if k.stock > 0:
            if units_pm > 0 and units_pm >= ps.min_units_per_min:
                eta = k.stock * 60.0 / units_pm
                cond = eta <= ps.eta_s
        elif not k.managed:
            demand = cart_pm + (weighted if on_air else 0.0)
            if (0 < cart_pm and cart_pm >= ps.out_min_cart_adds_per_min) or (
                    on_air and 0 < weighted and weighted >= ps.out_min_intent_per_min):
                cond, level = True, 1
        key = k.push_key
        ep = _episode(st, key, cond)
        if ep is not None:
            # Only a level counts as worse (selling out soon -> sold out): a falling ETA is the
            # normal course of a sell-down, so the episode gets one warn and one critical.
            seq = _fire(ep, cond, now, st, ps.cooldown_ms, ps.episode_end_ms, level, 0.0, 2.0)
            if seq:
                e = _sku_evidence(k, on_air, units_pm, cart_pm, intent_pm, missed_pm, chat_pm)
                if level == 0:
                    e["eta_s"] = _r(eta)
                    e["eta_threshold_s"] = ps.eta_s
                    e["min_units_per_min"] = ps.min_units_per_min
                else:
                    e["demand_per_min"] = _r(demand)
                values = _values(st, k, None, e)
                values["eta_s"] = str(max(1, round(eta)))
                _emit(st, pb, out, "push_stock", "push_stock_soon" if level == 0 else
                      "push_stock_out", "warn" if level == 0 else "critical", k, None, e,
                      values, ep, seq)

    ro = pb.release_orders
    if ro.enabled:
        cond, level = False, 0
        d: _Demand | None = None
        base = need = 0.0
        held_ms = now - k.zero_since
        if k.stock == 0 and k.managed:
            if held_ms >= ro.min_hold_ms:
                d = _since_empty(st, k, now, on_air, pb)
                base = _baseline_share(st, pb)
                need = max(ro.min_intent_share, ro.intent_vs_baseline * base)
                level = 1 if on_air and 0 < d.missed_pm and \
                    d.missed_pm >= ro.critical_missed_per_min else 0
                cond = level == 1 or (0 < d.cart_pm and d.cart_pm >= ro.min_cart_adds_per_min) \
                    or (on_air and 0 < d.weighted and d.weighted >= ro.min_intent_per_min
                        and d.share >= need)
            elif k.zero_since + ro.min_hold_ms < st.due and (on_air or k.ring is not None):
                st.due = k.zero_since + ro.min_hold_ms  # look again when the hold is long enough
        ep = _episode(st, k.release_key, cond)
        if ep is not None:
            seq = _fire(ep, cond, now, st, ro.cooldown_ms, ro.episode_end_ms, level, 0.0, 2.0)
            if seq and d is not None:
                # The figures that fired it: whole buckets since the link emptied.
                e = _sku_evidence(k, on_air, units_pm, cart_pm, intent_pm, missed_pm, chat_pm)
                e["held"] = k.held
                e["held_s"] = _r(held_ms / 1000)
                e["cart_adds_per_min"] = _r(d.cart_pm)
                if on_air:
                    e["intent_per_min"] = _r(d.intent_pm)
                    e["missed_per_min"] = _r(d.missed_pm)
                    e["chat_per_min"] = _r(d.chat_pm)
                e["weighted_intent_per_min"] = _r(d.weighted)
                e["intent_share"] = _r(d.share)
                e["baseline_intent_share"] = _r(base)
                e["required_intent_share"] = _r(need)
                e["demand_window_s"] = _r(d.span_ms / 1000)
                e["demand_per_min"] = _r(d.cart_pm + d.weighted)
                _emit(st, pb, out, "release_orders", "release_orders",
                      "critical" if level else "warn", k, None, e, _values(st, k, None, e),
                      ep, seq)


@dataclass(slots=True)
class _Demand:
    """Demand for an empty link over the whole buckets since it emptied (per minute)."""

    span_ms: float
    cart_pm: float
    intent_pm: float
    missed_pm: float
    chat_pm: float
    weighted: float
    share: float


def _since_empty(st: RoomState, k: SkuState, now: int, on_air: bool, pb: Playbook) -> _Demand:
    """Rates over the buckets after the one in which ``k``'s link emptied (the buckets of the
    short window at most; the current bucket if none is complete yet): what built up while it
    was empty, not the selling before it."""
    lo = max(k.zero_since // st.bucket_ms + 1, st.cur_b - st.n_short + 1)
    lo = min(lo, st.cur_b)
    begin = max(lo * st.bucket_ms, st.started_ts)
    span = float(max(now - begin, st.bucket_ms))
    f = _MIN / span
    # the <= n_short positions of lo..cur_b, not every slot of the long ring (py-spy: 3.6 % of
    # the many-room pipeline)
    cur = st.cur_b
    cart = 0
    sring = k.ring
    if sring is not None:
        for slot in _stamped(sring, st.n_short, lo, cur + 1):
            cart += slot[S_CART]
    chat = intent = missed = 0
    if on_air:
        for slot in _stamped(st.ring, st.n_long, lo, cur + 1):
            chat += slot[R_CHAT]
            intent += slot[R_INTENT]
            missed += slot[R_MISSED]
    weighted = (intent + pb.intent.missed_weight * missed) * f
    chat_pm = chat * f
    share = min(1.0, weighted / chat_pm) if chat_pm > 0 else 0.0
    return _Demand(span, cart * f, intent * f, missed * f, chat_pm, weighted, share)


def _baseline_share(st: RoomState, pb: Playbook) -> float:
    """The session's weighted intent share of chat while selling (the playbook's assumption
    until the session has ``release_orders.baseline_min_ms`` of it)."""
    ro = pb.release_orders
    if st.base_ms < ro.baseline_min_ms or st.base_chat <= 0:
        return ro.baseline_intent_share
    w = st.base_intent + pb.intent.missed_weight * st.base_missed
    return min(1.0, w / st.base_chat)


def _first_with_stock(st: RoomState, role: str) -> SkuState | None:
    for i, k in enumerate(st.skus):
        if k.role == role and k.stock > 0 and i != st.on_air:
            return k
    return None


def _room_evidence(st: RoomState) -> dict[str, Any]:
    return {"online": st.online, "tier": st.tier, "prev_tier": st.prev_tier, "tier_since": st.tier_since}


def _eval_room(st: RoomState, pb: Playbook, out: StepResult, sums: list[int]) -> None:
    now = st.max_ts
    cur = st.skus[st.on_air] if st.on_air >= 0 else None

    sw = pb.switch_to_traffic_driver
    if sw.enabled:
        cond, target = False, None
        drop = _RANK[st.prev_tier] - _RANK[st.tier]
        if cur is not None and cur.role != "traffic_driver" and drop > 0 and (
                st.tier == "cold" or drop >= sw.min_drop):
            since = max(st.tier_since, st.on_air_since)
            if now - since >= sw.after_ms:
                target = _first_with_stock(st, "traffic_driver")
                cond = target is not None
            elif since + sw.after_ms < st.due:
                st.due = since + sw.after_ms
        ep = _episode(st, "switch_to_traffic_driver|", cond)
        if ep is not None:
            seq = _fire(ep, cond, now, st, sw.cooldown_ms, sw.episode_end_ms,
                        2 - _RANK[st.tier], 0.0, 2.0)
            if seq and cur is not None and target is not None:
                e = _room_evidence(st)
                e["down_s"] = _r((now - max(st.tier_since, st.on_air_since)) / 1000)
                e["on_air_role"] = cur.role
                e["target_stock"] = target.stock
                _emit(st, pb, out, "switch_to_traffic_driver", "switch_to_traffic_driver",
                      "warn", cur, target, e, _values(st, cur, target, e), ep, seq)

    sp = pb.switch_to_profit
    if sp.enabled:
        cond, target = False, None
        if cur is not None and cur.role == "traffic_driver" and st.tier == "hot":
            since = max(st.tier_since, st.on_air_since)
            if now - since >= sp.after_ms:
                target = _first_with_stock(st, "profit")
                cond = target is not None
            elif since + sp.after_ms < st.due:
                st.due = since + sp.after_ms
        ep = _episode(st, "switch_to_profit|", cond)
        if ep is not None:
            seq = _fire(ep, cond, now, st, sp.cooldown_ms, sp.episode_end_ms, 0, 0.0, 2.0)
            if seq and cur is not None and target is not None:
                e = _room_evidence(st)
                e["on_air_s"] = _r((now - st.on_air_since) / 1000)
                e["target_stock"] = target.stock
                _emit(st, pb, out, "switch_to_profit", "switch_to_profit", "info", cur, target,
                      e, _values(st, cur, target, e), ep, seq)
    _eval_unpaid(st, pb, out)


def _unpaid(st: RoomState, grace_ms: int) -> tuple[int, int]:
    """Orders created in the long window but at least ``grace_ms`` ago, and how many are unpaid."""
    lo = st.cur_b - st.n_long + 1
    hi = (st.max_ts - grace_ms) // st.bucket_ms - 1 if grace_ms else st.cur_b
    got = st.memo.get((lo, hi))
    if got is None:  # py-spy: the scan of the long window every tick was 10 % of the core
        if len(st.memo) >= 4:
            st.memo.clear()
        slots = [slot for slot in st.ring if lo <= slot[R_STAMP] <= hi]
        got = st.memo[(lo, hi)] = (sum([s[R_ORDERS] for s in slots]), sum([s[R_UNPAID] for s in slots]))
    return got


def _unpaid_moved(st: RoomState, b: int, orders: int, unpaid: int) -> None:
    """Bucket ``b`` gained ``orders`` orders and ``unpaid`` unpaid ones: move every remembered
    window that holds it (py-spy: rescanning the long window after every order event, which
    cleared them, was 4 % of the in-process many-room pipeline). A slot reset by ``_room_slot``
    held a bucket at least ``n_long`` older than one being written, outside every window still
    asked for (``lo`` follows the room's bucket, which only moves forward within a session)."""
    memo = st.memo
    for (lo, hi), (o, u) in memo.items():
        if lo <= b <= hi:
            memo[(lo, hi)] = (o + orders, u + unpaid)


def _eval_unpaid(st: RoomState, pb: Playbook, out: StepResult) -> None:
    up = pb.unpaid_orders
    if not up.enabled:
        return
    orders, unpaid = _unpaid(st, up.grace_ms)
    share = unpaid / orders if orders else 0.0
    cond = orders >= up.min_orders and share > 0 and share >= up.min_share
    ep = _episode(st, "unpaid_orders|", cond)
    if ep is None:
        return
    seq = _fire(ep, cond, st.max_ts, st, up.cooldown_ms, up.episode_end_ms, 0, share,
                up.worsen_factor)
    if seq:
        e: dict[str, Any] = {"orders": orders, "unpaid": unpaid, "unpaid_share": _r(share),
                             "min_share": up.min_share, "grace_s": up.grace_ms // 1000,
                             "window_s": st.n_long * st.bucket_ms // 1000}
        _emit(st, pb, out, "unpaid_orders", "unpaid_orders", "warn", None, None, e,
              _values(st, None, None, e), ep, seq)


# --------------------------------------------------------------------------- cue building

class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "-"


def _num(x: float) -> str:
    if x >= 10 or x == int(x):
        return str(round(x))
    return f"{x:.1f}"


def _values(st: RoomState, k: SkuState | None, target: SkuState | None,
            e: dict[str, Any]) -> _Values:
    v = _Values()
    if k is not None:
        v["sku_name"], v["sku_id"], v["sku_role"] = k.name, k.sku_id, k.role
        v["stock"] = str(k.stock)
    if target is not None:
        v["target_name"], v["target_id"], v["target_stock"] = (
            target.name, target.sku_id, str(target.stock))
    for name in ("units_per_min", "cart_adds_per_min", "intent_per_min", "missed_per_min",
                 "down_s", "on_air_s", "held_s"):
        if name in e:
            v[name] = _num(float(e[name]))
    if "intent_share" in e:
        v["intent_share_pct"] = str(round(100 * float(e["intent_share"])))
    if "baseline_intent_share" in e:
        v["baseline_share_pct"] = str(round(100 * float(e["baseline_intent_share"])))
    if "unpaid_share" in e:
        v["unpaid_share_pct"] = str(round(100 * float(e["unpaid_share"])))
    for name in ("orders", "unpaid"):
        if name in e:
            v[name] = str(e[name])
    if "window_s" in e:
        v["window_min"] = _num(e["window_s"] / 60)
    v["online"] = str(st.online)
    return v


def _render(tmpl: str, values: _Values) -> str:
    try:
        return tmpl.format_map(values)
    except (ValueError, IndexError, KeyError, AttributeError):
        return tmpl


def clip_headline(text: str) -> str:
    """At most :data:`HEADLINE_MAX` characters, cut with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= HEADLINE_MAX else text[:HEADLINE_MAX - 1] + "…"


def cue_id(room_id: str, session_id: str, kind: str, sku_id: str | None, start: int,
           seq: int) -> str:
    """Deterministic cue id: room, session, kind, SKU, episode start (and re-fire number)."""
    raw = "\x1f".join((room_id, session_id, kind, sku_id or "", str(start)))
    if seq > 1:
        raw += f"\x1f{seq}"
    return hashlib.blake2b(raw.encode(), digest_size=10).hexdigest()


def _emit(st: RoomState, pb: Playbook, out: StepResult, kind: CueKind, text_key: str,
          severity: Severity, k: SkuState | None, target: SkuState | None, e: dict[str, Any],
          values: _Values, ep: Episode, seq: int) -> None:
    texts: dict[str, dict[str, str]] = {}
    for lang, table in pb.texts.items():
        t = table.get(text_key)
        if t is None:
            continue
        labels = TIER_LABELS.get(lang, TIER_LABELS["en"])
        values["tier"], values["prev_tier"] = labels[st.tier], labels[st.prev_tier]
        texts[lang] = {"headline": clip_headline(_render(t.headline, values)),
                       "detail": _render(t.detail, values)}
    main = texts.get(pb.language) or next(iter(texts.values()), {"headline": kind, "detail": kind})
    out.cues.append(Cue(
        cue_id=cue_id(st.room_id, st.session_id, kind, k.sku_id if k else None, ep.start, seq),
        room_id=st.room_id, session_id=st.session_id, kind=kind, severity=severity,
        sku_id=k.sku_id if k else None, target_sku_id=target.sku_id if target else None,
        headline=main["headline"], detail=main["detail"], evidence=e, ts=st.max_ts,
        texts=texts,
    ))


# --------------------------------------------------------------------------- stats

def _snapshot(st: RoomState, now: int, pb: Playbook, sums: list[int], emitted_at: int = 0) -> RoomStats:
    # Built positionally (build_room_stats / build_sku_stats, field order of schemas.outputs)
    # with round() inlined: one room_stats per live room per second, py-spy put this at 8 % of
    # a many-room worker; the online trend looks only at the short window's slots.
    span = _span(st, now, st.n_short)
    f = _MIN / span
    chat, intent = sums[R_CHAT], sums[R_INTENT]
    orders_l, unpaid_l = _unpaid(st, 0)
    old_online = -1
    ring, n, cur = st.ring, st.n_long, st.cur_b
    for b in range(cur - st.n_short + 1, cur + 1):
        slot = ring[b % n]
        if slot[R_STAMP] == b and slot[R_ONLINE] >= 0:
            old_online = slot[R_ONLINE]
            break
    trend = (st.online - old_online) / old_online if old_online > 0 else 0.0
    skus = []
    on_air = st.on_air
    for i, k in enumerate(st.skus):
        ks = _sku_sums(st, k)
        units_pm = ks[S_UNITS] * f
        eta: float | None
        if k.stock == 0:
            eta = 0.0
        elif units_pm > 0:
            eta = round(k.stock * 60.0 / units_pm, 3)
        else:
            eta = None
        cart = ks[S_CART]
        skus.append(build_sku_stats(
            k.sku_id, k.name, k.role, k.price_cents, k.stock, i == on_air, k.held, k.sold,
            round(cart * f, 3), round(ks[S_ORDERS] * f, 3), round(units_pm, 3),
            round(ks[S_ORDERS] / cart, 3) if cart else None, eta,
        ))
    return build_room_stats(
        st.room_id, st.session_id, now, st.tier, st.online, round(trend, 3),
        round(sums[R_ENTERED] * f, 3), round(sums[R_LEFT] * f, 3), round(chat * f, 3), _unique(st),
        round(intent * f, 3), round(intent / chat, 3) if chat else 0.0,
        round(sums[R_LIKES] * f, 3), round(sums[R_CART] * f, 3), round(sums[R_ORDERS] * f, 3),
        round(sums[R_GMV] * f), st.gmv_total, round(unpaid_l / orders_l, 3) if orders_l else 0.0,
        st.skus[on_air].sku_id if on_air >= 0 else None, tuple(skus), emitted_at, "room_stats",
    )
