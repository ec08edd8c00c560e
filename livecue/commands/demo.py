"""``livecue demo``: everything on one machine — an embedded broker, a worker, the gateway, the
reporter and a simulated two-room show — and the URLs of the control-room, host and wall screens.

When a show ends (every ``--duration`` seconds of show time) the reporter writes each room's
review (复盘) into the demo's temporary directory and the screens' review buttons open it.

The worker, the gateway and the reporter run as child processes (``python -m livecue.cli worker|gateway``)
that die with this one (``PR_SET_PDEATHSIG``); Ctrl-C stops the show, then the children, then
the broker, and leaves no process behind. Their logs go to files in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from livecue.broker import EmbeddedBroker, create_topics, die_with_parent, free_port
from livecue.config import Settings
from livecue.kafka_client import client_kwargs
from livecue.commands.token import refuse_secret_flag
from livecue.recording import Record, record_of
from livecue.sim import SCENARIOS, generate
from livecue.sim.send import Progress, parse_speed, send_paced
from schemas.events import TOPIC_CUES

NAME = "demo"
HELP = "run everything locally (broker, worker, gateway, reporter, a simulated two-room show) and print the screen URLs"
# token_secret has no flag (a flag shows in the process list): LIVECUE_TOKEN_SECRET[_FILE] or random.
SETTINGS = ("broker", "partitions", "gateway_host", "gateway_port", "playbook",
            "linger_ms", "log_format", "log_level")

TOKEN_TTL_S = 12 * 3600
#: The demo's reporter waits this long after a session_end (late payments and acks).
REVIEW_DELAY_S = 3.0
#: the worker's bound on events dated ahead of its clock when the demo runs faster than real time
FAST_MAX_FUTURE_MS = 86_400_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    refuse_secret_flag(p)
    p.add_argument("--external-broker", action="store_true",
                   help="use the Kafka named by --broker / LIVECUE_BROKER instead of starting the embedded one")
    p.add_argument("--rooms", type=int, default=2, help="simulated rooms (default 2)")
    p.add_argument("--scenario", choices=tuple(SCENARIOS), default="mixed", help="simulated show (default mixed)")
    p.add_argument("--speed", default="1", help="show pacing: 1 = real time (default), N = N times faster")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    p.add_argument("--duration", type=float, default=600.0,
                   help="seconds of one show; the demo starts the next show when one ends (default 600)")


def _wait_log(path: Path, text: str, timeout: float, procs: list[subprocess.Popen[bytes]]) -> bool:
    deadline = time.monotonic() + timeout
    needle = text.encode()
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        with contextlib.suppress(OSError):
            if needle in path.read_bytes():
                return True
        time.sleep(0.2)
    return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _wait_http(url: str, timeout: float, procs: list[subprocess.Popen[bytes]]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - our own local gateway
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


class _Children:
    """The worker, gateway and reporter processes; stopped in reverse order, politely then firmly."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            [sys.executable, "-m", "livecue.cli", name, *args], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, env=self.env, preexec_fn=die_with_parent, start_new_session=True,
        )
        self.procs.append((name, proc, log))
        return proc

    def dead(self) -> str | None:
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                return f"{name} exited with code {proc.returncode} (log: {self.log_dir / (name + '.log')})"
        return None

    def stop(self, timeout: float = 10.0) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, proc, _ in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for _, _, log in self.procs:
            log.close()
        self.procs.clear()


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        speed = parse_speed(args.speed)
    except ValueError as exc:
        print(f"livecue demo: {exc}", file=sys.stderr)
        return 2
    stop = {"sig": False}

    def on_signal(*_: object) -> None:
        stop["sig"] = True
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    work = Path(tempfile.mkdtemp(prefix="livecue-demo-"))
    broker: EmbeddedBroker | None = None
    children: _Children | None = None
    try:
        say = _say
        if args.external_broker:
            url, bootstrap = settings.broker_url, settings.broker
            say(f"using the broker at {url}")
        else:
            say("starting the embedded broker (Tansu) ...")
            broker = EmbeddedBroker(log_path=work / "broker.log").start()
            url, bootstrap = broker.url, broker.bootstrap
        # A secured cluster's settings apply to an external broker only; the embedded one is plain.
        security = client_kwargs(settings) if args.external_broker else {}
        asyncio.run(create_topics(bootstrap, settings.partitions, security=security))
        host = settings.gateway_host
        port = settings.gateway_port if settings.gateway_port and _port_free(host, settings.gateway_port) else free_port(host)
        secret = settings.token_secret or secrets.token_urlsafe(32)
        tag = secrets.token_hex(3)
        env = dict(os.environ)
        env.update({
            "LIVECUE_BROKER": url,
            "LIVECUE_TOKEN_SECRET": secret,
            "LIVECUE_TOKEN_SECRET_FILE": "",  # already read into secret
            **({} if args.external_broker else {"LIVECUE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}),
            "LIVECUE_GATEWAY_HOST": host,
            "LIVECUE_GATEWAY_PORT": str(port),
            "LIVECUE_APP_ID": f"livecue-demo-{tag}",
            "LIVECUE_DATA_DIR": str(work / "data"),
            "LIVECUE_REPORTS_DIR": str(work / "reports"),
            "LIVECUE_METRICS_PORT": "0",
            "LIVECUE_LOG_FORMAT": "text",
            "LIVECUE_LOG_LEVEL": settings.log_level,
            "LIVECUE_PARTITIONS": str(settings.partitions),
        })
        if not args.external_broker:
            # Tansu forms a consumer group only after the rebalance timeout: keep it short.
            env.update({"LIVECUE_REBALANCE_TIMEOUT_S": "3", "LIVECUE_SESSION_TIMEOUT_S": "6",
                        "LIVECUE_HEARTBEAT_INTERVAL_S": "0.5"})
        if settings.playbook is not None:
            env["LIVECUE_PLAYBOOK"] = str(settings.playbook)
        if speed != 1.0:
            # Faster than real time, show time runs ahead of the wall clock (10x: a 10-minute
            # show is sent in one minute, its end dated 9 minutes ahead). The worker dead-letters
            # events dated more than LIVECUE_MAX_FUTURE_MS (5 min) ahead, so the demo allows the
            # most it can (24 h: hours of a fast demo).
            env["LIVECUE_MAX_FUTURE_MS"] = str(FAST_MAX_FUTURE_MS)
        children = _Children(work, env)
        say("starting the worker, the gateway and the reporter ...")
        children.start("worker", "--no-create-topics")
        gw = children.start("gateway")
        reporter = children.start("reporter", "--delay", str(REVIEW_DELAY_S))
        base = f"http://{host}:{port}"
        if not _wait_http(base + "/healthz", 30, [gw]):
            say(f"the gateway did not come up: {children.dead() or 'no answer on ' + base + '/healthz'}")
            return 1
        # it reads live.room from its end: ready before the first show can end
        if not _wait_log(work / "reporter.log", "reporter ready", 30, [reporter]):
            say(f"the reporter did not come up: {children.dead() or 'see ' + str(work / 'reporter.log')}")
            return 1
        rooms = [f"demo-{i}" for i in range(1, args.rooms + 1)]
        _print_urls(base, secret, rooms)
        say(f"broker {url}; logs and state in {work}")
        say(f"reviews (复盘): {REVIEW_DELAY_S:g} s after each show ends (every {args.duration:g} s of show "
            f"time), behind the review buttons of the control room and the wall; files in {work / 'reports'}")
        if speed != 1.0:
            say(f"at {args.speed}x show time runs ahead of the clock: the worker accepts events dated up to "
                f"{FAST_MAX_FUTURE_MS // 3_600_000} h ahead for this demo")
        say(f"simulating {len(rooms)} rooms ({args.scenario}, {args.speed}x); Ctrl-C stops everything\n")
        asyncio.run(_show(args, settings, bootstrap, rooms, speed, children))
        return 1 if children.dead() else 0
    except KeyboardInterrupt:
        return 0 if stop["sig"] else 130
    finally:
        for s, h in old.items():
            signal.signal(s, signal.SIG_IGN)
        _say("\nstopping ...")
        if children is not None:
            children.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
        for s, h in old.items():
            signal.signal(s, h)
        _say("stopped")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _print_urls(base: str, secret: str, rooms: list[str]) -> None:
    from consumers.tokens import mint

    now = time.time()
    ctl = mint(secret, "controller", rooms, TOKEN_TTL_S, "demo-controller", now)
    print(f"\ncontrol room (场控, all demo rooms):\n  {base}/#token={ctl}", flush=True)
    print(f"wall (运营, all demo rooms at a glance):\n  {base}/wall#token={ctl}", flush=True)
    for room in rooms:
        tok = mint(secret, "host", [room], TOKEN_TTL_S, f"demo-host-{room}", now)
        print(f"host screen (主播) for {room}:\n  {base}/host#token={tok}", flush=True)
    print(flush=True)


def _shows(args: argparse.Namespace, rooms: list[str]) -> Iterator[tuple[int | None, Record]]:
    seed, start = args.seed, int(time.time() * 1000)
    while True:
        for ev in generate(seed, rooms, args.scenario, start, args.duration, rate=30.0):
            yield ev.ts, record_of(ev)
        seed += 1
        start += int(args.duration * 1000) + 5000


async def _show(args: argparse.Namespace, settings: Settings, bootstrap: str, rooms: list[str],
                speed: float | None, children: _Children) -> None:
    security = client_kwargs(settings) if args.external_broker else {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def watch() -> None:
        while not stop.is_set():
            why = children.dead()
            if why:
                _say(f"\n{why}")
                stop.set()
            await asyncio.sleep(0.5)

    progress = Progress("demo: sent")
    watchers = [asyncio.create_task(watch()), asyncio.create_task(_tail_cues(bootstrap, set(rooms), progress, security))]
    try:
        await send_paced(_shows(args, rooms), bootstrap, linger_ms=settings.linger_ms, speed=speed or 1.0,
                         progress=progress, stop=stop, producer_options=security)
    finally:
        stop.set()
        for w in watchers:
            w.cancel()
            with contextlib.suppress(asyncio.CancelledError, KafkaError, OSError):
                await w


async def _tail_cues(bootstrap: str, rooms: set[str], progress: Progress,
                     security: dict[str, Any] | None = None) -> None:
    """Echo the demo rooms' cues in the terminal as the worker emits them (what the screens get)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=100, **(security or {}))
    await consumer.start()
    try:
        tps = [TopicPartition(TOPIC_CUES, p) for p in sorted(consumer.partitions_for_topic(TOPIC_CUES) or ())]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        while True:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for m in msgs:
                    try:
                        cue = orjson.loads(m.value or b"")
                        if cue.get("room_id") not in rooms:
                            continue
                        at = datetime.fromtimestamp(cue["ts"] / 1000).strftime("%H:%M:%S")
                        progress.note(f"cue {cue['room_id']} {at} {cue['kind']:<24} {cue['severity']:<8} {cue['headline']}")
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                        continue
    finally:
        await consumer.stop()
