"""``livecue gateway``: the websocket gateway for the control-room and host screens."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time

from prometheus_client import CollectorRegistry

from consumers.gateway import Gateway
from consumers.tokens import mint
from livecue.config import Settings
from livecue.commands.token import refuse_secret_flag

NAME = "gateway"
HELP = "serve the screens over websockets (reads live.cues / live.room_stats / live.acks)"
SETTINGS = (
    # token_secret is read from LIVECUE_TOKEN_SECRET (or the file) only: a flag shows in `ps`.
    "broker", "gateway_host", "gateway_port", "token_secret_file", "revoked_tokens",
    "revoked_tokens_file", "allowed_origins", "max_connections", "max_connections_per_token",
    "gateway_max_unauthenticated", "gateway_max_unauthenticated_per_address", "gateway_auth_timeout_s",
    "gateway_rate_per_s", "gateway_burst", "gateway_send_queue", "gateway_backlog_cues",
    "gateway_metrics_port", "metrics_host", "fetch_max_wait_ms", "linger_ms", "log_format", "log_level",
)

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    refuse_secret_flag(p)
    p.add_argument("--port", type=int, default=None, help="listen port (overrides --gateway-port; 0: a free one)")
    p.add_argument("--host", default=None, help="listen address (overrides --gateway-host)")
    p.add_argument("--dev-room", action="append", default=[], metavar="ROOM_ID",
                   help="dev only: print ready-to-open screen URLs with 12 h tokens for this room")


async def _serve(settings: Settings, dev_rooms: list[str]) -> int:
    gw = Gateway(settings, CollectorRegistry())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    port = await gw.start()
    try:
        base = f"http://{settings.gateway_host}:{port}"
        print(f"gateway ready on {base}  (websocket {gw.ws_url}, /metrics, /healthz)", flush=True)
        if dev_rooms:
            now = time.time()
            ctl = mint(gw.token_secret, "controller", dev_rooms, 12 * 3600, "dev-controller", now)
            host = mint(gw.token_secret, "host", dev_rooms[:1], 12 * 3600, "dev-host", now)
            print(f"control room: {base}/#token={ctl}", flush=True)
            print(f"host screen:  {base}/host#token={host}", flush=True)
        else:
            print(f"control room: {base}/#token=$(livecue token --room ROOM --role controller | tail -1)", flush=True)
            print(f"host screen:  {base}/host#token=$(livecue token --room ROOM --role host | tail -1)", flush=True)
        print("Ctrl-C stops it", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await gw.stop()
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    changes: dict[str, object] = {}
    if args.port is not None:
        changes["gateway_port"] = args.port
    if args.host is not None:
        changes["gateway_host"] = args.host
    settings = settings.replace(**changes)
    if not settings.token_secret and not args.dev_room:
        print("livecue gateway: LIVECUE_TOKEN_SECRET (or LIVECUE_TOKEN_SECRET_FILE) must be set; "
              "`livecue token` signs with the same secret (or pass --dev-room for a throwaway one)",
              file=sys.stderr)
        return 2
    return asyncio.run(_serve(settings, args.dev_room))
