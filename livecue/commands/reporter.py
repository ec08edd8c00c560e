"""``livecue reporter``: write each room's post-show review (复盘) into the reports directory when
its ``session_end`` arrives on ``live.room`` (the gateway serves them at ``/reports/``)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from consumers.reporter import Reporter
from livecue.config import Settings
from livecue.metrics import build_info, serve_metrics

NAME = "reporter"
HELP = "write a room's post-show review into LIVECUE_REPORTS_DIR when its session ends"
SETTINGS = ("broker", "reports_dir", "playbook", "playbook_dir", "metrics_host", "log_format", "log_level")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lang", choices=("zh", "en"), default="zh", help="language of the reviews (default zh)")
    p.add_argument("--delay", type=float, default=10.0, metavar="S",
                   help="seconds to wait after session_end for late payments and acks (default 10)")
    p.add_argument("--from-scratch", action="store_true",
                   help="do not follow shows while they run: read each one back from the topics after its end "
                        "(slow for long shows; the default follows them and falls back to this when it must)")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve /metrics on this port of LIVECUE_METRICS_HOST (0: a free one; default: none)")


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def written(path: Path) -> None:
        print(f"review: {path}", flush=True)

    registry = CollectorRegistry()
    build_info(registry, "reporter")
    if args.metrics_port is not None:
        _, port = serve_metrics(registry, settings.metrics_host, args.metrics_port)
        print(f"reporter metrics: http://{settings.metrics_host}:{port}/metrics", flush=True)
    rep = Reporter(settings, delay_s=args.delay, lang=args.lang, written=written, registry=registry,
                   follow=not args.from_scratch)
    task = asyncio.create_task(rep.run(stop))
    ready = asyncio.create_task(rep.wait_ready())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
        return 1
    print(f"reporter ready: reviews go to {settings.reports_dir}", flush=True)
    print("Ctrl-C stops it", file=sys.stderr, flush=True)
    await task
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    Path(settings.reports_dir).mkdir(parents=True, exist_ok=True)
    return asyncio.run(_serve(settings, args))
