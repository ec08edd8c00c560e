"""``_room_sums`` reads only the positions a bucket of the window can sit at: it equals the plain
whole-ring sum at every step of simulated shows (the ring with empty, stale and live slots)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from test_core_properties import PB, ROOM, events

from livecue.sim.show import generate
from schemas.outputs import RoomStats, SkuStats
from stream.core.engine import _MIN, _r, _room_sums, _sku_sums, _span, _unpaid, step
from stream.core.state import (
    R_CART, R_CHAT, R_ENTERED, R_GMV, R_INTENT, R_LEFT, R_LEN, R_LIKES, R_ONLINE, R_ORDERS, R_STAMP, S_CART,
    S_ORDERS, S_UNITS, new_state,
)
from stream.playbook import default_playbook


def _reference(st: object, nb: int) -> list[int]:
    tot = [0] * R_LEN
    lo, hi = st.cur_b - nb + 1, st.cur_b  # type: ignore[attr-defined]
    for slot in st.ring:  # type: ignore[attr-defined]
        if lo <= slot[R_STAMP] <= hi:
            for i in range(1, R_ONLINE):
                tot[i] += slot[i]
    return tot


def test_window_sums_equal_the_whole_ring_sum_at_every_step() -> None:
    pb = default_playbook()
    checked = 0
    for seed, scenario in ((1, "mixed"), (2, "flash_sale"), (3, "popularity_drop"), (4, "steady")):
        events = generate(seed, ["sums-1"], scenario, duration=900, rate=6.0)
        st = new_state("sums-1")
        for i, ev in enumerate(events):
            step(st, ev, pb)
            if st.ring and i % 7 == 0:
                for nb in (1, st.n_short, st.n_long):
                    assert _room_sums(st, nb) == _reference(st, nb), (seed, i, nb)
                    checked += 1
    assert checked > 300, "the shows reached the windows"


def test_order_counts_kept_between_ticks_equal_a_scan_of_the_ring_at_every_step() -> None:
    # _unpaid remembers its figures until an order event changes them: at every step, for the
    # tick's grace and for a snapshot (no grace), they equal a fresh scan of the long window
    from stream.core.engine import _unpaid
    from stream.core.state import R_ORDERS, R_UNPAID

    pb = default_playbook()
    grace = pb.unpaid_orders.grace_ms
    checked = changed = 0
    for seed, scenario in ((1, "mixed"), (2, "flash_sale"), (5, "mixed")):
        events = generate(seed, ["unpaid-1"], scenario, duration=900, rate=6.0)
        st = new_state("unpaid-1")
        last = None
        for ev in events:
            step(st, ev, pb)
            if not st.ring:
                continue
            for g in (grace, 0):
                lo = st.cur_b - st.n_long + 1
                hi = (st.max_ts - g) // st.bucket_ms - 1 if g else st.cur_b
                want = (sum(s[R_ORDERS] for s in st.ring if lo <= s[R_STAMP] <= hi),
                        sum(s[R_UNPAID] for s in st.ring if lo <= s[R_STAMP] <= hi))
                assert _unpaid(st, g) == want, (seed, ev)
                assert _unpaid(st, g) == want  # the remembered answer too
                checked += 1
            now = _unpaid(st, 0)
            changed += last is not None and now != last and ev.type == "order"
            last = now
    assert checked > 1000 and changed > 50, "orders, payments and cancellations were exercised"


def test_remembered_window_sums_equal_a_scan_at_every_step() -> None:
    # the closed buckets' room sums and each SKU's sums are remembered between ticks: late
    # chats, likes, viewers, cart adds, orders, payments and cancellations must void them
    from stream.core.engine import _sku_sums
    from stream.core.state import S_LEN, S_STAMP

    def sku_reference(st: object, k: object) -> list[int]:
        tot = [0] * S_LEN
        if k.ring is None:  # type: ignore[attr-defined]
            return tot
        lo, hi = st.cur_b - st.n_short + 1, st.cur_b  # type: ignore[attr-defined]
        for slot in k.ring:  # type: ignore[attr-defined]
            if lo <= slot[S_STAMP] <= hi:
                for i in range(1, S_LEN):
                    tot[i] += slot[i]
        return tot

    pb = default_playbook()
    hits = late = 0
    for seed, scenario in ((1, "mixed"), (2, "flash_sale"), (3, "popularity_drop"), (6, "mixed")):
        shown = generate(seed, ["memo-1"], scenario, duration=900, rate=6.0)
        # one audience or shopping event in six arrives up to 25 s late (its ts unchanged)
        rnd = random.Random(seed)
        arrive = [ev.ts + (rnd.randint(1, 25_000) if ev.type not in ("session_start", "session_end", "sku_on_air",
                  "stock_set") and rnd.random() < 1 / 6 else 0) for ev in shown]
        events = [ev for _, _, ev in sorted(zip(arrive, range(len(shown)), shown))]
        st = new_state("memo-1")
        for ev in events:
            late += st.cur_b >= 0 and ev.ts // st.bucket_ms < st.cur_b
            step(st, ev, pb)
            if not st.ring:
                continue
            for _ in range(2):  # computed, then remembered
                hits += st.sums_memo is not None and st.sums_memo[0] == st.cur_b
                assert _room_sums(st, st.n_short) == _reference(st, st.n_short), (seed, ev)
                for k in st.skus:
                    assert _sku_sums(st, k) == sku_reference(st, k), (seed, ev, k.sku_id)
    assert hits > 1000 and late > 100, "the remembered sums were used, and late events came"


def test_remembered_unique_chatters_equal_a_scan_at_every_step() -> None:
    # the closed buckets' chatter bitmaps are ORed once per bucket and remembered: late chats
    # (into closed buckets, new bitmaps included) and new sessions must void that
    import math

    from stream.core.engine import _unique

    def reference(st: object) -> int:
        acc = 0
        lo = st.cur_b - st.n_short + 1  # type: ignore[attr-defined]
        for stamp, bits in zip(st.uniq_stamp, st.uniq_bits):  # type: ignore[attr-defined]
            if bits is not None and lo <= stamp <= st.cur_b:  # type: ignore[attr-defined]
                acc |= int.from_bytes(bits, "little")
        m = st.unique_bits  # type: ignore[attr-defined]
        zeros = m - acc.bit_count()
        return 0 if zeros == m else round(m * math.log(m / max(zeros, 1)))

    pb = default_playbook()
    hits = late = changed = 0
    for seed, scenario in ((1, "mixed"), (2, "flash_sale"), (7, "steady")):
        shown = _back_to_back(seed, 2, 400) if scenario == "steady" else \
            generate(seed, ["uniq-1"], scenario, duration=900, rate=6.0)
        rnd = random.Random(seed)  # one chat in five arrives up to 25 s late (its ts unchanged)
        arrive = [ev.ts + (rnd.randint(1, 25_000) if ev.type == "chat" and rnd.random() < 0.2 else 0)
                  for ev in shown]
        events = [ev for _, _, ev in sorted(zip(arrive, range(len(shown)), shown))]
        st = new_state(events[0].room_id)
        last = -1
        for ev in events:
            late += ev.type == "chat" and st.cur_b >= 0 and ev.ts // st.bucket_ms < st.cur_b
            step(st, ev, pb)
            if not st.uniq_stamp:
                continue
            want = reference(st)
            for _ in range(2):  # computed, then remembered
                hits += st.uniq_memo is not None and st.uniq_memo[0] == st.cur_b
                assert _unique(st) == want, (seed, ev)
            changed += want != last
            last = want
    assert hits > 1000 and late > 100 and changed > 100, "the memo was used, late chats came, counts moved"


def _back_to_back(seed: int, shows: int, seconds: float) -> list:
    """``shows`` sessions of one room, each starting in the bucket where the one before ended
    (a room whose shows restart at once: the scale test's steady shows)."""
    events: list = []
    start = 1_790_000_000_000
    for k in range(shows):
        show = generate(seed + k, ["restart-1"], "mixed", start_ts=start, duration=seconds, rate=8.0)
        events.extend(show)
        start = show[-1].ts + 1  # same bucket as the last event of the show before
    return events


def test_a_new_session_in_the_same_bucket_forgets_the_remembered_sums() -> None:
    # the closed-bucket sums remembered under the old session's ring must not survive a session
    # start: a restored worker (no memo) and a continuous one (memo) would fold different
    # baselines (seen on Kafka as base_ipv_sum differing after a rebalance)
    pb = default_playbook()
    checked = 0
    for seed in (11, 12, 13):
        events = _back_to_back(seed, 4, 40.0)
        st = new_state("restart-1")
        for ev in events:
            restart = ev.type == "session_start"
            step(st, ev, pb)
            if st.ring:
                assert _room_sums(st, st.n_short) == _reference(st, st.n_short), (seed, ev)
                checked += restart
    assert checked >= 9, "sessions restarted while sums were remembered"


def test_restored_at_any_event_of_back_to_back_shows_equals_the_continuous_run() -> None:
    # restore == recomputation across session restarts: dump and load at every fifth event, then
    # go on; every room_stats and the final state equal the run that never stopped
    from stream.core import dump_state, load_state, step_many

    pb = default_playbook()
    events = _back_to_back(21, 3, 30.0)
    whole = step_many(new_state("restart-1"), events, pb)
    cuts = range(1, len(events), 5)
    for cut in cuts:
        first = step_many(new_state("restart-1"), events[:cut], pb)
        rest = step_many(load_state(dump_state(first.state)), events[cut:], pb)
        assert [c.cue_id for c in first.cues + rest.cues] == [c.cue_id for c in whole.cues], cut
        assert first.stats + rest.stats == whole.stats, cut
        assert dump_state(rest.state) == dump_state(whole.state), cut
    assert len(cuts) > 50


@given(evs=events(160))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_remembered_sums_equal_a_scan_after_any_event_sequence(evs: list) -> None:
    # arbitrary sequences (late events, big jumps, session restarts and resumes, resets): after
    # every step the remembered closed-bucket sums give what a scan of the ring gives
    s = new_state(ROOM)
    for ev in evs:
        s = step(s, ev, PB).state
        if s.ring:
            # one window length only: asking another would replace what is remembered
            assert _room_sums(s, s.n_short) == _reference(s, s.n_short), ev


def test_every_position_of_a_state_dump_is_named() -> None:
    # DUMP_FIELDS names dump_state's document for failure messages (tests/integration/harness.py)
    import orjson

    from stream.core import dump_state
    from stream.core.state import DUMP_FIELDS

    events = _back_to_back(31, 1, 20.0)
    st = new_state("restart-1")
    for ev in events:
        step(st, ev, default_playbook())
    doc = orjson.loads(dump_state(st))
    assert len(doc) == len(DUMP_FIELDS)
    assert doc[DUMP_FIELDS.index("room_id")] == "restart-1"
    assert doc[DUMP_FIELDS.index("base_ipv_sum")] == st.base_ipv_sum


def _unique_scan(st: Any) -> int:
    import math
    acc = 0
    lo = st.cur_b - st.n_short + 1
    for stamp, bits in zip(st.uniq_stamp, st.uniq_bits):
        if bits is not None and lo <= stamp <= st.cur_b:
            acc |= int.from_bytes(bits, "little")
    m = st.unique_bits
    zeros = m - acc.bit_count()
    return 0 if zeros == m else round(m * math.log(m / max(zeros, 1)))


def _reference_snapshot(st: Any, now: int, pb: Any, sums: list[int]) -> RoomStats:
    # the snapshot as built before the positional builders: whole-ring scans, constructors
    span = _span(st, now, st.n_short)
    f = _MIN / span
    chat, intent = sums[R_CHAT], sums[R_INTENT]
    orders_l, unpaid_l = _unpaid(st, 0)
    old_online = -1
    lo = st.cur_b - st.n_short + 1
    oldest = st.cur_b + 1
    for slot in st.ring:
        s = slot[R_STAMP]
        if lo <= s < oldest and slot[R_ONLINE] >= 0:
            oldest, old_online = s, slot[R_ONLINE]
    trend = (st.online - old_online) / old_online if old_online > 0 else 0.0
    skus = []
    for i, k in enumerate(st.skus):
        ks = _sku_sums(st, k)
        units_pm = ks[S_UNITS] * f
        eta: float | None
        if k.stock == 0:
            eta = 0.0
        elif units_pm > 0:
            eta = _r(k.stock * 60.0 / units_pm)
        else:
            eta = None
        skus.append(SkuStats(
            sku_id=k.sku_id, name=k.name, role=k.role, price_cents=k.price_cents, stock=k.stock,
            on_air=i == st.on_air, held=k.held, sold=k.sold,
            cart_adds_per_min=_r(ks[S_CART] * f), orders_per_min=_r(ks[S_ORDERS] * f),
            units_per_min=_r(units_pm),
            conversion=_r(ks[S_ORDERS] / ks[S_CART]) if ks[S_CART] else None, eta_s=eta,
        ))
    return RoomStats(
        room_id=st.room_id, session_id=st.session_id, ts=now,
        tier=st.tier,  
        online=st.online, online_trend=_r(trend), entered_per_min=_r(sums[R_ENTERED] * f),
        left_per_min=_r(sums[R_LEFT] * f), chat_per_min=_r(chat * f), unique_chatters=_unique_scan(st),
        intent_per_min=_r(intent * f), intent_share=_r(intent / chat) if chat else 0.0,
        likes_per_min=_r(sums[R_LIKES] * f), cart_adds_per_min=_r(sums[R_CART] * f),
        orders_per_min=_r(sums[R_ORDERS] * f), gmv_cents_per_min=round(sums[R_GMV] * f),
        gmv_cents_total=st.gmv_total, unpaid_share=_r(unpaid_l / orders_l) if orders_l else 0.0,
        on_air_sku=st.skus[st.on_air].sku_id if st.on_air >= 0 else None, skus=tuple(skus),
    )



def test_snapshots_equal_the_reference_construction_at_every_step() -> None:
    # the snapshot's fast path (positional builders, short-window trend scan, remembered
    # chatter bitmaps) gives the object (and wire bytes) of a plain whole-ring construction
    from schemas.decode import encode
    from stream.core.engine import snapshot

    pb = default_playbook()
    checked = trends = 0
    for seed, scenario in ((1, "mixed"), (3, "popularity_drop"), (8, "flash_sale")):
        shown = generate(seed, ["snap-1"], scenario, duration=600, rate=6.0)
        rnd = random.Random(seed)  # some audience events arrive up to 25 s late
        arrive = [ev.ts + (rnd.randint(1, 25_000) if ev.type in ("chat", "like", "viewers", "cart_add")
                           and rnd.random() < 0.15 else 0) for ev in shown]
        events = [ev for _, _, ev in sorted(zip(arrive, range(len(shown)), shown))]
        st = new_state("snap-1")
        for i, ev in enumerate(events):
            step(st, ev, pb)
            if not st.ring or i % 3:
                continue
            got = snapshot(st, pb, 1234)
            want = dataclasses.replace(_reference_snapshot(st, st.max_ts, pb, _room_sums(st, st.n_short)),
                                       emitted_at=1234)
            assert got == want, (seed, i)
            assert encode(got) == encode(want)
            checked += 1
            trends += got.online_trend != 0.0
    assert checked > 500 and trends > 100, "snapshots with moving audiences were compared"


def test_remembered_order_counts_move_at_the_edges_of_the_long_window() -> None:
    # an order created in what has become the long window's oldest bucket (lo), or in its newest
    # (hi), is paid or cancelled while the windows are remembered: the remembered counts move
    from schemas.events import LineupItem, Order, SessionStart, Viewers
    from stream.core.engine import _unpaid
    from stream.core.state import R_ORDERS, R_UNPAID

    pb = default_playbook()
    t0 = 1_795_176_000_000
    checked = 0
    for age_buckets in (0, 1, 30, 58, 59):  # 59 = n_long - 1: the created bucket is lo
        for final in ("paid", "cancelled"):
            st = new_state("edge-1")
            lineup = (LineupItem("k1", "n", "hero", 100, 1000),)
            step(st, SessionStart("s0", "edge-1", t0, "sess", lineup), pb)
            step(st, Order("o0", "edge-1", t0 + 10, "A", "u", "k1", 1, 100, "created"), pb)
            step(st, Order("o1", "edge-1", t0 + 20, "B", "u", "k1", 1, 100, "created"), pb)
            now = t0 + 20 + age_buckets * st.bucket_ms
            step(st, Viewers("v0", "edge-1", now, 100, 1, 1), pb)
            assert st.cur_b - st.n_long + 1 <= t0 // st.bucket_ms, "the order's bucket is still in the window"
            before = _unpaid(st, 0)  # remembered now
            assert before == (2, 2)
            step(st, Order("o2", "edge-1", now, "A", "u", "k1", 1, 100, final), pb)
            lo, hi = st.cur_b - st.n_long + 1, st.cur_b
            want = (sum(s[R_ORDERS] for s in st.ring if lo <= s[R_STAMP] <= hi),
                    sum(s[R_UNPAID] for s in st.ring if lo <= s[R_STAMP] <= hi))
            assert want == (2, 1), (age_buckets, final)
            assert _unpaid(st, 0) == want, (age_buckets, final)
            checked += 1
    assert checked == 10


def _since_empty_reference(st: Any, k: Any, now: int, on_air: bool, pb: Any) -> tuple[float, ...]:
    """The demand since a link emptied, by a scan of every slot of both rings."""
    lo = min(max(k.zero_since // st.bucket_ms + 1, st.cur_b - st.n_short + 1), st.cur_b)
    span = float(max(now - max(lo * st.bucket_ms, st.started_ts), st.bucket_ms))
    f = _MIN / span
    cart = sum(s[S_CART] for s in (k.ring or []) if lo <= s[0] <= st.cur_b)
    room = [s for s in st.ring if lo <= s[R_STAMP] <= st.cur_b] if on_air else []
    chat, intent = sum(s[R_CHAT] for s in room), sum(s[R_INTENT] for s in room)
    from stream.core.state import R_MISSED
    missed = sum(s[R_MISSED] for s in room)
    weighted = (intent + pb.intent.missed_weight * missed) * f
    share = min(1.0, weighted / (chat * f)) if chat else 0.0
    return span, cart * f, intent * f, missed * f, chat * f, weighted, share


def test_demand_since_a_link_emptied_equals_a_scan_of_both_rings_at_every_step() -> None:
    # _since_empty reads only the positions of the buckets since the link emptied (at most the
    # short window), not every slot of the long ring: the same figures as the full scan
    from stream.core.engine import _since_empty

    pb = default_playbook()
    checked = with_chat = 0
    for seed, scenario in ((1, "mixed"), (6, "mixed"), (2, "flash_sale")):
        events = generate(seed, ["empty-1"], scenario, duration=900, rate=6.0)
        st = new_state("empty-1")
        for i, ev in enumerate(events):
            step(st, ev, pb)
            if not st.ring or i % 3:
                continue
            for k in st.skus:
                for on_air in (True, False):
                    d = _since_empty(st, k, st.max_ts, on_air, pb)
                    got = (d.span_ms, d.cart_pm, d.intent_pm, d.missed_pm, d.chat_pm, d.weighted, d.share)
                    assert got == _since_empty_reference(st, k, st.max_ts, on_air, pb), (seed, i, k.sku_id)
                    checked += 1
                    with_chat += on_air and d.chat_pm > 0 and d.cart_pm > 0
    assert checked > 3000 and with_chat > 500, "the shows filled both rings"
