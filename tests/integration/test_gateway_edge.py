"""The gateway at the edge: behind a TLS-terminating proxy, bound to 0.0.0.0, with a separate
metrics listener, and with its refusal logs throttled under a flood."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from consumers.gateway import Gateway
from livecue.config import Settings
from producers import Kafka
from test_gateway import FORGER, TEST_LIMITS, closed_with, cue, http_get, recv, recv_type, sample, token


def _cert(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 (openssl must be installed)."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


@contextlib.asynccontextmanager
async def tls_proxy(cert: Path, key: Path, upstream_port: int) -> AsyncIterator[int]:
    """A TLS-terminating TCP proxy (as nginx or a cloud load balancer would be): TLS in, plain
    bytes to the gateway, Host header passed through untouched. Yields its port."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                w.close()

    async def client(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream_port)
        for t in (asyncio.create_task(pipe(cr, uw)), asyncio.create_task(pipe(ur, cw))):
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    server = await asyncio.start_server(client, "127.0.0.1", 0, ssl=ctx)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_behind_a_tls_terminating_proxy_the_page_origin_is_allowed_by_default(
        kafka: Kafka, test_settings: Settings, uid: str, tmp_path: Path) -> None:
    room = f"rtls-{uid}"
    cert, key = _cert(tmp_path)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    settings = test_settings.replace(gateway_host="0.0.0.0")  # the compose default
    async with Gateway(settings, CollectorRegistry(), limits=TEST_LIMITS) as gw, \
            tls_proxy(cert, key, gw.port) as pport:
        page = f"https://localhost:{pport}"
        # The page itself through the proxy, with its CSP naming only its own origin.
        status, headers, body = await asyncio.to_thread(_https_get, page + "/", client_ctx)
        assert status == 200 and b"control.js" in body
        assert "connect-src 'self';" in headers["Content-Security-Policy"]
        # The browser's websocket: wss to the same host, Origin = the https page.
        async with connect(f"wss://localhost:{pport}/ws", ssl=client_ctx, origin=page) as ws:  # type: ignore[arg-type]
            await ws.send(orjson.dumps({"type": "auth", "token": token(settings, "controller", room)}).decode())
            assert (await recv(ws))["type"] == "hello"
            await kafka.cue(cue(room, 1))
            assert (await recv_type(ws, "cue"))["cue_id"] == f"{room}-c1"
        # Another site's page is still refused, through the proxy and directly.
        for url, kw in ((f"wss://localhost:{pport}/ws", {"ssl": client_ctx}), (f"ws://127.0.0.1:{gw.port}/ws", {})):
            for evil in ("https://evil.example", f"https://localhost.evil.example:{pport}", "null"):
                with pytest.raises(InvalidStatus) as exc:
                    await connect(url, origin=evil, **kw)  # type: ignore[arg-type]
                assert exc.value.response.status_code == 403
        # Reached directly at an address of the machine: that address's page is allowed.
        direct = f"http://127.0.0.1:{gw.port}"
        async with connect(direct.replace("http", "ws") + "/ws", origin=direct) as ws:  # type: ignore[arg-type]
            await ws.send(orjson.dumps({"type": "auth", "token": token(settings, "viewer", room)}).decode())
            assert (await recv(ws))["type"] == "hello"
        with pytest.raises(InvalidStatus):  # the Host it was reached at is 127.0.0.1, not 192.0.2.1
            await connect(f"ws://127.0.0.1:{gw.port}/ws", origin=f"http://192.0.2.1:{gw.port}")  # type: ignore[arg-type]


def _https_get(url: str, ctx: ssl.SSLContext) -> tuple[int, dict[str, str], bytes]:
    import urllib.request
    with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
        return r.status, dict(r.headers), r.read()


async def test_a_configured_origin_list_replaces_the_host_rule(test_settings: Settings, uid: str) -> None:
    settings = test_settings.replace(gateway_host="0.0.0.0", allowed_origins=("https://ops.example.com",))
    async with Gateway(settings, CollectorRegistry(), limits=TEST_LIMITS) as gw:
        with pytest.raises(InvalidStatus):
            await connect(f"ws://127.0.0.1:{gw.port}/ws", origin=f"http://127.0.0.1:{gw.port}")  # type: ignore[arg-type]
        async with connect(f"ws://127.0.0.1:{gw.port}/ws", origin="https://ops.example.com") as ws:  # type: ignore[arg-type]
            await ws.send(orjson.dumps({"type": "auth", "token": token(settings, "viewer", f"ro-{uid}")}).decode())
            assert (await recv(ws))["type"] == "hello"


async def test_separate_metrics_listener(test_settings: Settings) -> None:
    settings = test_settings.replace(gateway_metrics_port=0, metrics_host="127.0.0.1")
    async with Gateway(settings, CollectorRegistry(), limits=TEST_LIMITS) as gw:
        assert gw.metrics_port and gw.metrics_port != gw.port
        status, _, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{gw.metrics_port}/metrics")
        assert status == 200 and b"livecue_gateway_connections" in body
        status, _, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{gw.metrics_port}/healthz")
        assert status == 200 and orjson.loads(body)["status"] == "ok"
        status, _, _ = await asyncio.to_thread(http_get, f"http://127.0.0.1:{gw.metrics_port}/")
        assert status == 404, "no screens on the metrics listener"
        status, _, _ = await asyncio.to_thread(http_get, gw.url + "/metrics")
        assert status == 404, "no metrics on the public screen port"
        status, _, _ = await asyncio.to_thread(http_get, gw.url + "/healthz")
        assert status == 200


async def test_a_flood_of_refusals_writes_a_few_log_lines_and_counts_every_one(
        test_settings: Settings, uid: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="consumers.gateway")
    async with Gateway(test_settings, CollectorRegistry(), limits=TEST_LIMITS) as gw:
        for _ in range(40):
            with pytest.raises(InvalidStatus):
                await connect(gw.ws_url, origin="http://evil.example")  # type: ignore[arg-type]
        forged = token(test_settings, "viewer", f"rf-{uid}", secret=FORGER)
        for _ in range(40):
            ws = await connect(gw.ws_url)
            await ws.send(orjson.dumps({"type": "auth", "token": forged}).decode())
            assert (await closed_with(ws))[0] == 1008
        assert sample(gw, "livecue_gateway_refused_total", reason="bad_origin") == 40
        assert sample(gw, "livecue_gateway_refused_total", reason="bad_token") == 40
    lines = [r for r in caplog.records if r.name == "consumers.gateway"]
    origin_lines = [r for r in lines if r.getMessage() == "refused: origin not allowed"]
    token_lines = [r for r in lines if r.getMessage() == "refused"]
    assert 1 <= len(origin_lines) <= 5 and 1 <= len(token_lines) <= 5, (len(origin_lines), len(token_lines))
    assert not [r for r in lines if r.getMessage() == "screen disconnected"], \
        "a refused socket is logged once, not twice"
    print(f"\nrefusal logs: 80 refusals -> {len(origin_lines) + len(token_lines)} log lines")


async def test_limits_come_from_the_settings(test_settings: Settings, uid: str) -> None:
    settings = test_settings.replace(gateway_send_queue=32, gateway_rate_per_s=3.0, gateway_burst=4,
                                     gateway_backlog_cues=7, gateway_auth_timeout_s=0.5)
    async with Gateway(settings, CollectorRegistry()) as gw:
        ws = await connect(gw.ws_url)
        await ws.send(orjson.dumps({"type": "auth", "token": token(settings, "controller", f"rl-{uid}")}).decode())
        hello = await recv(ws)
        assert hello["limits"]["rate_per_s"] == 3.0 and hello["limits"]["burst"] == 4
        assert hello["limits"]["backlog_cues"] == 7 and gw.backlog.max_cues == 7
        for _ in range(5):  # burst 4: the fifth message trips the limiter
            await ws.send('{"type":"resume","rooms":{}}')
        code, msgs = await closed_with(ws)
        assert code == 1008 and any(m.get("code") == "rate_limited" for m in msgs)
        idle = await connect(gw.ws_url)  # never authenticates: closed after 0.5 s
        code, msgs = await closed_with(idle, timeout=3)
        assert code == 1008 and msgs[0]["code"] == "auth_timeout"


async def test_the_per_token_cap_is_keyed_on_the_token_id_not_its_spelling(
        test_settings: Settings, uid: str) -> None:
    """Under the old hand-rolled format one token had several spellings (spare bits in the
    MAC's last base64url character), each with its own fingerprint and its own cap. Now a
    re-spelt signature does not verify at all, and the cap counts the verified jti, so
    differently spelt tokens with one id (minted at different times) share it."""
    from consumers.tokens import TokenError, verify
    settings = test_settings.replace(max_connections_per_token=2)
    jti = f"one-id-{uid}"
    spellings = [token(settings, "viewer", f"rs-{uid}", jti=jti, now=time.time() - k) for k in (0, 1, 2)]
    assert len(set(spellings)) == 3
    tok = spellings[0]
    for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        if tok[:-1] + ch != tok:
            with pytest.raises(TokenError):
                verify(settings.token_secret, tok[:-1] + ch)
    async with Gateway(settings, CollectorRegistry(), limits=TEST_LIMITS) as gw:
        open_ = []
        for s in spellings[:2]:
            ws = await connect(gw.ws_url)
            await ws.send(orjson.dumps({"type": "auth", "token": s}).decode())
            assert (await recv(ws))["type"] == "hello"
            open_.append(ws)
        ws = await connect(gw.ws_url)
        await ws.send(orjson.dumps({"type": "auth", "token": spellings[2]}).decode())
        code, msgs = await closed_with(ws)
        assert code == 1008 and msgs[0]["code"] == "too_many"
        other = await connect(gw.ws_url)  # another id is not affected
        await other.send(orjson.dumps({"type": "auth", "token": token(settings, "viewer", f"rs-{uid}")}).decode())
        assert (await recv(other))["type"] == "hello"
        for ws in open_ + [other]:
            await ws.close()
