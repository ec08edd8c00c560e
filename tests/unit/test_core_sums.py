"""``_room_sums`` reads only the positions a bucket of the window can sit at: it equals the plain
whole-ring sum at every step of simulated shows (the ring with empty, stale and live slots)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from test_core_properties import PB, ROOM, events

from livecue.sim.show import generate
from stream.core.engine import _room_sums, step
from stream.core.state import R_LEN, R_ONLINE, R_STAMP, new_state
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
