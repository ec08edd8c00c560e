"""A real Prometheus server scrapes a running worker and gateway under real traffic (issue #6).

The worker (subprocess) and the gateway (in-process) run on a broker of their own; a simulated
show is produced and a controller screen is connected. ``/usr/bin/prometheus`` gets a temporary
config whose static targets are the worker's and the gateway's ``/metrics`` (jobs named as in
``deploy/prometheus/prometheus.yml``), scrape interval 1 s, its TSDB in ``tmp_path``. Through its
HTTP API: both targets are healthy and ``up == 1``, and the traffic shows in the queried sums.
Polls are bounded (``DEADLINE_S``); Prometheus is killed at the end.

A missing ``prometheus`` binary fails (never skips), naming the Debian package.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import connect

from consumers.gateway import Gateway, Limits
from consumers.tokens import mint
from livecue.broker import EmbeddedBroker, free_port
from livecue.config import Settings
from livecue.sim.show import generate

from harness import ChildProc, WorkerProc, fresh_broker, metric_value, produce, recompute, records_of, start_worker

pytestmark = pytest.mark.slow

DEADLINE_S = 60.0
JOBS = ("livecue-worker", "livecue-gateway")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of its own, as in test_worker.py: the worker's group reads only this show."""
    with fresh_broker(tmp_path) as b:
        yield b


class PrometheusServer(ChildProc):
    """``/usr/bin/prometheus`` scraping ``targets`` (job -> host:port) every second."""

    def __init__(self, tmp: Path, targets: dict[str, str]) -> None:
        binary = "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed: apt-get install prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "prometheus.yml"
        scrape = "".join(
            f"  - job_name: {job}\n    metrics_path: /metrics\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
            for job, target in targets.items())
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n" + scrape)
        self.log_path = tmp / "prometheus.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=info"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=tmp)
        log.close()

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> float | None:
        """The value of an instant query that returns one sample; None while it returns none."""
        result = self.api("query", query=expr)["result"]
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])


def _host_port(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    assert u.hostname and u.port, url
    return f"{u.hostname}:{u.port}"


async def test_prometheus_scrapes_worker_and_gateway_with_traffic(
    broker: EmbeddedBroker, test_settings: Settings, tmp_path: Path, uid: str
) -> None:
    room = f"p{uid}"
    records = records_of(generate(11, [room], "mixed", duration=120.0, rate=25.0))
    expected_cues = len(recompute(records, room).cues)
    assert expected_cues >= 1, "the simulated show should fire at least one cue"

    w: WorkerProc = await asyncio.to_thread(start_worker, test_settings, tmp_path / "worker.log", "w1")
    gw = Gateway(test_settings, CollectorRegistry(), limits=Limits(ready_timeout_s=20))
    prom: PrometheusServer | None = None
    ws = None
    try:
        await gw.start()
        targets = {"livecue-worker": _host_port(w.metrics_url), "livecue-gateway": _host_port(gw.url)}
        (tmp_path / "prom").mkdir()
        prom = PrometheusServer(tmp_path / "prom", targets)

        # real traffic: a controller screen on the gateway, a show through the worker
        ws = await connect(gw.ws_url)
        token = mint(test_settings.token_secret, "controller", [room], 3600, "prom-test", time.time())
        await ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
        reader = asyncio.create_task(_drain(ws))
        await asyncio.to_thread(produce, broker.bootstrap, records)

        server = prom

        def explain(last: Any) -> str:
            return (f"last seen: {last}\n--- prometheus log ---\n{server.log_tail()}"
                    f"\n--- worker log ---\n{w.log_tail(15)}")

        # 1) both targets healthy and up == 1
        last: Any = None
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            assert server.proc.poll() is None, f"prometheus exited: {server.log_tail()}"
            try:
                active = (await asyncio.to_thread(server.api, "targets", state="active"))["activeTargets"]
                up = {job: await asyncio.to_thread(server.query, f'up{{job="{job}"}}') for job in JOBS}
            except (urllib.error.URLError, ConnectionError):  # not listening yet
                await asyncio.sleep(0.5)
                continue
            last = ([(t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastError"]) for t in active], up)
            healthy = {t["labels"]["job"] for t in active if t["health"] == "up"}
            if healthy >= set(JOBS) and all(v == 1 for v in up.values()):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"both targets up within {DEADLINE_S:.0f} s\n{explain(last)}")
        by_job = {t["labels"]["job"]: t for t in active}
        assert by_job["livecue-worker"]["scrapeUrl"] == w.metrics_url
        assert by_job["livecue-gateway"]["scrapeUrl"] == gw.url + "/metrics"
        assert all(by_job[j]["health"] == "up" and by_job[j]["lastError"] == "" for j in JOBS)
        assert up == {"livecue-worker": 1.0, "livecue-gateway": 1.0}

        # 2) the traffic is in Prometheus: events consumed, cues, and the gateway's records
        exprs = {
            "events": "sum(livecue_events_consumed_total)",
            "cues": "sum(livecue_cues_total)",
            "gateway_records": "sum(livecue_gateway_records_consumed_total)",
            "screens": 'sum(livecue_gateway_connections{role="controller"})',
            "build_info": 'count(livecue_build_info == 1)',
        }
        values: dict[str, float | None] = {}
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            values = {k: await asyncio.to_thread(server.query, e) for k, e in exprs.items()}
            if (values["events"] or 0) >= len(records) and (values["cues"] or 0) >= expected_cues \
                    and (values["gateway_records"] or 0) > 0:
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"the show's traffic in Prometheus within {DEADLINE_S:.0f} s\n{explain(values)}")
        assert values["events"] is not None and values["events"] > 0
        assert values["cues"] is not None and values["cues"] > 0
        # Prometheus saw what the worker itself reports (no other source of these series)
        assert values["events"] == metric_value(await asyncio.to_thread(w.metrics), "livecue_events_consumed_total") == len(records)
        assert values["cues"] >= expected_cues
        assert values["gateway_records"] is not None and values["gateway_records"] > 0
        assert values["screens"] == 1
        assert values["build_info"] == 2  # one per component
        components = {r["metric"]["component"]: r["metric"]["job"]
                      for r in (await asyncio.to_thread(server.api, "query", query="livecue_build_info"))["result"]}
        assert components == {"worker": "livecue-worker", "gateway": "livecue-gateway"}
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    finally:
        if ws is not None:
            await ws.close()
        if prom is not None:
            await asyncio.to_thread(prom.stop)
        await gw.stop()
        await asyncio.to_thread(w.stop)


async def _drain(ws: Any) -> None:
    async for _ in ws:
        pass
