"""``/metrics`` of a real worker and a real gateway under real traffic (issue #6).

A worker subprocess and an in-process gateway run on a broker of their own; a controller screen
is connected to the gateway with a minted token. Two simulated shows are produced one after the
other, and both ``/metrics`` pages are scraped before the first, after the first and after the
second. Every scrape must pass ``promtool check metrics`` without a complaint, expose exactly the
metrics contract of ``test_deploy.METRICS`` (names, types, labels), and the counters must move
with the traffic.

``promtool`` missing fails (never skips), naming the Debian package.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection, connect

from consumers.gateway import Gateway, Limits
from consumers.tokens import mint
from livecue.broker import EmbeddedBroker
from livecue.config import Settings
from livecue.recording import Record
from livecue.sim.show import DEFAULT_START_TS, generate

from harness import WorkerProc, fresh_broker, metric_value, produce, recompute, records_of, start_worker
from test_deploy import METRICS

pytestmark = pytest.mark.slow

DEADLINE_S = 90.0
SHOW_S = 120.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of its own: a fresh worker group then reads only this test's shows, so the
    counters can be compared with exactly what was produced."""
    with fresh_broker(tmp_path) as b:
        yield b


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: apt-get install prometheus")
    return path


def promtool_check(text: str, what: str) -> None:
    """``promtool check metrics`` (text on stdin) finds nothing to complain about."""
    r = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    complaints = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and complaints == "", f"promtool check metrics on {what}: {complaints}"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain"), r.headers["Content-Type"]
        return str(r.read().decode("utf-8"))


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? \S+")


def families(text: str) -> dict[str, tuple[str, set[tuple[str, ...]]]]:
    """``# TYPE`` of each livecue family -> (type, the label-name sets its samples carry).

    prometheus_client's ``*_created`` companions (creation timestamps of counters and histograms)
    are not families of their own here: they belong to the family they are named after."""
    types: dict[str, str] = {}
    for m in re.finditer(r"^# TYPE (livecue_\S+) (\S+)$", text, re.M):
        name, kind = m.groups()
        if kind == "gauge" and name.endswith("_created"):
            base = name.removesuffix("_created")
            if base + "_total" in types or types.get(base) == "histogram":
                continue
        types[name] = kind
    out: dict[str, tuple[str, set[tuple[str, ...]]]] = {n: (k, set()) for n, k in types.items()}
    for line in text.splitlines():
        s = _SAMPLE.match(line)
        if not s or not s.group(1).startswith("livecue_"):
            continue
        name = s.group(1)
        for fam in (name, name.removesuffix("_bucket"), name.removesuffix("_sum"),
                    name.removesuffix("_count")):
            if fam in out and (fam == name or out[fam][0] == "histogram"):
                labels = tuple(sorted(k for k in re.findall(r'(\w+)="', s.group(2) or "") if k != "le"))
                out[fam][1].add(labels)
                break
    return out


def check_contract(text: str, component: str) -> None:
    """The page exposes exactly the contract's metrics of ``component``, with their types and
    labels (``livecue_build_info`` on both components)."""
    def mine(name: str) -> bool:
        return name == "livecue_build_info" or name.startswith("livecue_gateway_") == (component == "gateway")

    want = {n: spec for n, spec in METRICS.items() if mine(n)}
    got = families(text)
    assert set(got) == set(want), (
        f"{component} /metrics vs the contract in test_deploy.METRICS: "
        f"not in the contract {sorted(set(got) - set(want))}, missing {sorted(set(want) - set(got))}")
    for name, (kind, labels) in want.items():
        got_kind, label_sets = got[name]
        assert got_kind == kind, f"{name}: exposed as {got_kind}, contract says {kind}"
        assert label_sets <= {tuple(sorted(labels))}, f"{name}: labels {label_sets}, contract says {labels}"


def build_info(text: str, component: str) -> None:
    m = re.search(r'^livecue_build_info\{([^}]*)\} 1\.0$', text, re.M)
    assert m, f"no livecue_build_info = 1 on the {component}"
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
    assert labels["component"] == component and labels["version"] and labels["python"], labels


def show(room: str, start_ts: int) -> tuple[list[Record], int]:
    """A one-room mixed show and the number of cues the pure core fires for it."""
    records = records_of(generate(11, [room], "mixed", start_ts=start_ts, duration=SHOW_S, rate=25.0))
    cues = len(recompute(records, room).cues)
    assert cues >= 1, "the simulated show should fire at least one cue"
    return records, cues


async def until(what: str, cond: Callable[[], Awaitable[bool]], explain: Callable[[], str]) -> None:
    """Poll ``cond`` until it holds, or fail after ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if await cond():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what} within {DEADLINE_S:.0f} s\n{explain()}")


class Screen:
    """A controller screen: authenticates with a token, then reads everything it is sent."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.types: dict[str, int] = {}
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, gw: Gateway, token: str) -> Screen:
        ws = await connect(gw.ws_url)
        await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
        hello = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello" and hello["role"] == "controller", hello
        return cls(ws)

    async def _read(self) -> None:
        async for raw in self.ws:
            t = orjson.loads(raw).get("type", "?")
            self.types[t] = self.types.get(t, 0) + 1

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_worker_and_gateway_metrics_pass_promtool_and_move_with_traffic(
    broker: EmbeddedBroker, test_settings: Settings, tmp_path: Path, uid: str
) -> None:
    room_a, room_b = f"m{uid}-a", f"m{uid}-b"
    show_a, cues_a = show(room_a, DEFAULT_START_TS)
    # the second show starts after the first one ended (event time keeps going forward)
    show_b, cues_b = show(room_b, DEFAULT_START_TS + int(SHOW_S * 1000) + 60_000)

    w: WorkerProc = await asyncio.to_thread(start_worker, test_settings, tmp_path / "worker.log", "w1")
    gw = Gateway(test_settings, CollectorRegistry(), limits=Limits(ready_timeout_s=20))
    screen: Screen | None = None
    try:
        await gw.start()
        gw_url = gw.url + "/metrics"

        async def pages() -> tuple[str, str]:
            return await asyncio.to_thread(w.metrics), await asyncio.to_thread(scrape, gw_url)

        def explain() -> str:
            return f"screen got {screen.types if screen else {}}\n{w.log_tail()}"

        async def checked(step: str) -> tuple[str, str]:
            wt, gt = await pages()
            await asyncio.to_thread(promtool_check, wt, f"the worker's /metrics ({step})")
            await asyncio.to_thread(promtool_check, gt, f"the gateway's /metrics ({step})")
            return wt, gt

        # -- before any traffic: valid, complete, build info, the screen counted --------------
        token = mint(test_settings.token_secret, "controller", [room_a, room_b], 3600, "metrics-test",
                     time.time())
        screen = await Screen.open(gw, token)
        w0, g0 = await checked("idle")
        build_info(w0, "worker")
        build_info(g0, "gateway")
        assert metric_value(g0, "livecue_gateway_connections", {"role": "controller"}) == 1
        assert metric_value(w0, "livecue_events_consumed_total") == 0
        assert metric_value(w0, "livecue_cues_total") == 0

        # -- show A ---------------------------------------------------------------------------
        await asyncio.to_thread(produce, broker.bootstrap, show_a)

        async def show_processed(events: int, cues: int) -> bool:
            wt, gt = await pages()
            return (metric_value(wt, "livecue_events_consumed_total") >= events
                    and metric_value(wt, "livecue_cues_total") >= cues
                    and metric_value(gt, "livecue_gateway_messages_sent_total", {"type": "cue"}) >= cues)

        await until("show A consumed, its cues sent and pushed to the screen",
                    lambda: show_processed(len(show_a), cues_a), explain)
        w1, g1 = await checked("after show A")

        # -- show B ---------------------------------------------------------------------------
        await asyncio.to_thread(produce, broker.bootstrap, show_b)
        await until("show B consumed, its cues sent and pushed to the screen",
                    lambda: show_processed(len(show_a) + len(show_b), cues_a + cues_b), explain)
        w2, g2 = await checked("after show B")

        # -- the worker counted the traffic -----------------------------------------------------
        events = [metric_value(t, "livecue_events_consumed_total") for t in (w0, w1, w2)]
        assert events == [0, len(show_a), len(show_a) + len(show_b)], events
        for topic in ("live.room", "live.chat", "live.likes", "live.viewers", "live.cart", "live.orders"):
            by_topic = [metric_value(t, "livecue_events_consumed_total", {"topic": topic}) for t in (w1, w2)]
            assert 0 < by_topic[0] < by_topic[1], (topic, by_topic)
        cues = [metric_value(t, "livecue_cues_total") for t in (w0, w1, w2)]
        assert cues[0] == 0 and cues_a <= cues[1] < cues[2] and cues[2] >= cues_a + cues_b, cues
        stats = [metric_value(t, "livecue_room_stats_total") for t in (w0, w1, w2)]
        assert 0 < stats[1] < stats[2], stats
        for name in ("livecue_batch_size_count", "livecue_processing_latency_seconds_count",
                     "livecue_event_time_lag_seconds_count"):
            seen = [metric_value(t, name) for t in (w1, w2)]
            assert 0 < seen[0] < seen[1], (name, seen)
        assert metric_value(w2, "livecue_decode_failures_total") == 0  # the shows are well formed
        assert metric_value(w2, "livecue_deadletters_total") == 0

        # -- the gateway read the workers' output and pushed it to the screen ---------------------
        for topic in ("live.cues", "live.room_stats"):
            got = [metric_value(t, "livecue_gateway_records_consumed_total", {"topic": topic}) for t in (g0, g1, g2)]
            assert got[0] == 0 and 0 < got[1] < got[2], (topic, got)
        for kind in ("cue", "stats"):
            sent = [metric_value(t, "livecue_gateway_messages_sent_total", {"type": kind}) for t in (g1, g2)]
            assert 0 < sent[0] < sent[1], (kind, sent)
        # every cue the gateway counted as sent reached the screen
        sent_cues = metric_value(g2, "livecue_gateway_messages_sent_total", {"type": "cue"})

        async def received() -> bool:
            return screen is not None and screen.types.get("cue", 0) >= sent_cues

        await until("the screen received the cues the gateway counted as sent", received, explain)
        latency = [metric_value(t, "livecue_gateway_cue_delivery_latency_seconds_count") for t in (g1, g2)]
        assert 0 < latency[0] < latency[1], latency
        assert metric_value(g2, "livecue_gateway_bad_records_total") == 0
        assert metric_value(g2, "livecue_gateway_slow_clients_total") == 0
        assert metric_value(g2, "livecue_gateway_connections", {"role": "controller"}) == 1

        # -- exactly the contract, by name, type and labels --------------------------------------
        check_contract(w2, "worker")
        check_contract(g2, "gateway")

        # -- the screen leaves: the connection gauge goes back down -------------------------------
        await screen.close()
        screen = None

        async def disconnected() -> bool:
            gt = await asyncio.to_thread(scrape, gw_url)
            return metric_value(gt, "livecue_gateway_connections", {"role": "controller"}) == 0

        await until("the controller connection gauge back to 0 after the screen closed",
                    disconnected, explain)
        _, g3 = await checked("after the screen left")
        assert metric_value(g3, "livecue_gateway_messages_sent_total") >= metric_value(
            g2, "livecue_gateway_messages_sent_total")
    finally:
        if screen is not None:
            await screen.close()
        await gw.stop()
        await asyncio.to_thread(w.stop)
