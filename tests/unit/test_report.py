"""The review (复盘): figures of a simulated show, checked against values computed here from the
input events with plain loops (not the report's code), plus its charts and page.

The show is the simulator's flash sale (one room, 10 minutes): its cues come from the backtest,
and the test writes acks for them into the recording (ack / done / dismiss at known delays), so
reaction times are known exactly.
"""

from __future__ import annotations

import logging
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from livecue.recording import Record, record_of, write_recording
from livecue.report import build_report, write_report
from livecue.report.charts import HEIGHT_PX, WIDTH_PX, draw_charts
from livecue.report.model import EFFECT_WINDOW_MS, RESPONSE_WINDOW_MS, SWITCH_AFTER_MS, Report
from livecue.report.source import read_file
from livecue.sim.backtest import run_backtest
from livecue.sim.show import generate
from schemas.events import (
    CartAdd, Chat, Event, Like, Order, SessionEnd, SessionStart, SkuOnAir, StockSet, Viewers,
)
from schemas.outputs import Cue
from stream.playbook import default_playbook

ROOM = "room-1"


@pytest.fixture(scope="module")
def show() -> list[Event]:
    evs = generate(7, 1, "flash_sale", duration=600.0, rate=40.0)
    start = next(e for e in evs if isinstance(e, SessionStart))
    end = next(e for e in evs if isinstance(e, SessionEnd))
    sku, t0 = start.lineup[0].sku_id, start.ts
    # Orders the simulator never makes: paid then refunded, cancelled unseen, a second "paid",
    # paid after the show, placed after the show.
    extra: list[Event] = [
        Order("x1", ROOM, t0 + 100_000, "refund", "u-r", sku, 2, 3980, "created"),
        Order("x2", ROOM, t0 + 110_000, "refund", "u-r", sku, 2, 3980, "paid"),
        Order("x3", ROOM, t0 + 120_000, "refund", "u-r", sku, 2, 3980, "cancelled"),
        Order("x4", ROOM, t0 + 130_000, "ghost", "u-g", sku, 1, 1990, "cancelled"),
        Order("x5", ROOM, t0 + 140_000, "twice", "u-t", sku, 1, 1990, "paid"),
        Order("x6", ROOM, t0 + 150_000, "twice", "u-t", sku, 1, 1990, "paid"),
        Order("x7", ROOM, end.ts - 5_000, "late", "u-l", sku, 1, 1990, "created"),
        Order("x8", ROOM, end.ts + 20_000, "late", "u-l", sku, 1, 1990, "paid"),
        Order("x9", ROOM, end.ts + 30_000, "after", "u-a", sku, 1, 1990, "paid"),
    ]
    return sorted(evs + extra, key=lambda e: e.ts)


@pytest.fixture(scope="module")
def cues(show: list[Event]) -> list[Cue]:
    res = run_backtest(show, default_playbook())
    assert len(res.cues) >= 3, "the flash sale should fire several cues"
    return res.cues


def _acks(cues: list[Cue]) -> list[dict[str, Any]]:
    """Cue i: ack after 3+i s by ctl-a; done after 20+2i s by ctl-b for even i; every third
    dismissed after 9 s by ctl-c instead (no ack)."""
    out = []
    for i, c in enumerate(cues):
        if i % 3 == 2:
            out.append({"cue_id": c.cue_id, "room_id": ROOM, "action": "dismiss", "by": "ctl-c",
                        "ts": c.ts + 9_000})
            continue
        out.append({"cue_id": c.cue_id, "room_id": ROOM, "action": "ack", "by": "ctl-a",
                    "ts": c.ts + (3 + i) * 1000})
        # a second ack later must not count
        out.append({"cue_id": c.cue_id, "room_id": ROOM, "action": "ack", "by": "ctl-z",
                    "ts": c.ts + (50 + i) * 1000})
        if i % 2 == 0:
            out.append({"cue_id": c.cue_id, "room_id": ROOM, "action": "done", "by": "ctl-b",
                        "ts": c.ts + (20 + 2 * i) * 1000})
    return out


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, show: list[Event], cues: list[Cue]) -> Path:
    path = tmp_path_factory.mktemp("report") / "show.jsonl"
    recs = [record_of(e) for e in show]
    recs += [Record("live.acks", ROOM, orjson.dumps(a)) for a in _acks(cues)]
    # two bad records of this room: they must show up as dead letters
    recs += [Record("live.chat", ROOM, b"{not json"), Record("live.orders", ROOM, b'{"type":"order"}')]
    write_recording(path, recs)
    return path


@pytest.fixture(scope="module")
def report(recording: Path) -> Report:
    inp = read_file(recording, None)
    assert inp.room_id == ROOM
    return build_report(inp.items, default_playbook(), acks=inp.acks,
                        deadletters=inp.deadletters, core_rejections=True)


# --------------------------------------------------------------------------- independent figures

def _expected(show: list[Event]) -> dict[str, Any]:
    start = next(e for e in show if isinstance(e, SessionStart))
    end = next(e for e in show if isinstance(e, SessionEnd))
    t0, t1 = start.ts, end.ts
    inside = [e for e in show if t0 <= e.ts <= t1]
    samples = sorted((e.ts, e.online) for e in inside if isinstance(e, Viewers))
    area = 0
    for i, (ts, online) in enumerate(samples):
        nxt = samples[i + 1][0] if i + 1 < len(samples) else t1
        area += online * (nxt - ts)
    statuses: dict[str, list[Order]] = defaultdict(list)
    for e in show:
        if isinstance(e, Order) and (e.order_id in statuses or e.ts <= t1):  # placed in the show
            statuses[e.order_id].append(e)
    created = {o: evs for o, evs in statuses.items() if evs[0].status != "cancelled"}
    cancelled = {o for o, evs in statuses.items() if any(x.status == "cancelled" for x in evs)}
    paid = {o: evs for o, evs in statuses.items()
            if any(x.status == "paid" for x in evs) and o not in cancelled}
    gmv = sum(evs[0].amount_cents for evs in paid.values())
    chats = sum(1 for e in inside if isinstance(e, Chat))
    likes = sum(e.count for e in inside if isinstance(e, Like))
    carts = [e for e in inside if isinstance(e, CartAdd)]
    uv = samples[0][1] + sum(e.entered for e in inside if isinstance(e, Viewers))
    vmin = area / 60_000
    # per SKU
    skus: dict[str, dict[str, Any]] = {}
    stock: dict[str, int] = {}
    for it in start.lineup:
        skus[it.sku_id] = dict(on_air=0, cart=0, orders=0, units=0, gmv=0, sellouts=0, held=0,
                               held_ms=0)
        stock[it.sku_id] = it.stock
    held_since: dict[str, int] = {}
    on_air, since = None, 0
    sales: dict[str, list[tuple[int, int]]] = defaultdict(list)
    raises: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for e in show:
        if isinstance(e, SkuOnAir) and e.ts <= t1:
            if on_air is not None:
                skus[on_air]["on_air"] += e.ts - since
            on_air, since = e.sku_id, e.ts
        elif isinstance(e, StockSet) and e.ts <= t1:
            if e.stock > stock[e.sku_id]:
                raises[e.sku_id].append(e.ts)
            if e.stock == 0 and e.sku_id not in held_since:
                held_since[e.sku_id] = e.ts
                skus[e.sku_id]["held"] += 1
            elif e.stock > 0 and e.sku_id in held_since:
                skus[e.sku_id]["held_ms"] += e.ts - held_since.pop(e.sku_id)
            stock[e.sku_id] = e.stock
        elif isinstance(e, CartAdd) and e.ts <= t1:
            skus[e.sku_id]["cart"] += 1
        elif isinstance(e, Order) and e.order_id in statuses:
            first = e.order_id not in seen
            seen.add(e.order_id)
            if first and e.status != "cancelled":
                skus[e.sku_id]["orders"] += 1
                skus[e.sku_id]["units"] += e.qty
                sales[e.sku_id].append((e.ts, e.qty))
                if 0 < stock[e.sku_id] <= e.qty:
                    skus[e.sku_id]["sellouts"] += 1
                stock[e.sku_id] = max(0, stock[e.sku_id] - e.qty)
            elif e.status == "cancelled" and e.order_id in created and \
                    [x.status for x in statuses[e.order_id]].index("cancelled") == \
                    statuses[e.order_id].index(e):
                skus[e.sku_id]["units"] -= e.qty
                sales[e.sku_id].append((e.ts, -e.qty))
                stock[e.sku_id] += e.qty
    if on_air is not None:
        skus[on_air]["on_air"] += t1 - since
    for sku, ts in held_since.items():
        skus[sku]["held_ms"] += t1 - ts
    for evs in paid.values():
        skus[evs[0].sku_id]["gmv"] += evs[0].amount_cents
    return dict(
        t0=t0, t1=t1, duration_s=(t1 - t0) / 1000, peak=max(o for _, o in samples),
        avg=area / (t1 - t0), vmin=vmin, chats=chats, likes=likes, interactions=chats + likes,
        cart=len(carts), created=len(created), paid=len(paid), cancelled=len(cancelled), gmv=gmv,
        buyers=len({evs[0].user_id for evs in paid.values()}), uv=uv,
        conv_uv=len({evs[0].user_id for evs in paid.values()}) / uv,
        conv_cart=len(created) / len(carts), gpm=gmv * 1000 / vmin, skus=skus, sales=sales,
        raises=raises, samples=samples,
        units=sum(k["units"] for k in skus.values()),
    )


def test_summary_figures(report: Report, show: list[Event]) -> None:
    x = _expected(show)
    s = report.summary
    assert report.room_id == ROOM
    assert (s.started_ts, s.ended_ts) == (x["t0"], x["t1"])
    assert s.duration_s == x["duration_s"] == 600.0
    assert s.peak_online == x["peak"]
    assert s.avg_online == pytest.approx(x["avg"])
    assert s.viewer_minutes == pytest.approx(x["vmin"])
    assert (s.chats, s.likes, s.interactions) == (x["chats"], x["likes"], x["interactions"])
    assert s.cart_adds == x["cart"]
    assert (s.orders_created, s.orders_paid, s.orders_cancelled) == (
        x["created"], x["paid"], x["cancelled"])
    assert x["created"] > x["paid"] > 0 and x["cancelled"] > 0  # the show has all three
    assert s.gmv_cents == x["gmv"] > 0
    assert s.units == x["units"]
    assert s.buyers == x["buyers"]
    assert s.unique_viewers == x["uv"]
    assert s.conv_buyers_viewers == pytest.approx(x["conv_uv"])
    assert s.conv_orders_cart == pytest.approx(x["conv_cart"])
    assert s.gpm_cents == pytest.approx(x["gpm"])
    # minute series add up to the totals
    assert len(report.minutes) == 10
    assert sum(m.interactions for m in report.minutes) == x["interactions"]
    assert sum(m.gmv_cents for m in report.minutes) == x["gmv"]
    assert {m.tier for m in report.minutes} <= {"hot", "warm", "cold"}


def test_per_sku_table(report: Report, show: list[Event]) -> None:
    x = _expected(show)["skus"]
    got = {k.sku_id: k for k in report.skus}
    assert set(got) == set(x)
    for sku, e in x.items():
        k = got[sku]
        assert (k.on_air_s, k.cart_adds, k.orders, k.units, k.gmv_cents) == (
            e["on_air"] / 1000, e["cart"], e["orders"], e["units"], e["gmv"]), sku
        assert (k.sellouts, k.held_periods, k.held_s) == (e["sellouts"], e["held"],
                                                          e["held_ms"] / 1000), sku
        assert k.conversion == (pytest.approx(e["orders"] / e["cart"]) if e["cart"] else None)
    assert sum(k.on_air_s for k in report.skus) > 0
    assert any(k.held_periods for k in report.skus), "the flash sale holds stock (憋单)"
    assert any(k.sellouts for k in report.skus)


def test_cues_reactions_and_effects(report: Report, show: list[Event], cues: list[Cue]) -> None:
    x = _expected(show)
    assert [r.cue.cue_id for r in report.cues] == [c.cue_id for c in cues]
    for i, r in enumerate(report.cues):
        if i % 3 == 2:
            assert (r.ack_s, r.done_s, r.dismissed_s, r.dismissed_by) == (None, None, 9.0, "ctl-c")
            continue
        assert (r.ack_s, r.ack_by) == (3.0 + i, "ctl-a")
        assert (r.done_s, r.done_by) == ((20.0 + 2 * i, "ctl-b") if i % 2 == 0 else (None, None))
        assert r.dismissed_s is None
    kinds = {r.cue.kind for r in report.cues}
    assert "release_orders" in kinds or "push_stock" in kinds
    checked = 0
    for r in report.cues:
        c, eff = r.cue, r.effect
        if c.kind in ("push_stock", "release_orders"):
            assert eff is not None
            later = [t for t in x["raises"][c.sku_id] if c.ts <= t <= c.ts + RESPONSE_WINDOW_MS]
            if not later:
                assert eff.verdict == "not_acted"
                continue
            back = later[0]
            before = sum(q for t, q in x["sales"][c.sku_id] if back - EFFECT_WINDOW_MS <= t < back and q > 0)
            after = sum(q for t, q in x["sales"][c.sku_id] if back <= t < back + EFFECT_WINDOW_MS and q > 0)
            assert (eff.at_ts, eff.before, eff.after) == (back, before, after)
            if back + EFFECT_WINDOW_MS <= x["t1"]:
                want = "helped" if (after > 0 if before == 0 else after >= before * 1.1) else \
                    "worse" if before and after <= before * 0.9 else "no_change"
                assert eff.verdict == want
            checked += 1
        elif c.kind == "switch_to_traffic_driver":
            assert eff is not None

            def online_at(ts: int) -> int:
                return max(((t, o) for t, o in x["samples"] if t <= ts), default=(0, 0))[1]

            assert (eff.before, eff.after) == (online_at(c.ts), online_at(c.ts + SWITCH_AFTER_MS))
            checked += 1
    assert checked >= 1


def test_dead_letters(report: Report) -> None:
    assert sum(report.deadletters.values()) == 2
    assert any("JSON" in r or "json" in r for r in report.deadletters)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    assert data.endswith(b"IEND\xaeB`\x82"), "truncated PNG"
    return w, h


def test_write_report_files(report: Report, tmp_path: Path) -> None:
    page = write_report(report, tmp_path / "zh", "zh")
    html = page.read_text("utf-8")
    assert "直播复盘" in html and "http://" not in html and "https://" not in html
    assert "<script" not in html
    for name in ("online.png", "interactions.png", "gmv.png"):
        data = (tmp_path / "zh" / name).read_bytes()
        assert _png_size(data) == (WIDTH_PX, HEIGHT_PX)
        assert data[:20] in html.encode() or "data:image/png;base64," in html
    assert html.count("data:image/png;base64,") == 3
    en = write_report(report, tmp_path / "en", "en").read_text("utf-8")
    assert "Show review" in en and "直播复盘" not in en


def test_no_cjk_font_falls_back_with_a_warning(report: Report, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="livecue.report.charts"):
        charts, note = draw_charts(report, "zh", font_paths=("/nonexistent/font.ttc",))
    assert note is not None and "fonts-noto-cjk" in note
    assert any("CJK" in r.getMessage() for r in caplog.records)
    assert [c.name for c in charts] == ["online.png", "interactions.png", "gmv.png"]
    for c in charts:
        assert _png_size(c.png) == (WIDTH_PX, HEIGHT_PX)
    charts2, note2 = draw_charts(report, "zh")
    assert note2 is None, "fonts-noto-cjk is installed in this environment"


def test_compare_playbook(recording: Path, tmp_path: Path) -> None:
    from stream.playbook import load_playbook

    pb_path = tmp_path / "loose.toml"
    pb_path.write_text("[push_stock]\nenabled = false\n")
    pb_b = load_playbook(pb_path)
    inp = read_file(recording, ROOM)
    rep = build_report(inp.items, default_playbook(), compare_playbook=pb_b, compare_name="loose")
    assert rep.compare is not None
    a_only = [r for r in rep.compare if r.side == "a"]
    assert a_only and all(r.cue.kind == "push_stock" for r in a_only)
    assert not [r for r in rep.compare if r.side == "b"]
    both = [r for r in rep.compare if r.side == "both"]
    assert both and all(r.a is not None and r.b is not None and r.a.cue_id == r.b.cue_id for r in both)
    assert all(r.b is None for r in a_only)
    ref = run_backtest(show_events_of(inp), pb_b).cues
    assert sorted(r.b.cue_id for r in rep.compare if r.b is not None) == sorted(c.cue_id for c in ref)
    html = write_report(rep, tmp_path / "cmp", "en").read_text("utf-8")
    assert 'id="compare"' in html and html.count("<tr data-side=") == len(rep.compare)


def show_events_of(inp: Any) -> list[Event]:
    return [ev for _, _, ev in inp.items]


def test_cli_writes_report_with_progress(recording: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from livecue.cli import main

    rc = main(["report", str(recording), "--out", str(tmp_path / "cli"), "--lang", "en",
               "--log-format", "text"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.strip() == str(tmp_path / "cli" / "index.html")
    assert "livecue report: core" in err and "written" in err
    assert (tmp_path / "cli" / "gmv.png").is_file()


def test_effect_rules_on_chosen_cues(recording: Path, show: list[Event]) -> None:
    """Cues placed by the test: a restock 1 min after the cue is its answer, one 6 min after is
    not (not acted on); a switch compares online 3 min later with online at the cue."""
    x = _expected(show)
    t0 = x["t0"]
    gap = RESPONSE_WINDOW_MS + 60_000
    # a restock with none of the same SKU in the 6 minutes before it
    sku, back = next((s, t) for s, r in x["raises"].items() for t in r
                     if t - gap > t0 and not any(t - gap <= u < t for u in r))

    def mk(i: int, kind: str, ts: int) -> Cue:
        return Cue(f"c{i}", ROOM, next(e for e in show if isinstance(e, SessionStart)).session_id,
                   kind, "critical", sku, None, "h", "d", {}, ts)  # type: ignore[arg-type]

    early = back - gap
    cues = [mk(1, "push_stock", back - 60_000), mk(2, "release_orders", early),
            mk(3, "switch_to_traffic_driver", t0 + 120_000)]
    inp = read_file(recording, ROOM)
    rep = build_report(inp.items, default_playbook(), cues=cues)
    by_id = {r.cue.cue_id: r.effect for r in rep.cues}
    e1, e2, e3 = by_id["c1"], by_id["c2"], by_id["c3"]
    before = sum(q for t, q in x["sales"][sku] if back - EFFECT_WINDOW_MS <= t < back and q > 0)
    after = sum(q for t, q in x["sales"][sku] if back <= t < back + EFFECT_WINDOW_MS and q > 0)
    assert e1 is not None and (e1.at_ts, e1.before, e1.after) == (back, before, after)
    assert e2 is not None and e2.verdict == "not_acted"
    samples = x["samples"]

    def online_at(ts: int) -> int:
        return max(((t, o) for t, o in samples if t <= ts), default=(0, 0))[1]

    o0, o1 = online_at(t0 + 120_000), online_at(t0 + 120_000 + SWITCH_AFTER_MS)
    assert e3 is not None and (e3.before, e3.after) == (o0, o1)
    want = "helped" if o1 >= o0 * 1.1 else "worse" if o1 <= o0 * 0.9 else "no_change"
    assert e3.verdict == want


def test_fast_canonical_order_is_canonical_order(recording: Path) -> None:
    from livecue.report.model import in_canonical_order
    from stream.core.align import canonical_order

    items = read_file(recording, ROOM).items
    want = canonical_order(items)
    got = in_canonical_order(items)
    assert len(got) == len(want) and all(a is b for a, b in zip(got, want))
    # a topic out of time order (late events): the fallback, still canonical_order's result
    late = list(items)
    i = next(k for k, it in enumerate(late) if it[0] == "live.chat" and k > 1000)
    late.insert(i + 500, late.pop(i))
    want = canonical_order(late)
    got = in_canonical_order(late)
    assert all(a is b for a, b in zip(got, want)) and len(got) == len(want)
    # ...which a plain sort by time would not give: the late chat keeps its place in its topic
    rank = {t: n for n, t in enumerate(("live.room", "live.viewers", "live.chat", "live.likes",
                                        "live.cart", "live.orders"))}
    plain = [ev for _, _, ev in sorted(late, key=lambda it: (it[1], rank[it[0]]))]
    assert any(a is not b for a, b in zip(plain, want))
