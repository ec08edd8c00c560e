"""Per-room state of the core: bounded windows, lineup and stock, order ids, tier, cue episodes.

Everything here is plain data (slotted classes, lists, dicts in a deterministic order) so a room
serialises to compact JSON (:func:`dump_state`) and back (:func:`load_state`) without losing
anything that affects a decision.

Memory per room is bounded whatever the session length:

* room windows: one ring of ``long_ms / bucket_ms`` small int lists (a *slot* per bucket, stamped
  with its bucket number; a slot is reset lazily when a newer bucket lands on it, so nothing
  rotates on a timer);
* unique chatters: one linear-counting bitmap of ``unique_bits`` bits per bucket of the short
  window (256 bytes each by default); the window's count is estimated from the OR of its bitmaps
  (±2% up to ~2 × bits chatters, saturating around bits · ln(bits));
* per SKU: a ring of ``short_ms / bucket_ms`` slots, created on the SKU's first cart add/order;
  at most ``bounds.max_skus`` SKUs per session;
* order ids: kept ``bounds.order_horizon_ms`` after their last status, LRU-capped at
  ``bounds.max_orders``; a status for a forgotten id is treated as a first sighting;
* cue episodes: one small record per (kind, SKU);
* the session's intent baseline: five counters.
"""

from __future__ import annotations

import base64
from typing import Any, Final

import orjson

__all__ = [
    "RoomState", "SkuState", "Episode", "new_state", "vacant_slots_untouched", "dump_state", "load_state", "state_size", "DUMP_FIELDS",
    "R_STAMP", "R_CHAT", "R_INTENT", "R_MISSED", "R_LIKES", "R_ENTERED", "R_LEFT", "R_CART",
    "R_ORDERS", "R_UNITS", "R_PAID", "R_CANCELLED", "R_GMV", "R_UNPAID", "R_ONLINE", "R_LEN",
    "S_STAMP", "S_CART", "S_CART_QTY", "S_ORDERS", "S_UNITS", "S_LEN",
    "O_SKU", "O_QTY", "O_AMOUNT", "O_STATUS", "O_CREATED", "O_LAST",
    "ST_CREATED", "ST_PAID", "ST_CANCELLED",
]

# Room slot layout: [bucket stamp, counters...]. R_ONLINE is the last online sample (-1: none).
R_STAMP, R_CHAT, R_INTENT, R_MISSED, R_LIKES, R_ENTERED, R_LEFT, R_CART = 0, 1, 2, 3, 4, 5, 6, 7
R_ORDERS, R_UNITS, R_PAID, R_CANCELLED, R_GMV, R_UNPAID = 8, 9, 10, 11, 12, 13
R_ONLINE, R_LEN = 14, 15
# SKU slot layout.
S_STAMP, S_CART, S_CART_QTY, S_ORDERS, S_UNITS, S_LEN = 0, 1, 2, 3, 4, 5
# Order record (a list, mutated in place): sku index, qty, amount, status, created ts, last ts.
O_SKU, O_QTY, O_AMOUNT, O_STATUS, O_CREATED, O_LAST = 0, 1, 2, 3, 4, 5
ST_CREATED, ST_PAID, ST_CANCELLED = 0, 1, 2

_VERSION: Final = 1
#: what each position of :func:`dump_state`'s document holds (for diffs and readers of dumps)
DUMP_FIELDS: Final = (
    "version", "room_id", "session_id", "active", "started_ts", "ended", "max_ts", "cur_b",
    "bucket_ms", "n_short", "n_long", "unique_bits", "stats_ms", "has_ring", "ring", "uniq",
    "skus", "on_air", "on_air_since", "online", "orders", "gmv_total", "tier", "prev_tier",
    "tier_since", "cand", "cand_since", "base_online_sum", "base_ipv_sum", "base_n",
    "stats_k", "due", "episodes", "base_chat", "base_intent", "base_missed", "base_ms", "base_skip_b",
)


def empty_room_slot() -> list[int]:
    s = [0] * R_LEN
    s[R_STAMP] = -1
    s[R_ONLINE] = -1
    return s


def empty_sku_slot() -> list[int]:
    s = [0] * S_LEN
    s[S_STAMP] = -1
    return s


#: What a ring position holds until its first bucket: one shared empty slot (stamp -1, never a
#: bucket's), replaced by a fresh list when a bucket lands there (``_room_slot``, ``_sku_slot``
#: and ``_on_chat`` check the stamp before writing). A room holds a list per bucket it saw, not
#: per bucket of its window: 600 lists for a 10-minute window cost a quiet or new room ~100 KB
#: and the cyclic GC 600 tracked objects to scan.
#: A list, not a tuple: the compiled core (mypyc, see :mod:`stream.core._native`) checks that a
#: ring holds lists. Nothing may write to it: the core's property tests assert after every
#: generated show that both are still empty (:func:`vacant_slots_untouched`).
EMPTY_ROOM_SLOT: Final = empty_room_slot()
EMPTY_SKU_SLOT: Final = empty_sku_slot()


def vacant_slots_untouched() -> bool:
    """The shared empty slots still hold nothing (a write through a stale slot would show)."""
    return EMPTY_ROOM_SLOT == empty_room_slot() and EMPTY_SKU_SLOT == empty_sku_slot()


class SkuState:
    """One SKU of the session's lineup, its stock and its short-window funnel."""

    __slots__ = ("sku_id", "name", "role", "price_cents", "stock", "managed", "held", "sold",
                 "ring", "zero_since", "memo", "push_key", "release_key")

    def __init__(self, sku_id: str, name: str, role: str, price_cents: int, stock: int) -> None:
        self.sku_id = sku_id
        self.name = name
        self.role = role
        self.price_cents = price_cents
        self.stock = stock
        #: Stock governed by stock_set (放单 batches): an empty link then means release_orders.
        self.managed = False
        #: The last stock_set was 0 and nothing came back since (憋单).
        self.held = False
        self.sold = 0
        self.ring: list[list[int]] | None = None
        #: Event time the link became empty (stock_set 0, sold out, or 0 in the lineup); only
        #: meaningful while ``stock == 0`` (0 when unknown: a dump from before this field).
        self.zero_since = 0
        #: (cur_b, the closed buckets' sums, the short window's sums or None after a write to
        #: the current bucket) of ``ring``, for :func:`~stream.core.engine._sku_sums` (not dumped).
        self.memo: tuple[int, list[int], list[int] | None] | None = None
        #: its cue episodes' keys, built once (every tick looked them up by concatenation)
        self.push_key = "push_stock|" + sku_id
        self.release_key = "release_orders|" + sku_id

    def to_list(self) -> list[Any]:
        return [self.sku_id, self.name, self.role, self.price_cents, self.stock, self.managed,
                self.held, self.sold, self.ring, self.zero_since]

    @classmethod
    def from_list(cls, d: list[Any]) -> SkuState:
        s = cls(d[0], d[1], d[2], d[3], d[4])
        s.managed, s.held, s.sold, s.ring = d[5], d[6], d[7], d[8]
        if len(d) > 9:
            s.zero_since = d[9]
        return s


class Episode:
    """One (kind, SKU) cue episode: when it started, when its condition last held, last fire."""

    __slots__ = ("active", "start", "last_true", "last_fire", "seq", "fired", "level", "badness")

    def __init__(self) -> None:
        self.active = False
        self.start = 0
        self.last_true = 0
        #: Event time of the last cue of this (kind, SKU), across episodes (0: never).
        self.last_fire = 0
        #: Cues fired in the current episode (part of the cue id).
        self.seq = 0
        self.fired = False
        #: Severity figures at the last fire: a higher level, or badness × worsen_factor, is worse.
        self.level = 0
        self.badness = 0.0

    def to_list(self) -> list[Any]:
        return [self.active, self.start, self.last_true, self.last_fire, self.seq, self.fired,
                self.level, self.badness]

    @classmethod
    def from_list(cls, d: list[Any]) -> Episode:
        e = cls()
        (e.active, e.start, e.last_true, e.last_fire, e.seq, e.fired, e.level, e.badness) = d
        e.badness = float(e.badness)
        return e


class RoomState:
    """All the core knows about one room. Owned by whoever called :func:`step` last.

    Fields are public for tests and the worker's metrics; only the core mutates them.
    """

    __slots__ = (
        "room_id", "session_id", "active", "started_ts", "ended", "max_ts", "cur_b",
        "bucket_ms", "n_short", "n_long", "unique_bits", "uniq_shift", "stats_ms", "ring",
        "uniq_stamp", "uniq_bits",
        "skus", "sku_index", "on_air", "on_air_since", "online", "orders", "gmv_total",
        "tier", "prev_tier", "tier_since", "cand", "cand_since", "base_online_sum",
        "base_ipv_sum", "base_n", "stats_k", "due", "episodes",
        "base_chat", "base_intent", "base_missed", "base_ms", "base_skip_b", "memo",
        "sums_memo", "uniq_memo",
    )

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.session_id = ""
        #: A session is running (started, not ended). ``ended``: the last session ended.
        self.active = False
        self.started_ts = 0
        self.ended = False
        #: Largest event ts accepted (0: none yet) and its bucket number.
        self.max_ts = 0
        self.cur_b = -1
        self.bucket_ms = 5_000
        self.n_short = 12
        self.n_long = 60
        self.unique_bits = 2048
        #: crc32 · golden ratio, top log2(unique_bits) bits: the bitmap index of a chatter.
        self.uniq_shift = 21
        self.stats_ms = 1_000
        self.ring: list[list[int]] = []
        self.uniq_stamp: list[int] = []
        self.uniq_bits: list[bytearray | None] = []
        self.skus: list[SkuState] = []
        self.sku_index: dict[str, int] = {}
        self.on_air = -1
        self.on_air_since = 0
        self.online = 0
        #: order_id -> [sku index, qty, amount, status, created ts, last ts], LRU order.
        self.orders: dict[str, list[int]] = {}
        self.gmv_total = 0
        self.tier = "warm"
        self.prev_tier = "warm"
        self.tier_since = 0
        self.cand = ""
        self.cand_since = 0
        self.base_online_sum = 0.0
        self.base_ipv_sum = 0.0
        self.base_n = 0
        #: Index of the last stats interval emitted (-1: none) and the next ts that needs a look.
        self.stats_k = -1
        self.due = 0
        #: "kind|sku_id" -> Episode, in first-seen order.
        self.episodes: dict[str, Episode] = {}
        #: Intent baseline of the session: chat, intent and missed-it counts of the closed
        #: buckets during which the SKU on air had stock (no hold, no sell-out), and their time.
        self.base_chat = 0
        self.base_intent = 0
        self.base_missed = 0
        self.base_ms = 0
        #: Buckets up to this one are left out of the baseline (a stock_set / on-air switch
        #: happened in them, so part of the bucket may be a hold).
        self.base_skip_b = -1
        #: Figures derived from the state, kept until what they are derived from changes (not
        #: dumped: a loaded state starts without them). ``(lo, hi)`` -> (orders, unpaid) of
        #: those buckets; order events (the only writers of those counters) move the entries
        #: holding the bucket they write (``_unpaid_moved``), a new session clears them.
        self.memo: dict[tuple[int, int], tuple[int, int]] = {}
        #: (cur_b, nb, sums of the window's *closed* buckets): valid until the bucket moves on
        #: or an event lands in a closed bucket (``_room_slot``, ``_on_chat``). Not dumped.
        self.sums_memo: tuple[int, int, list[int]] | None = None
        #: (cur_b, OR of the short window's *closed* buckets' chatter bitmaps as an int): voided
        #: with ``sums_memo`` (every write to a closed bucket voids both). Not dumped.
        self.uniq_memo: tuple[int, int] | None = None


def new_state(room_id: str) -> RoomState:
    """A fresh room with no session (everything but session_start / audience events is rejected)."""
    return RoomState(room_id)


def dump_state(state: RoomState) -> bytes:
    """Compact JSON bytes of ``state`` (for a Faust table / changelog). See :func:`load_state`."""
    s = state
    lo_long = s.cur_b - s.n_long + 1
    lo_short = s.cur_b - s.n_short + 1
    # Only slots still inside a window are kept; the rest would be reset before use anyway.
    ring = [slot for slot in s.ring if slot[R_STAMP] >= lo_long]
    uniq = [[st, base64.b64encode(bits).decode("ascii")]
            for st, bits in zip(s.uniq_stamp, s.uniq_bits) if bits is not None and st >= lo_short]
    skus = []
    for k in s.skus:
        d = k.to_list()
        if k.ring is not None:
            d[8] = [slot for slot in k.ring if slot[S_STAMP] >= lo_short]
        skus.append(d)
    doc = [
        _VERSION, s.room_id, s.session_id, s.active, s.started_ts, s.ended, s.max_ts, s.cur_b,
        s.bucket_ms, s.n_short, s.n_long, s.unique_bits, s.stats_ms, bool(s.ring), ring, uniq,
        skus, s.on_air,
        s.on_air_since, s.online, list(s.orders.items()), s.gmv_total, s.tier, s.prev_tier,
        s.tier_since, s.cand, s.cand_since, s.base_online_sum, s.base_ipv_sum, s.base_n,
        s.stats_k, s.due, [[k, e.to_list()] for k, e in s.episodes.items()],
        s.base_chat, s.base_intent, s.base_missed, s.base_ms, s.base_skip_b,
    ]
    return orjson.dumps(doc)


def load_state(data: bytes) -> RoomState:
    """Inverse of :func:`dump_state`: a state that behaves exactly like the dumped one.

    Raises ``ValueError`` on bytes that are not a dump of this version.
    """
    doc = orjson.loads(data)
    if not isinstance(doc, list) or not doc or doc[0] != _VERSION:
        raise ValueError("not a room state dump of version 1")
    # Dumps written before the intent baseline existed have 33 items: it starts empty.
    (_, room_id, session_id, active, started_ts, ended, max_ts, cur_b, bucket_ms, n_short,
     n_long, unique_bits, stats_ms, has_ring, ring, uniq, skus, on_air, on_air_since, online,
     orders, gmv_total,
     tier, prev_tier, tier_since, cand, cand_since, base_online_sum, base_ipv_sum, base_n,
     stats_k, due, episodes) = doc[:33]
    baseline = doc[33:38] if len(doc) >= 38 else [0, 0, 0, 0, -1]
    s = RoomState(room_id)
    s.session_id, s.active, s.started_ts, s.ended = session_id, active, started_ts, ended
    s.max_ts, s.cur_b, s.bucket_ms, s.n_short, s.n_long = max_ts, cur_b, bucket_ms, n_short, n_long
    s.unique_bits, s.stats_ms = unique_bits, stats_ms
    s.uniq_shift = 33 - unique_bits.bit_length()
    if has_ring:
        s.ring = [EMPTY_ROOM_SLOT] * n_long
        s.uniq_stamp = [-1] * n_short
        s.uniq_bits = [None] * n_short
    for slot in ring:
        s.ring[slot[R_STAMP] % n_long] = slot
    for st, b64 in uniq:
        s.uniq_stamp[st % n_short] = st
        s.uniq_bits[st % n_short] = bytearray(base64.b64decode(b64))
    s.skus = []
    for d in skus:
        k = SkuState.from_list(d)
        if k.ring is not None:
            full = [EMPTY_SKU_SLOT] * n_short
            for slot in k.ring:
                full[slot[S_STAMP] % n_short] = slot
            k.ring = full
        s.skus.append(k)
    s.sku_index = {k.sku_id: i for i, k in enumerate(s.skus)}
    s.on_air, s.on_air_since, s.online = on_air, on_air_since, online
    s.orders = {oid: rec for oid, rec in orders}
    s.gmv_total, s.tier, s.prev_tier, s.tier_since = gmv_total, tier, prev_tier, tier_since
    s.cand, s.cand_since = cand, cand_since
    s.base_online_sum, s.base_ipv_sum = float(base_online_sum), float(base_ipv_sum)
    s.base_n = base_n
    s.stats_k, s.due = stats_k, due
    s.episodes = {k: Episode.from_list(e) for k, e in episodes}
    s.base_chat, s.base_intent, s.base_missed, s.base_ms, s.base_skip_b = baseline
    return s


def state_size(state: RoomState) -> int:
    """Approximate size in bytes of the room's dump (cheap: counts, no serialisation)."""
    s = state
    n = 400 + 80 * sum(1 for slot in s.ring if slot[R_STAMP] >= s.cur_b - s.n_long + 1)
    n += sum(s.unique_bits // 6 + 24 for b in s.uniq_bits if b is not None)
    for k in s.skus:
        n += 60 + len(k.sku_id) + len(k.name) + len(k.role)
        if k.ring is not None:
            n += 30 * len(k.ring)
    n += 70 * len(s.orders)
    n += sum(len(key) + 50 for key in s.episodes)
    return n
