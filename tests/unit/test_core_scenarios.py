"""Scripted live shows through the pure core: each cue at the right event time, with evidence."""

from __future__ import annotations

import dataclasses

import pytest

from schemas.events import Chat, LineupItem, Order
from stream.core import (
    Playbook, PushStock, TierRules, dump_state, load_state, new_state, step, step_many,
)
from stream.core.rules import SwitchToTrafficDriver, UnpaidOrders

from core_helpers import T0, Show

DWELL = Playbook().tier.dwell_ms


def _window_units(show: Show, sku: str, now: int, start: int) -> tuple[int, float]:
    """Independent reference of the short-window sell rate: units in the last 12 buckets."""
    b = now // 5000
    lo = (b - 11) * 5000
    units = sum(e.qty for e in show.events
                if isinstance(e, Order) and e.sku_id == sku and e.status != "cancelled"
                and e.ts >= lo and e.ts <= now)
    span = max(now - max(lo, start), 5000)
    return units, span


# --------------------------------------------------------------------------- push_stock

def test_stock_run_out_fires_push_stock_at_the_trigger_event() -> None:
    s = Show()
    s.start()
    s.on_air("hero")
    s.calm(30)
    start = T0
    sold = 0
    ref_idx = None
    for i in range(100):
        s.order(f"o{i}", "hero", qty=1)
        sold += 1
        units, span = _window_units(s, "hero", s.t, start)
        units_pm = units * 60000 / span
        eta = (100 - sold) * 60 / units_pm
        if ref_idx is None and units_pm >= 3 and eta <= 30:
            ref_idx = len(s.events) - 1
        s.viewers(1000)
        s.wait(0.5)
        if s.cues:
            break
    cues = s.cues_of("push_stock")
    assert ref_idx is not None and len(cues) == 1
    cue, ev, idx = s.cues[0]
    assert idx in (ref_idx, ref_idx + 1)  # no earlier than the condition, at most one event later
    assert cue.ts == ev.ts
    assert cue.sku_id == "hero" and cue.severity == "warn"
    assert cue.evidence["stock"] == 100 - sold
    assert cue.evidence["eta_s"] <= 30
    assert cue.evidence["eta_s"] == pytest.approx(cue.evidence["stock"] * 60
                                                  / cue.evidence["units_per_min"], rel=1e-2)
    assert "爆款面霜" in cue.headline and len(cue.headline) <= 60
    assert cue.texts["en"]["headline"].startswith("爆款面霜 selling out")
    assert cue.emitted_at == 0


def test_a_sell_down_gives_one_warn_then_one_critical_on_sell_out_and_nothing_more() -> None:
    s = Show()
    s.start(lineup=(LineupItem("hero", "面霜", "hero", 100, 60),))
    s.on_air("hero")
    etas = []
    for i in range(60):  # 2 units a second: the ETA falls from minutes to 0
        s.order(f"o{i}", "hero")
        s.viewers(1000)
        s.wait(0.5)
        if s.stats and s.sku_stats("hero").eta_s is not None:
            etas.append(s.sku_stats("hero").eta_s)
    # sold out; demand continues (cart adds, people asking) for three more minutes
    for j in range(180):
        s.cart("hero", user=f"c{j}")
        s.chat("还有吗", user=f"q{j}")
        s.viewers(1000)
        s.wait(1)
    cues = s.cues_of("push_stock")
    assert [c.severity for c in cues] == ["warn", "critical"], [c.evidence for c in cues]
    warn, out = cues
    assert warn.evidence["eta_s"] <= Playbook().push_stock.eta_s
    # the old "ETA halved" rule would have spoken again at least three times on the way down
    assert min(e for e in etas if e > 0) <= warn.evidence["eta_s"] / 8
    assert warn.evidence["stock"] >= 8
    assert out.evidence["stock"] == 0 and out.ts > warn.ts
    assert "已售罄" in out.headline and warn.cue_id != out.cue_id


def test_a_released_batch_gets_one_warn_per_episode_and_a_restock_within_cooldown_stays_quiet() -> None:
    cooldown = Playbook().push_stock.cooldown_ms
    s = Show()
    s.start()
    s.on_air("hero")
    s.stock("hero", 40)  # a 放单 batch: managed stock

    def sell(n: int, tag: str) -> None:
        for i in range(n):
            s.order(f"{tag}{i}", "hero")
            s.viewers(1000)
            s.wait(0.5)

    sell(40, "a")  # sells out in 20 s
    first = s.cues_of("push_stock")
    assert [c.severity for c in first] == ["warn"]  # the empty batch is release_orders' business
    s.wait(5)
    s.stock("hero", 30)  # restocked within the cooldown: a new episode, but quiet
    sell(30, "b")
    assert s.cues_of("push_stock") == first
    assert s.t - first[0].ts < cooldown
    s.wait(10)
    s.stock("hero", 200)  # a big restock: selling out soon again only after ~70 s
    sell(200, "c")
    cues = s.cues_of("push_stock")
    assert [c.severity for c in cues] == ["warn", "warn"]
    assert cues[1].ts - cues[0].ts >= cooldown and cues[1].cue_id != cues[0].cue_id
    assert all(c.severity != "critical" for c in cues)


def test_a_sell_down_that_stalls_and_resumes_is_one_episode() -> None:
    s = Show()
    s.start(lineup=(LineupItem("hero", "面霜", "hero", 100, 60),))
    s.on_air("hero")
    for i in range(40):
        s.order(f"o{i}", "hero")
        s.viewers(1000)
        s.wait(0.5)
    assert len(s.cues_of("push_stock")) == 1
    s.calm(10)  # a short lull (shorter than episode_end_ms): the ETA rises above eta_s
    for i in range(20):
        s.order(f"p{i}", "hero")
        s.viewers(1000)
        s.wait(0.5)
    s.calm(20)
    assert [c.severity for c in s.cues_of("push_stock")] == ["warn"]


# ------------------------------------------------------------------ switch_to_traffic_driver

def test_popularity_drop_while_profit_sku_on_air_names_the_traffic_driver_with_stock() -> None:
    lineup = (
        LineupItem("td0", "引流A", "traffic_driver", 990, 0),  # no stock: not a target
        LineupItem("td1", "引流B", "traffic_driver", 990, 300),
        LineupItem("profit", "利润款", "profit", 39900, 100),
    )
    s = Show()
    s.start(lineup=lineup)
    s.on_air("profit")
    s.calm(180, online=1000, chats_per_s=2, likes_per_s=5)
    assert not s.cues
    assert s.last_stats().tier == "warm"
    s.calm(120, online=300, chats_per_s=0, likes_per_s=1)
    cold = [st for st in s.stats if st.tier == "cold"]
    assert cold, "the room should have gone cold"
    t_cold = cold[0].ts
    cues = s.cues_of("switch_to_traffic_driver")
    assert len(cues) == 1
    cue = cues[0]
    after = Playbook().switch_to_traffic_driver.after_ms
    first_due = next(i for i, e in enumerate(s.events) if e.ts >= t_cold + after)
    idx = next(i for c, _, i in s.cues if c is cue)
    assert idx == first_due
    assert cue.sku_id == "profit" and cue.target_sku_id == "td1"
    assert cue.evidence["tier"] == "cold" and cue.evidence["prev_tier"] == "warm"
    assert cue.evidence["target_stock"] == 300 and cue.evidence["down_s"] >= after / 1000
    assert "引流B" in cue.headline


def test_no_switch_cue_while_the_traffic_driver_is_on_air() -> None:
    s = Show()
    s.start()
    s.on_air("td")
    s.calm(180)
    s.calm(120, online=300, chats_per_s=0, likes_per_s=1)
    assert any(st.tier == "cold" for st in s.stats)
    assert s.cues_of("switch_to_traffic_driver") == []


def test_switch_to_profit_when_hot_with_traffic_driver_on_air() -> None:
    pb = dataclasses.replace(Playbook(), switch_to_profit=dataclasses.replace(
        Playbook().switch_to_profit, after_ms=60_000))
    s = Show(pb=pb)
    s.start()
    s.on_air("td")
    s.calm(120, online=500)
    s.calm(150, online=2000, chats_per_s=8)
    hot = [st for st in s.stats if st.tier == "hot"]
    assert hot
    cues = s.cues_of("switch_to_profit")
    assert len(cues) == 1
    assert cues[0].sku_id == "td" and cues[0].target_sku_id == "profit"
    assert cues[0].ts >= hot[0].ts + 60_000
    assert cues[0].severity == "info"


# --------------------------------------------------------------------------- release_orders

def test_held_stock_with_intent_surge_fires_release_orders() -> None:
    s = Show()
    s.start()
    s.on_air("hero")
    s.stock("hero", 0)
    s.calm(60)
    assert s.cues == []
    texts = ["链接在哪", "怎么买", "没抢到啊", "上车上车", "how to buy??", "还有吗"]
    for i in range(60):
        s.viewers(1000)
        for j in range(3):
            s.chat(texts[(i + j) % len(texts)], user=f"w{i}-{j}")
        s.chat("哈哈哈", user=f"x{i}")
        s.wait(1)
        if s.cues:
            break
    cues = s.cues_of("release_orders")
    assert len(cues) == 1
    c = cues[0]
    assert c.sku_id == "hero"
    assert c.evidence["held"] is True and c.evidence["stock"] == 0
    assert c.evidence["weighted_intent_per_min"] >= 10
    assert c.evidence["intent_share"] >= 0.15
    assert c.evidence["missed_per_min"] > 0
    assert "放单" in c.headline
    assert s.kinds() == ["release_orders"]


def test_release_orders_critical_when_missed_it_floods() -> None:
    s = Show()
    s.start()
    s.on_air("hero")
    s.stock("hero", 0)
    hold = s.t
    s.calm(10)
    for i in range(30):
        for j in range(2):
            s.chat("没抢到！！", user=f"m{i}-{j}")
        s.wait(1)
    cues = s.cues_of("release_orders")
    assert [c.severity for c in cues] == ["critical"]
    assert cues[0].evidence["missed_per_min"] >= 10
    assert cues[0].ts - hold >= Playbook().release_orders.min_hold_ms


def _selling(s: Show, seconds: int, intent_of_6: int, missed: bool = False) -> None:
    """A selling room: 6 chats a second, ``intent_of_6`` of them purchase intent (多少钱 /
    链接...: a normal selling room has ~1 in 6), a viewers sample and likes every second."""
    plain = ["主播好美", "哈哈哈", "666", "好看", "支持", "爱了"]
    intent = ["多少钱", "链接在哪", "怎么买", "上车", "还有吗", "要了"]
    for sec in range(seconds):
        s.viewers(1000, 10, 10)
        for j in range(6):
            if j < intent_of_6:
                text = "没抢到" if missed and j == 0 else intent[(sec + j) % 6]
            else:
                text = plain[(sec + j) % 6]
            s.chat(text, user=f"u{(sec * 6 + j) % 500}")
        s.like(3)
        s.wait(1)


@pytest.mark.parametrize("selling_first", [True, False])
def test_release_orders_stays_quiet_on_baseline_level_intent_during_a_hold(
        selling_first: bool) -> None:
    s = Show()
    s.start()
    s.on_air("hero")
    if selling_first:
        _selling(s, 90, intent_of_6=1)  # the session's own baseline: 1 in 6 chats
    s.stock("hero", 0)  # 憋单, but the chat goes on as before
    _selling(s, 180, intent_of_6=1)
    assert s.cues_of("release_orders") == []
    # ...although the share is above the absolute floor that used to fire at once
    assert s.last_stats().intent_share >= Playbook().release_orders.min_intent_share


@pytest.mark.parametrize("base,hold,fires", [(1, 1, False), (1, 2, True), (2, 2, False),
                                             (2, 4, True)])
def test_release_orders_fires_when_intent_builds_above_the_sessions_own_baseline(
        base: int, hold: int, fires: bool) -> None:
    ro = Playbook().release_orders
    s = Show()
    s.start()
    s.on_air("hero")
    _selling(s, 90, intent_of_6=base)
    s.stock("hero", 0)
    t_hold = s.t
    _selling(s, 120, intent_of_6=hold)
    cues = s.cues_of("release_orders")
    if not fires:
        assert cues == []
        return
    assert len(cues) == 1
    c = cues[0]
    ev = c.evidence
    assert c.severity == "warn" and c.sku_id == "hero" and ev["held"] is True
    assert ev["baseline_intent_share"] == pytest.approx(base / 6, abs=0.01)
    assert ev["required_intent_share"] == pytest.approx(ro.intent_vs_baseline * base / 6,
                                                        abs=0.01)
    assert ev["intent_share"] >= ev["required_intent_share"]
    assert ev["held_s"] >= ro.min_hold_ms / 1000 and c.ts - t_hold >= ro.min_hold_ms
    assert c.ts - t_hold < ro.min_hold_ms + 10_000  # as soon as the buckets since show it
    assert f"平时{round(100 * ev['baseline_intent_share'])}%" in c.detail


def test_release_orders_never_fires_within_the_minimum_hold_however_hot_the_chat() -> None:
    ro = Playbook().release_orders
    s = Show()
    s.start()
    s.on_air("hero")
    _selling(s, 90, intent_of_6=1)
    s.stock("hero", 0)
    t_hold = s.t
    for sec in range(60):  # demand floods at once: intent, 没抢到, cart adds
        s.viewers(1000)
        for j in range(4):
            s.chat(("没抢到", "链接", "怎么买", "上车")[j], user=f"h{sec}-{j}")
        s.cart("hero", user=f"k{sec}")
        s.wait(0.5)
    cues = s.cues_of("release_orders")
    assert len(cues) == 1
    c = cues[0]
    assert c.ts - t_hold >= ro.min_hold_ms
    assert c.ts - t_hold < ro.min_hold_ms + 1000  # at the first event once the hold is long enough
    assert c.severity == "critical" and c.evidence["missed_per_min"] >= ro.critical_missed_per_min


def test_release_orders_on_cart_adds_to_an_empty_link_but_not_on_the_carts_before_it() -> None:
    ro = Playbook().release_orders
    s = Show()
    s.start()
    s.on_air("hero")
    s.stock("gift", 20)  # a 福利 batch, off air: bought from the link, no chat about it
    for i in range(20):
        s.cart("gift", user=f"a{i}")
        s.cart("gift", user=f"b{i}")
        s.order(f"g{i}", "gift")
        s.wait(0.5)
    assert s.state is not None and s.state.skus[s.state.sku_index["gift"]].stock == 0
    t_out = s.t
    s.calm(60)  # nobody adds it any more: the minute's cart rate (40 before) is stale demand
    assert s.cues_of("release_orders") == []
    for i in range(10):  # they start adding the empty link to their carts: 12 a minute
        s.cart("gift", user=f"late{i}")
        s.calm(5)
    cues = s.cues_of("release_orders")
    assert len(cues) == 1 and cues[0].sku_id == "gift"
    assert cues[0].evidence["cart_adds_per_min"] >= ro.min_cart_adds_per_min
    assert cues[0].ts - t_out >= 60_000 and cues[0].evidence["held"] is False


def test_the_intent_baseline_leaves_out_holds_and_sell_outs() -> None:
    s = Show()
    s.start()
    s.on_air("hero")
    _selling(s, 70, intent_of_6=1)
    s.stock("hero", 0)
    _selling(s, 60, intent_of_6=5, missed=True)  # a hot hold...
    s.stock("hero", 50)
    _selling(s, 70, intent_of_6=1)
    s.stock("hero", 0)
    t_hold = s.t
    _selling(s, 60, intent_of_6=3)
    c = s.cues_of("release_orders")[-1]
    assert c.ts > t_hold
    assert c.evidence["baseline_intent_share"] == pytest.approx(1 / 6, abs=0.015)  # ...not in it


def test_released_stock_ends_the_release_episode() -> None:
    s = Show()
    s.start()
    s.on_air("hero")
    s.stock("hero", 0)
    for i in range(30):
        for j in range(3):
            s.chat("链接!", user=f"m{i}-{j}")
        s.wait(1)
    assert len(s.cues_of("release_orders")) == 1
    s.stock("hero", 50)
    for i in range(30):
        s.chat("链接!", user=f"n{i}")
        s.wait(1)
    assert len(s.cues_of("release_orders")) == 1
    assert s.sku_stats("hero").held is False and s.sku_stats("hero").stock == 50


# --------------------------------------------------------------------------- calm and tier

def test_ten_calm_minutes_emit_no_cue_and_a_snapshot_per_second() -> None:
    s = Show()
    s.start()
    s.on_air("profit")
    for minute in range(10):
        for sec in range(60):
            s.viewers(1000 + (sec % 7) * 10, 12, 11)
            s.chat("主播好美", user=f"u{sec}")
            s.chat("这个颜色好看", user=f"v{sec}")
            s.like(3)
            if sec % 20 == 0:
                s.cart("profit", user=f"c{minute}-{sec}")
            if sec % 30 == 0:
                oid = f"o{minute}-{sec}"
                s.order(oid, "profit", amount=39900)
                s.order(oid, "profit", status="paid", amount=39900)
            s.wait(1)
    assert s.cues == []
    assert s.rejected == []
    assert 595 <= len(s.stats) <= 601
    tiers = {st.tier for st in s.stats}
    assert tiers == {"warm"}
    last = s.last_stats()
    assert last.on_air_sku == "profit"
    p = s.sku_stats("profit")
    assert p.sold == 20 and p.stock == 180
    assert last.gmv_cents_total == 20 * 39900
    assert last.unpaid_share == 0.0
    assert last.chat_per_min == pytest.approx(120, rel=0.1)


def _osc_pb() -> Playbook:
    return dataclasses.replace(Playbook(), tier=dataclasses.replace(
        TierRules(), baseline="absolute", ref_online=1000, online_weight=1.0, warmup_ms=0))


@pytest.mark.parametrize("period_s,lo,hi", [(2, 1240, 1260), (2, 600, 1300), (20, 600, 1300),
                                            (60, 600, 1300), (13, 1050, 1300)])
def test_viewers_oscillating_around_a_boundary_never_flap(period_s: int, lo: int, hi: int) -> None:
    s = Show(pb=_osc_pb())
    s.start()
    for sec in range(900):
        s.viewers(hi if (sec // (period_s // 2 or 1)) % 2 else lo)
        s.wait(1)
    changes = [(a.ts, b.tier) for a, b in zip(s.stats, s.stats[1:]) if a.tier != b.tier]
    times = [b.ts for a, b in zip(s.stats, s.stats[1:]) if a.tier != b.tier]
    for t1, t2 in zip(times, times[1:]):
        assert t2 - t1 >= DWELL
    if period_s <= 2:
        assert changes == []  # never confirmed for 5 s in a row
    if period_s == 60:
        assert len(changes) >= 5  # real swings are followed


def test_tier_hysteresis_keeps_hot_in_the_band() -> None:
    s = Show(pb=_osc_pb())
    s.start()
    for _ in range(40):
        s.viewers(1300)
        s.wait(1)
    assert s.last_stats().tier == "hot"
    for sec in range(300):
        s.viewers(1150 if sec % 2 else 1300)  # 1.15 is above hot_exit 1.1
        s.wait(1)
    assert {st.tier for st in s.stats[-300:]} == {"hot"}


# --------------------------------------------------------------------------- orders

def test_order_dedup_created_then_paid_is_one_sale_and_cancel_gives_back() -> None:
    s = Show()
    s.start()
    s.order("A", "hero", qty=2, amount=39800)
    s.order("A", "hero", status="paid", qty=2, amount=39800)
    s.order("A", "hero", status="paid", qty=2, amount=39800)  # duplicate delivery
    s.order("A", "hero", status="created", qty=2, amount=39800)  # late duplicate
    s.wait(1.1).viewers(10)
    hero = s.sku_stats("hero")
    assert hero.stock == 98 and hero.sold == 2
    assert s.last_stats().gmv_cents_total == 39800
    s.order("B", "hero", qty=1, amount=19900)
    s.order("B", "hero", status="cancelled", qty=1, amount=19900)
    s.order("B", "hero", status="paid", qty=1, amount=19900)  # after cancel: ignored
    s.order("C", "hero", status="paid", qty=3, amount=59700)  # first seen as paid: a sale
    s.order("D", "hero", status="cancelled", qty=5, amount=1)  # never placed: nothing back
    s.wait(1.1).viewers(10)
    hero = s.sku_stats("hero")
    assert hero.stock == 95 and hero.sold == 5
    assert s.last_stats().gmv_cents_total == 39800 + 59700
    assert s.rejected == []


def test_cancel_after_sell_out_returns_stock_and_clears_held() -> None:
    s = Show()
    s.start(lineup=(LineupItem("x", "X", "hero", 100, 5),))
    s.stock("x", 1)
    s.order("o1", "x")
    s.wait(1.1).viewers(1)
    assert s.sku_stats("x").stock == 0
    s.order("o1", "x", status="cancelled")
    s.wait(1.1).viewers(1)
    assert s.sku_stats("x").stock == 1 and s.sku_stats("x").sold == 0


def test_unpaid_orders_cue_after_grace_but_not_when_buyers_pay() -> None:
    pb = dataclasses.replace(Playbook(), unpaid_orders=UnpaidOrders(grace_ms=30_000))
    s = Show(pb=pb)
    s.start()
    for i in range(20):
        s.order(f"u{i}", "profit", amount=39900)
        s.wait(1)
    assert s.cues_of("unpaid_orders") == []  # all still inside the grace period
    for _ in range(40):
        s.viewers(100)
        s.wait(1)
    cues = s.cues_of("unpaid_orders")
    assert len(cues) == 1
    assert cues[0].evidence["unpaid_share"] >= 0.4 and cues[0].evidence["orders"] >= 10

    p = Show(pb=pb)
    p.start()
    for i in range(20):
        p.order(f"p{i}", "profit", amount=39900)
        p.wait(1)
        p.order(f"p{i}", "profit", status="paid", amount=39900)
    for _ in range(60):
        p.viewers(100)
        p.wait(1)
    assert p.cues == []


# --------------------------------------------------------------------------- rejections

def _rejects(s: Show, fn: object, reason_part: str) -> None:
    assert s.state is not None
    before = dump_state(s.state)
    out = fn()  # type: ignore[operator]
    assert len(out.rejected) == 1 and reason_part in out.rejected[0][1]
    assert out.cues == [] and out.stats == []
    assert dump_state(s.state) == before


def test_impossible_in_context_events_are_rejected_and_change_nothing() -> None:
    s = Show()
    _rejects(s, lambda: s.order("o", "hero"), "no session")
    _rejects(s, lambda: s.cart("hero"), "no session")
    _rejects(s, lambda: s.stock("hero", 3), "no session")
    _rejects(s, lambda: s.on_air("hero"), "no session")
    _rejects(s, lambda: s.end(), "no session")
    assert s.state is not None
    before = dump_state(s.state)
    out = s.chat("早上好")  # audience before any session: ignored, not dead-lettered
    assert out.rejected == [] and dump_state(s.state) == before
    s.start()
    s.wait(1)
    _rejects(s, lambda: s.order("o", "nope"), "lineup")
    _rejects(s, lambda: s.cart("nope"), "lineup")
    _rejects(s, lambda: s.stock("nope", 1), "lineup")
    _rejects(s, lambda: s.on_air("nope"), "lineup")
    now = s.t
    s.t = now - 11 * 60_000
    _rejects(s, lambda: s.chat("late"), "behind")
    s.t = now + 2 * 3_600_000
    _rejects(s, lambda: s.order("o", "hero"), "ahead")
    s.t = now
    s.end()
    _rejects(s, lambda: s.on_air("hero"), "ended")
    _rejects(s, lambda: s.stock("hero", 1), "ended")
    out = s.order("late-pay", "hero", status="paid")  # late payments still count
    assert out.rejected == []
    ev = Chat("x", "other-room", s.t, "u", "hi")
    assert s.state is not None
    res = step(s.state, ev, s.pb)
    assert res.rejected and "room" in res.rejected[0][1]


def test_new_session_may_jump_ahead_and_resets_the_session() -> None:
    s = Show()
    s.start("s1")
    s.order("o1", "hero")
    s.end()
    s.wait(86_400)
    out = s.start("s2")
    assert out.rejected == [] and out.stats and out.stats[0].session_id == "s2"
    s.wait(1.1).viewers(5)
    assert s.sku_stats("hero").stock == 100 and s.last_stats().gmv_cents_total == 0


# --------------------------------------------------------------------------- texts, ids, replay

def test_headline_is_cut_to_60_characters_and_texts_carry_both_languages() -> None:
    long = "超长名字" * 30
    s = Show()
    s.start(lineup=(LineupItem("x", long, "hero", 100, 10),))
    s.on_air("x")
    for i in range(10):
        s.order(f"o{i}", "x")
        s.wait(0.3)
    cues = s.cues_of("push_stock")
    assert cues
    for c in cues:
        assert len(c.headline) == 60 and c.headline.endswith("…")
        assert set(c.texts) == {"zh", "en"}
        assert all(len(t["headline"]) <= 60 for t in c.texts.values())
        assert long in c.detail


def test_language_en_fills_headline_in_english() -> None:
    s = Show(pb=dataclasses.replace(Playbook(), language="en"))
    s.start()
    s.on_air("hero")
    for i in range(100):
        s.order(f"o{i}", "hero")
        s.wait(0.2)
        if s.cues:
            break
    c = s.cues[0][0]
    assert c.headline == c.texts["en"]["headline"] and "push stock" in c.headline


def _script() -> Show:
    s = Show()
    s.start()
    s.on_air("profit")
    s.stock("hero", 0)
    s.calm(100)
    for i in range(40):
        s.order(f"o{i}", "profit", qty=3)
        s.chat("没抢到", user=f"q{i}")
        s.cart("hero", user=f"k{i}")
        s.wait(0.5)
    s.calm(100, online=200, chats_per_s=0, likes_per_s=0)
    return s


def test_replay_reproduces_identical_cues_and_ids() -> None:
    a = _script()
    assert len(a.cues) >= 2
    st = new_state("room-1")
    res = step_many(st, a.events, a.pb)
    assert res.cues == [c for c, _, _ in a.cues]
    assert res.stats == a.stats


def test_continuing_after_a_dump_load_round_trip_gives_the_same_cues() -> None:
    a = _script()
    events = a.events
    pb = a.pb
    for cut in (1, 50, len(events) // 2, len(events) - 3):
        st = new_state("room-1")
        first = step_many(st, events[:cut], pb)
        restored = load_state(dump_state(first.state))
        assert dump_state(restored) == dump_state(first.state)
        rest = step_many(restored, events[cut:], pb)
        assert first.cues + rest.cues == [c for c, _, _ in a.cues]
        assert first.stats + rest.stats == a.stats


def test_a_dump_from_before_the_intent_baseline_still_loads() -> None:
    import orjson

    a = _script()
    doc = orjson.loads(dump_state(a.state))
    old = doc[:33]  # no baseline counters, SKUs without zero_since
    old[16] = [sku[:9] for sku in old[16]]
    st = load_state(orjson.dumps(old))
    assert (st.base_chat, st.base_ms, st.base_skip_b) == (0, 0, -1)
    assert all(k.zero_since == 0 for k in st.skus)
    assert [k.stock for k in st.skus] == [k.stock for k in a.state.skus]  # type: ignore[union-attr]


def test_push_stock_threshold_comes_from_the_playbook() -> None:
    pb = dataclasses.replace(Playbook(), push_stock=PushStock(eta_s=5.0))
    s = Show(pb=pb)
    s.start()
    s.on_air("hero")
    for i in range(100):
        s.order(f"o{i}", "hero")
        s.wait(0.5)
    cues = s.cues_of("push_stock")
    assert cues and cues[0].evidence["eta_s"] <= 5.0


def test_switch_min_drop_1_reacts_to_hot_to_warm() -> None:
    pb = dataclasses.replace(_osc_pb(), switch_to_traffic_driver=SwitchToTrafficDriver(min_drop=1))
    s = Show(pb=pb)
    s.start()
    s.on_air("profit")
    for _ in range(60):
        s.viewers(1400)
        s.wait(1)
    assert s.last_stats().tier == "hot"
    for _ in range(60):
        s.viewers(1000)
        s.wait(1)
    cues = s.cues_of("switch_to_traffic_driver")
    assert len(cues) == 1 and cues[0].evidence["tier"] == "warm"
