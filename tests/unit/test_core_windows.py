"""Windows, intent matching, stats cadence and bounded memory of the core."""

from __future__ import annotations

import dataclasses

import pytest

from stream.core import Bounds, Playbook, dump_state, state_size

from core_helpers import T0, Show


def test_stats_once_per_interval_of_event_time_as_of_the_crossing_event() -> None:
    s = Show()
    s.start()
    assert len(s.stats) == 1 and s.stats[0].ts == T0  # the session_start itself
    for _ in range(50):  # 10 s at 200 ms
        s.wait(0.2)
        s.chat("hi")
    times = [x.ts for x in s.stats]
    assert len(times) == 11
    assert [t // 1000 for t in times] == list(range(T0 // 1000, T0 // 1000 + 11))
    assert all(x.emitted_at == 0 for x in s.stats)
    # a late event never emits a snapshot
    s.t -= 5000
    assert s.chat("late").stats == []


def test_stats_interval_from_the_playbook() -> None:
    s = Show(pb=dataclasses.replace(Playbook(), stats_interval_ms=5000))
    s.start()
    for _ in range(100):
        s.wait(0.2)
        s.like()
    assert len(s.stats) == 5


def test_rates_and_funnel_per_minute_over_the_short_window() -> None:
    s = Show()
    s.start()
    s.on_air("hero")
    for i in range(120):  # 2 minutes: 1 chat/s (a third with intent), 1 cart/2 s, 1 order/4 s
        s.chat("链接!" if i % 3 == 0 else "哈哈", user=f"u{i}")
        if i % 2 == 0:
            s.cart("hero", user=f"u{i}")
        if i % 4 == 0:
            s.order(f"o{i}", "hero", amount=19900)
        s.wait(1)
    s.viewers(100)
    last = s.last_stats()
    assert last.chat_per_min == pytest.approx(60, rel=0.1)
    assert last.intent_share == pytest.approx(1 / 3, abs=0.05)
    assert last.intent_per_min == pytest.approx(20, rel=0.15)
    hero = s.sku_stats("hero")
    assert hero.cart_adds_per_min == pytest.approx(30, rel=0.1)
    assert hero.orders_per_min == pytest.approx(15, rel=0.15)
    assert hero.conversion == pytest.approx(0.5, abs=0.06)
    assert hero.eta_s == pytest.approx(hero.stock * 60 / hero.units_per_min, rel=0.01)
    assert last.gmv_cents_per_min == pytest.approx(15 * 19900, rel=0.15)
    assert last.unique_chatters == pytest.approx(60, abs=4)


@pytest.mark.parametrize("n", [10, 300, 2000])
def test_unique_chatters_estimate_is_close(n: int) -> None:
    s = Show()
    s.start()
    for i in range(n):
        s.chat("hi", user=f"user_{i}")
        s.chat("again", user=f"user_{i}")  # repeats do not count twice
        if i % 50 == 0:
            s.wait(0.1)
    s.wait(1.1)
    s.like()
    assert s.last_stats().unique_chatters == pytest.approx(n, rel=0.05)


@pytest.mark.parametrize("text,intent", [
    ("链接在哪", True), ("这个多少钱呀", True), ("Where is the LINK?", True),
    ("How To Buy this", True), ("没抢到啊", True), ("主播好美", False), ("hello", False),
])
def test_intent_lexicon_matching(text: str, intent: bool) -> None:
    s = Show()
    s.start()
    s.chat(text)
    s.wait(1.1)
    s.like()
    assert (s.last_stats().intent_per_min > 0) is intent


def test_missed_it_is_counted_on_its_own_and_weighs_more() -> None:
    s = Show()
    s.start()
    s.on_air("hero")
    s.stock("hero", 0)
    s.wait(0.5)
    s.chat("主播好", user="a")
    s.wait(21)  # past release_orders.min_hold_ms
    s.chat("主播好", user="a")
    assert s.cues == []
    s.chat("没抢到", user="b")
    cue = s.cues_of("release_orders")[0]  # an intent chat re-checks the held on-air SKU at once
    assert cue.ts == s.t
    ev = cue.evidence
    assert ev["missed_per_min"] > 0
    assert ev["weighted_intent_per_min"] == pytest.approx(
        ev["intent_per_min"] + Playbook().intent.missed_weight * ev["missed_per_min"], rel=1e-3)


def test_late_events_land_in_their_own_bucket_and_too_old_ones_are_harmless() -> None:
    s = Show()
    s.start()
    s.at(100)
    s.like()
    s.at(70)  # 30 s late: still inside the short window
    s.chat("late but counted", user="late")
    s.at(101.5)
    s.like()
    assert s.last_stats().chat_per_min > 0 and s.last_stats().unique_chatters == 1
    s.at(100 - 400)  # 6m40s late: inside the reject bound, outside every window
    out = s.chat("ancient")
    assert out.rejected == []
    s.at(103)
    s.like()
    assert s.last_stats().chat_per_min == pytest.approx(1 * 60000 / 60000, rel=0.2)


def test_memory_stays_bounded_over_a_long_session() -> None:
    pb = dataclasses.replace(Playbook(), bounds=Bounds(max_orders=500))
    s = Show(pb=pb)
    s.start()
    sizes = []
    for minute in range(60):
        for sec in range(0, 60, 2):
            s.chat("hi", user=f"u{minute}-{sec}")
            s.order(f"o{minute}-{sec}", "profit")
            s.viewers(1000)
            s.wait(2)
        assert s.state is not None
        sizes.append(len(dump_state(s.state)))
    assert s.state is not None
    assert len(s.state.orders) == 500
    assert len(s.state.ring) == 60
    assert sizes[-1] <= sizes[20] * 1.1  # flat once the order cap is reached
    assert state_size(s.state) == pytest.approx(sizes[-1], rel=0.6)


def test_order_ids_are_forgotten_after_the_horizon() -> None:
    s = Show()
    s.start()
    s.order("A", "hero")
    s.wait(31 * 60)
    for _ in range(10):
        s.viewers(10)
        s.wait(1)
    assert s.state is not None and "A" not in s.state.orders
    s.order("A", "hero", status="paid")  # a forgotten id counts as a first sighting
    s.wait(1.1).viewers(1)
    assert s.sku_stats("hero").sold == 2
