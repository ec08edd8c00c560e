"""``livecue worker`` as the bench sees it: a child process, measured from outside.

:func:`start_worker` runs ``python -m livecue.cli worker`` with the bench's settings and waits
for its metrics URL. :func:`catch_up` then watches one or more workers of a group drain a
backlog through their ``/metrics``: progress is ``livecue_events_released_total`` (events
released through the core) where the worker has it, else ``livecue_events_consumed_total``;
the clock starts at the first progress and stops when every event is counted. CPU time is what
the kernel charged to the worker processes (``/proc/PID/stat``) over the same interval.

``python -m bench.worker`` is kept as a shortcut for ``livecue bench --only ceiling,worker``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livecue.config import load_settings, settings_env

from .common import (Child, busy_cores, env_with, host_cpu_s, metric_sum, proc_cpu_s, proc_rss_mb, progress,
                     scrape, start_child)

__all__ = ["WorkerChild", "start_worker", "start_workers", "per_worker", "catch_up", "worker_settings_env", "RELEASED", "CONSUMED", "FORCED"]

RELEASED = "livecue_events_released_total"
CONSUMED = "livecue_events_consumed_total"
FORCED = "livecue_aligner_forced_total"
#: how often the drain is polled through ``/metrics`` once it began: every scrape costs the
#: worker a full exposition (py-spy: polling every 50 ms took ~12 % of a worker's busy samples,
#: a real Prometheus scrapes every 15 s); near the end it is polled every 50 ms again
#: (:func:`_next_poll`), the start is the last poll (every 50 ms) that saw nothing
POLL_S = 0.5


@dataclass
class WorkerChild:
    child: Child
    metrics_url: str

    @property
    def pid(self) -> int:
        return self.child.pid

    def stop(self) -> None:
        self.child.stop()


def worker_settings_env(broker_url: str, app_id: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """``LIVECUE_*`` env of a bench worker: its own group, fast group formation on Tansu, quiet logs."""
    base = {
        "LIVECUE_BROKER": broker_url, "LIVECUE_APP_ID": app_id, "LIVECUE_DATA_DIR": str(data_dir),
        "LIVECUE_METRICS_PORT": "0", "LIVECUE_REBALANCE_TIMEOUT_S": "2", "LIVECUE_SESSION_TIMEOUT_S": "6",
        "LIVECUE_HEARTBEAT_INTERVAL_S": "0.5", "LIVECUE_LOG_FORMAT": "json", "LIVECUE_LOG_LEVEL": "WARNING",
    }
    # a LIVECUE_* setting in the bench's own environment tunes its workers (the broker, app id,
    # data dir and metrics port stay the bench's)
    fixed = ("LIVECUE_BROKER", "LIVECUE_APP_ID", "LIVECUE_DATA_DIR", "LIVECUE_METRICS_PORT")
    base.update({k: v for k, v in os.environ.items() if k.startswith("LIVECUE_") and k not in fixed})
    base.update(extra)
    return settings_env(load_settings(base))


def start_worker(env: dict[str, str], log_path: Path, name: str = "worker") -> WorkerChild:
    """A ``livecue worker`` child; returns once it printed its metrics URL."""
    child = start_child(name, ["livecue.cli", "worker", "--no-create-topics"], env_with(env), log_path,
                        "metrics: ", timeout=90)
    return WorkerChild(child, child.first_line.split("metrics: ", 1)[1].strip())


def start_workers(envs: list[dict[str, str]], log_paths: list[Path], name: str) -> list[WorkerChild]:
    """Several workers spawned at once (not one after another's start-up), so that they join
    their group together."""
    import subprocess

    from .common import Child, _drain

    procs = []
    for env, log_path in zip(envs, log_paths, strict=True):
        with open(log_path, "ab") as log_file:
            procs.append(subprocess.Popen([sys.executable, "-m", "livecue.cli", "worker", "--no-create-topics"],
                                          env=env_with(env), stdout=subprocess.PIPE, stderr=log_file,
                                          stdin=subprocess.DEVNULL))
    out = []
    try:
        for i, (proc, log_path) in enumerate(zip(procs, log_paths, strict=True)):
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            child = Child(f"{name}-{i}", proc, log_path, line.strip())
            if not line.startswith("metrics: "):
                raise RuntimeError(f"{name}-{i} did not start: {child.log_tail()}")
            _drain(proc.stdout)
            out.append(WorkerChild(child, line.split("metrics: ", 1)[1].strip()))
    except BaseException:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    return out


def per_worker(workers: Sequence[WorkerChild]) -> list[int]:
    """Events each worker counted (its progress metric)."""
    return [int(read_progress(w).value) for w in workers]


@dataclass
class Progress:
    metric: str
    value: float
    forced: float
    text: str = field(repr=False, default="")


def read_progress(w: WorkerChild) -> Progress:
    text = scrape(w.metrics_url)
    released = metric_sum(text, RELEASED)
    if released is not None:
        return Progress(RELEASED, released, metric_sum(text, FORCED) or 0.0, text)
    return Progress(CONSUMED, metric_sum(text, CONSUMED) or 0.0, metric_sum(text, FORCED) or 0.0, text)


def _next_poll(t_first: float | None, now: float, counted: float, left: float) -> float:
    """Seconds to the next poll: 50 ms until the drain begins and once its end is less than two
    ``POLL_S`` away at the rate so far, ``POLL_S`` in between. The end is interpolated between the
    last two polls, which assumes progress went on until the second one: with 0.5 s polls a drain
    that ended just after a poll was measured up to 0.5 s long. The --quick one-worker drain
    (~2 s) came out at 92-95k events/s with them, 108-115k with this."""
    if t_first is None or counted <= 0 or now <= t_first:
        return 0.05
    eta = left / (counted / (now - t_first))
    return POLL_S if eta > 2 * POLL_S else 0.05


def catch_up(workers: Sequence[WorkerChild], n: int, label: str, stall_s: float = 30.0,
             timeout_s: float = 900.0, first_progress_s: float = 60.0) -> dict[str, Any]:
    """Watch ``workers`` drain a backlog of ``n`` events; figures of the drain.

    Returns ``eps`` (events counted after the first progress, over the time since), ``cpu_us_per_event``
    (all workers' CPU over the same interval), ``worker_cores`` and ``host_busy_cores`` (the
    workers' CPU, and the whole host's busy time, in cores over that interval; ``host_cores``
    is how many it has), ``forced_releases``, ``progress_metric``, ``events_counted``,
    ``complete`` (False when progress stalled for ``stall_s`` or ``timeout_s`` passed first).
    Raises RuntimeError if a worker dies or shows no progress within ``first_progress_s``.
    """
    t_first: float | None = None
    done_first = 0.0
    cpu_first = 0.0
    host_first = (0.0, 0.0)
    cpu_first_at = 0.0
    started_at: list[float | None] = [None] * len(workers)  # when each worker's progress was first seen
    last_value, last_change = -1.0, time.monotonic()
    t_last_change = time.perf_counter()
    last_report = 0.0
    started = time.monotonic()
    deadline = started + timeout_s
    complete = False
    prev: tuple[float, float] | None = None
    while True:
        for w in workers:
            if not w.child.alive():
                raise RuntimeError(f"{label}: worker {w.pid} died (exit {w.child.proc.returncode}): "
                                   f"{w.child.first_error() or w.child.log_tail()} (log: {w.child.log_path})")
        ps = [read_progress(w) for w in workers]
        done = sum(p.value for p in ps)
        now = time.perf_counter()
        for i, p in enumerate(ps):
            if p.value > 0 and started_at[i] is None:
                started_at[i] = now
        if done > 0 and t_first is None:
            # the drain began after the last poll that saw nothing (polled every 50 ms until then)
            t_first, done_first = prev if prev is not None else (now, done)
            cpu_first = sum(proc_cpu_s(w.pid) for w in workers)
            host_first, cpu_first_at = host_cpu_s(), time.perf_counter()
        if done >= n:
            complete = True
            if prev is not None and done > prev[1]:
                # between two polls: interpolate when the n-th event was counted
                t_prev, d_prev = prev
                now = t_prev + (now - t_prev) * (n - d_prev) / (done - d_prev)
            break
        prev = (now, done)
        mono = time.monotonic()
        if t_first is None and mono - started > first_progress_s:
            raise RuntimeError(f"{label}: no event counted within {first_progress_s:.0f} s "
                               f"({ps[0].metric}); first error: {workers[0].child.first_error()} (log: {workers[0].child.log_path})")
        if done != last_value:
            last_value, last_change, t_last_change = done, mono, now
        elif mono - last_change > stall_s and t_first is not None:
            progress(f"{label}: no progress for {stall_s:.0f} s at {int(done):,}/{n:,}: stopping")
            break
        if mono > deadline:
            progress(f"{label}: timeout at {int(done):,}/{n:,}")
            break
        if mono - last_report > 3:
            progress(f"{label}: {int(done):,}/{n:,} events ({ps[0].metric})")
            last_report = mono
        time.sleep(_next_poll(t_first, now, done - done_first, n - done))
    cpu_end = sum(proc_cpu_s(w.pid) for w in workers)
    host_end, cpu_span = host_cpu_s(), time.perf_counter() - cpu_first_at
    ps = [read_progress(w) for w in workers]
    done = sum(p.value for p in ps)
    # Stalled (events that never count, e.g. dead letters where progress is "released"): the
    # rate up to the last progress, flagged incomplete.
    t_end = now if complete else t_last_change
    counted = (min(done, n) if complete else done) - done_first
    elapsed = t_end - (t_first if t_first is not None else t_end)
    return {
        "eps": counted / elapsed if elapsed > 0 and counted > 0 else None,
        "cpu_us_per_event": (cpu_end - cpu_first) * 1e6 / counted if counted > 0 else None,
        "forced_releases": int(sum(p.forced for p in ps)),
        "progress_metric": ps[0].metric,
        "events_counted": int(done),
        "complete": complete,
        "seconds": round(elapsed, 2),
        # what the workers took of the host's cores over the drain, and what the whole host kept
        # busy (workers, broker, the bench itself): whether a second worker had a core to use
        "worker_cores": round((cpu_end - cpu_first) / cpu_span, 2) if t_first is not None and cpu_span > 0 else None,
        "host_busy_cores": busy_cores(host_first, host_end) if t_first is not None else None,
        "host_cores": os.cpu_count(),
        # seconds between the first and the last worker's first progress (to a poll): a worker
        # that began late left the others alone meanwhile. On Tansu one of two workers started
        # at the same time sometimes gets its assignment 1.0 s after the other (a probe in
        # on_assigned); the --quick two-worker drain lasts ~1.1 s, so that run's ratio falls
        # from ~1.9 to ~0.9
        "start_skew_s": (round(max(seen) - min(seen), 2) if len(seen := [t for t in started_at if t is not None]) > 1
                         else 0.0 if len(workers) == 1 else None),
    }


def rss_mb(w: WorkerChild) -> float:
    return proc_rss_mb(w.pid)


def main() -> int:
    from livecue.cli import main as cli_main

    return cli_main(["bench", "--only", "ceiling,worker", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
