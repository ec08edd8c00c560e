"""LiveCue on a secured Apache Kafka: SASL_SSL with SCRAM, a CA and certificates made by the test,
TLS client authentication required.

The SCRAM users are written by Kafka's own storage tool (``kafka-storage format --add-scram``);
the client listener accepts only SASL_SSL with a client certificate signed by the test CA. The
test reads outputs back through the cluster's internal plaintext listener (loopback only).

- the whole stack works: ``livecue topics``, a worker (Faust, ``broker_credentials``),
  ``livecue simulate`` into Kafka, ``livecue record``, and the gateway's websocket screens get
  the backtest's cues;
- a wrong password, and a CA that did not sign the broker's certificate, stop every command
  with exit code 1 and one line on stderr naming the cause (no retry loop filling the log).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect

from consumers.tokens import mint
from harness import REPO, collect, start_worker
from kafka_harness import Pki, make_pki, secured_env
from livecue.config import Settings, load_settings, settings_env
from livecue.kafka_cluster import ClusterSecurity, KafkaCluster
from livecue.recording import read_recording
from livecue.sim.backtest import run_backtest
from stream.playbook import default_playbook

pytestmark = pytest.mark.slow

USER, PASSWORD = "livecue-app", "s3cret-pa55-word"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaCluster, Pki, Path]]:
    d = tmp_path_factory.mktemp("secured")
    pki = make_pki(d / "pki")
    sec = ClusterSecurity("SASL_SSL", {USER: PASSWORD}, pki.ca, pki.broker_keystore, client_auth="required")
    c = KafkaCluster(nodes=1, base_dir=d / "kafka", security=sec).start()
    pw = d / "password"
    pw.write_text(PASSWORD + "\n")
    try:
        yield c, pki, pw
    finally:
        c.stop()


def _settings(c: KafkaCluster, env: dict[str, str], tmp_path: Path, uid: str) -> Settings:
    return load_settings({
        "LIVECUE_BROKER": c.url, "LIVECUE_APP_ID": f"livecue-sec-{uid}", "LIVECUE_DATA_DIR": str(tmp_path / "data"),
        "LIVECUE_METRICS_PORT": "0", "LIVECUE_GATEWAY_PORT": "0", "LIVECUE_HEARTBEAT_INTERVAL_S": "0.5",
        "LIVECUE_COMMIT_INTERVAL_S": "0.2", "LIVECUE_TOKEN_SECRET": "secured-test-secret-" + uid * 3,
        "LIVECUE_LOG_FORMAT": "text", **env,
    })


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "livecue.cli", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


async def test_the_stack_works_end_to_end_on_sasl_ssl(
    secured: tuple[KafkaCluster, Pki, Path], tmp_path: Path, uid: str
) -> None:
    cluster, pki, pw = secured
    settings = _settings(cluster, secured_env(pki, USER, pw), tmp_path, uid)
    env = settings_env(settings)
    assert "LIVECUE_KAFKA_PASSWORD_FILE" in env and env["LIVECUE_KAFKA_PASSWORD_FILE"] == ""

    t = _cli("topics", "--timeout", "30", env=env)
    assert t.returncode == 0, t.stderr
    assert len([ln for ln in t.stdout.splitlines() if ln.endswith("\tcreated")]) == 10

    show = tmp_path / "show.jsonl"
    prefix = f"sec-{uid}-"
    s = _cli("simulate", "--out", str(show), "--rooms", "1", "--room-prefix", prefix, "--scenario", "mixed",
             "--duration", "240", "--seed", "7", "--quiet", env=env)
    assert s.returncode == 0, s.stderr
    records = list(read_recording(show))
    expected = {c.cue_id for c in run_backtest(records, default_playbook()).cues}
    assert expected

    worker = start_worker(settings, tmp_path / "worker.log", f"sec-{uid}")
    gw = subprocess.Popen([sys.executable, "-m", "livecue.cli", "gateway"], cwd=REPO, env={**os.environ, **env},
                          stdout=subprocess.PIPE, stderr=open(tmp_path / "gateway.log", "wb"), stdin=subprocess.DEVNULL)  # noqa: SIM115
    rec = subprocess.Popen([sys.executable, "-m", "livecue.cli", "record", "--out", str(tmp_path / "rec.jsonl"),
                            "--duration", "25", "--room", prefix + "1"], cwd=REPO, env={**os.environ, **env},
                           stdout=subprocess.DEVNULL, stderr=open(tmp_path / "record.log", "wb"), stdin=subprocess.DEVNULL)  # noqa: SIM115
    try:
        assert gw.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(gw.stdout.readline), 60)
        url = next((w for w in line.decode().split() if w.startswith("http://")), None)
        assert url, f"gateway printed {line!r}: {(tmp_path / 'gateway.log').read_text()[-2000:]}"
        ws_base = "ws://" + url.split("://", 1)[1].split("/", 1)[0]
        tok = mint(settings.token_secret, "controller", [prefix + "1"], 3600, "tester", time.time())
        async with connect(ws_base + "/ws") as ws:
            await ws.send(orjson.dumps({"type": "auth", "token": tok}).decode())
            hello = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert hello["type"] == "hello", hello

            r = _cli("replay", str(show), "--speed", "max", "--quiet", env=env)
            assert r.returncode == 0, r.stderr
            screen: set[str] = set()
            deadline = time.monotonic() + 90
            while not expected <= screen and time.monotonic() < deadline:
                try:
                    m = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
                except TimeoutError:
                    continue
                if m["type"] == "cue":
                    screen.add(m["cue_id"])
        assert screen == expected, worker.log_tail()
        on_topic = await collect(cluster.internal_bootstrap, "live.cues", lambda v: v.get("room_id") == prefix + "1",
                                 lambda got: expected <= {c["cue_id"] for c in got}, timeout=30)
        assert {c["cue_id"] for c in on_topic} == expected
        assert rec.wait(60) == 0, (tmp_path / "record.log").read_text()[-2000:]
        recorded = list(read_recording(tmp_path / "rec.jsonl"))
        assert len(recorded) == len(records), "record read back every replayed event over SASL_SSL"
    finally:
        for p in (gw, rec):
            if p.poll() is None:
                p.terminate()
                p.wait(20)
        worker.stop()
    assert worker.proc.returncode == 0, worker.log_tail()


BAD_CASES = {
    "wrong password": ("authentication failed", lambda pki, d: {"LIVECUE_KAFKA_PASSWORD_FILE": str(d / "wrong")}),
    "untrusted certificate": ("not trusted", lambda pki, d: {"LIVECUE_KAFKA_CA_FILE": str(pki.other_ca)}),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_credentials_stop_every_command_with_one_line(
    secured: tuple[KafkaCluster, Pki, Path], tmp_path: Path, uid: str, case: str
) -> None:
    cluster, pki, pw = secured
    (tmp_path / "wrong").write_text("not-the-password\n")
    want, change = BAD_CASES[case]
    env = {
        "LIVECUE_BROKER": cluster.url, "LIVECUE_LOG_FORMAT": "text", "LIVECUE_METRICS_PORT": "0",
        "LIVECUE_GATEWAY_PORT": "0", "LIVECUE_DATA_DIR": str(tmp_path / "data"),
        "LIVECUE_TOKEN_SECRET": "secured-test-secret-" + uid * 3,
        **secured_env(pki, USER, pw), **change(pki, tmp_path),
    }
    show = tmp_path / "one.jsonl"
    show.write_text("")
    commands = {
        "worker": ["worker"], "gateway": ["gateway"], "topics": ["topics"],
        "simulate": ["simulate", "--duration", "5", "--speed", "max", "--quiet"],
        "replay": ["replay", str(show), "--quiet"], "record": ["record", "--out", str(tmp_path / "r.jsonl")],
    }
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "livecue.cli", *args], cwd=REPO, env={**os.environ, **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        for name, args in commands.items()
    }
    results = {}
    for name, p in procs.items():
        try:
            _, err = p.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            pytest.fail(f"{name} kept running with {case}: {err[-1500:]}")
        results[name] = (p.returncode, [ln for ln in err.splitlines() if ln.strip()])
    for name, (rc, lines) in results.items():
        assert rc == 1, f"{name}: exit {rc}: {lines[-10:]}"
        assert len(lines) == 1, f"{name}: expected one line, got {len(lines)}: {lines[:10]}"
        assert lines[0].startswith(f"livecue {name}: cannot connect to Kafka") and want in lines[0], lines[0]
        assert PASSWORD not in lines[0] and "not-the-password" not in lines[0]


def test_secured_settings_are_validated_before_any_connection(tmp_path: Path) -> None:
    env = {"LIVECUE_BROKER": "kafka://127.0.0.1:9", "LIVECUE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "LIVECUE_KAFKA_USERNAME": "u", "LIVECUE_LOG_FORMAT": "text"}
    r = _cli("topics", env=env, timeout=30)
    assert r.returncode == 2 and "needs kafka_username and a password" in r.stderr
    r = _cli("topics", env={**env, "LIVECUE_KAFKA_PASSWORD": "p", "LIVECUE_KAFKA_CERT_FILE": str(tmp_path / "c.pem")},
             timeout=30)
    assert r.returncode == 2 and "kafka_cert_file and kafka_key_file" in r.stderr


async def test_a_secured_client_waits_for_a_broker_that_is_not_up_yet(
    secured: tuple[KafkaCluster, Pki, Path], tmp_path: Path, uid: str
) -> None:
    """Only TLS and authentication failures are final: a refused connection (the broker still
    starting, as under docker-compose) is retried until the check's timeout."""
    from livecue.broker import free_port
    from livecue.kafka_client import check_connection

    cluster, pki, pw = secured
    port = free_port()
    target_port = cluster.nodes[0].port
    settings = _settings(cluster, secured_env(pki, USER, pw), tmp_path, uid).replace(broker=f"127.0.0.1:{port}")

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        finally:
            w.close()

    async def forward(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        tr, tw = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(r, tw), pipe(tr, w), return_exceptions=True)

    check = asyncio.create_task(check_connection(settings, timeout=60))
    await asyncio.sleep(1.5)  # nothing listens yet: the check must still be trying
    assert not check.done(), check.exception() if check.done() else None
    server = await asyncio.start_server(forward, "127.0.0.1", port)  # the "broker" comes up
    try:
        await asyncio.wait_for(check, 60)  # bootstraps through the late listener, then succeeds
    finally:
        server.close()
