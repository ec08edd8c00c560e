"""What every part of ``livecue bench`` shares: progress lines, topics, backlogs, child processes,
their CPU time and memory, their Prometheus counters, and quantiles.

CPU time comes from ``/proc/PID/stat`` (utime + stime of every thread, clock ticks), memory from
``/proc/PID/status`` (VmRSS): what the kernel charged to that process, not wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from livecue.broker import wait_ready
from livecue.memory import rss_mib
from livecue.recording import Record

__all__ = [
    "progress", "create_topics_with_configs", "produce_backlog", "proc_cpu_s", "proc_rss_mb",
    "scrape", "metric_sum", "quantile", "Child", "start_child", "CLK_TCK",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
_stderr: IO[str] = sys.stderr


def progress(msg: str) -> None:
    """One progress line on stderr (stdout carries only the result table)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=_stderr, flush=True)


async def create_topics_with_configs(bootstrap: str, topics: Iterable[str], partitions: int,
                                     configs: dict[str, str] | None = None) -> None:
    """Create ``topics`` (existing ones are left alone) with ``partitions`` and topic ``configs``."""
    await wait_ready(bootstrap, 20)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1,
                                                    topic_configs=dict(configs or {})) for t in wanted])
    finally:
        await admin.close()


async def partitions_of(bootstrap: str, topics: Iterable[str], timeout_s: float = 30.0) -> list[TopicPartition]:
    """Every partition of ``topics``, asked of the broker by name (a fresh aiokafka consumer's
    ``partitions_for_topic`` is empty on Apache Kafka until it has asked for those topics)."""
    from livecue.broker import topic_partitions

    wanted = list(topics)
    deadline = time.monotonic() + timeout_s
    while True:  # Apache Kafka creates a topic asynchronously: it may not be described yet
        counts = await topic_partitions(bootstrap, wanted)
        missing = [t for t in wanted if not counts.get(t)]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics not on the broker after {timeout_s:.0f} s: {', '.join(missing)}")
        await asyncio.sleep(0.2)
    return [TopicPartition(t, q) for t in wanted for q in range(counts[t])]


async def produce_backlog(bootstrap: str, records: Sequence[Record], label: str) -> float:
    """Send every record (aiokafka, default murmur2 partitioner, key = room) and wait for all acks.

    Returns the producer's events/s (a side figure: it bounds what the paced parts can offer).
    """
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024,
                         max_request_size=8 * 1024 * 1024)
    await p.start()
    t0 = time.perf_counter()
    try:
        futs = []
        step = max(1, len(records) // 5)
        for i, r in enumerate(records):
            futs.append(await p.send(r.topic, r.value, key=r.key_bytes))
            if i and i % step == 0:
                progress(f"{label}: produced {i:,}/{len(records):,}")
        await asyncio.gather(*futs)
    finally:
        await p.stop()
    return len(records) / max(1e-9, time.perf_counter() - t0)


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) the kernel charged to process ``pid`` so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def host_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole host so far, over all its cores (``/proc/stat``):
    busy is everything but idle and iowait. Two readings give the cores kept busy in between."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return (total - fields[3] - fields[4]) / CLK_TCK, total / CLK_TCK


def busy_cores(first: tuple[float, float], last: tuple[float, float]) -> float | None:
    """Cores the host kept busy between two :func:`host_cpu_s` readings (of ``os.cpu_count()``)."""
    busy, total = last[0] - first[0], last[1] - first[1]
    return round(busy / total * (os.cpu_count() or 1), 2) if total > 0 else None


def proc_rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (VmRSS, :func:`livecue.memory.rss_mib`)."""
    rss = rss_mib(pid)
    if rss is None:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return rss


def scrape(url: str, timeout: float = 5.0) -> str:
    """The text of a /metrics page ("" when it does not answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return str(r.read().decode())
    except OSError:
        return ""


def metric_sum(text: str, name: str) -> float | None:
    """Sum of every sample of ``name`` (all label sets); None when the metric is absent."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name):len(name) + 1] in ("{", " ")):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
        elif line.startswith(f"# TYPE {name} "):
            seen = True
    return total if seen else None


def hist_buckets(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram ``name`` (all label sets summed), by upper bound."""
    out: dict[float, float] = {}
    prefix = name + "_bucket{"
    for line in text.splitlines():
        if line.startswith(prefix):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = math.inf if le == "+Inf" else float(le)
            out[bound] = out.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def hist_quantile(before: str, after: str, name: str, q: float) -> float | None:
    """The ``q`` quantile of what histogram ``name`` observed between two scrapes, interpolated
    linearly inside its bucket (Prometheus' ``histogram_quantile``); None when nothing was."""
    a, b = hist_buckets(after, name), hist_buckets(before, name)
    bounds = sorted(a)
    counts = [a[x] - b.get(x, 0.0) for x in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lo_bound, lo_count = 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            if bound == math.inf:
                return lo_bound
            return lo_bound + (bound - lo_bound) * ((rank - lo_count) / (count - lo_count) if count > lo_count else 1.0)
        lo_bound, lo_count = bound, count
    return lo_bound


def quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1, nearest rank) of ``values``; None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


@dataclass
class Child:
    """A child process of the bench with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    first_line: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def first_error(self) -> str | None:
        """The first error a JSON-logging LiveCue child logged: its message and the exception's
        last line (what a crash report needs, not the tail of a long traceback)."""
        import json

        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return None
        for line in lines:
            if '"level":"error"' not in line and '"level":"critical"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            exc = str(rec.get("exc", "")).replace("\\n", "\n").strip().splitlines()
            where = [ln.strip() for ln in exc if ln.strip().startswith("File ")]
            return f"{rec.get('msg', '')} [{where[-1] if where else ''}: {exc[-1] if exc else ''}]"[:600]
        return None

    def log_tail(self, n: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-n:])[-600:]
        except OSError:
            return ""


def start_child(name: str, args: list[str], env: dict[str, str], log_path: Path,
                ready_prefix: str, timeout: float = 60.0) -> Child:
    """Start ``python -m livecue.cli ARGS`` (or any ``-m`` module) and wait for a stdout line
    starting with ``ready_prefix``; stderr goes to ``log_path``. Raises RuntimeError if it dies."""
    log_file = open(log_path, "ab")  # noqa: SIM115 - owned by the child's lifetime
    proc = subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=subprocess.PIPE,
                            stderr=log_file, stdin=subprocess.DEVNULL)
    log_file.close()
    child = Child(name, proc, log_path)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if line.startswith(ready_prefix):
                    child.first_line = line
                    os.set_blocking(proc.stdout.fileno(), True)
                    _drain(proc.stdout)
                    return child
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    child.stop()
    raise RuntimeError(f"{name} did not start ({ready_prefix!r} not seen): {child.log_tail()}")


def _drain(stream: IO[bytes]) -> None:
    """Keep reading a child's stdout in a thread so it never blocks on a full pipe."""
    import threading

    def pump() -> None:
        with contextlib.suppress(Exception):
            while stream.read(65536):
                pass

    threading.Thread(target=pump, daemon=True).start()


def env_with(base: dict[str, str], **extra: Any) -> dict[str, str]:
    """``os.environ`` + ``base`` + ``extra`` (values turned to text)."""
    return {**os.environ, **base, **{k: str(v) for k, v in extra.items()}}
