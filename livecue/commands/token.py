"""``livecue token``: mint a signed, expiring, room-scoped token for a screen."""

from __future__ import annotations

import argparse
import sys
import time

from consumers.tokens import SCREEN_ROLES, fingerprint, mint, parse_ttl
from livecue.config import Settings

NAME = "token"
HELP = "mint a screen token (controller, host or viewer) for one or more rooms; prints it last"
SETTINGS = ("token_secret", "log_format", "log_level")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--room", action="append", required=True, metavar="ROOM_ID",
                   help="a room the token grants (repeat for several)")
    p.add_argument("--role", choices=SCREEN_ROLES, default="controller", help="screen role (default controller)")
    p.add_argument("--ttl", default="12h", help="lifetime, e.g. 90m, 12h, 2d (default 12h)")
    p.add_argument("--by", default=None, help="who acts with it; recorded as `by` in live.acks (default: the role)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.token_secret:
        print("livecue token: LIVECUE_TOKEN_SECRET (or --token-secret) must be set to the gateway's secret",
              file=sys.stderr)
        return 2
    try:
        ttl = parse_ttl(args.ttl)
        now = time.time()
        token = mint(settings.token_secret, args.role, args.room, ttl, args.by or args.role, now)
    except ValueError as exc:
        print(f"livecue token: {exc}", file=sys.stderr)
        return 2
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(now) + ttl))
    page = "/host" if args.role == "host" else "/"
    print(f"# role={args.role} rooms={','.join(args.room)} expires={expires} fingerprint={fingerprint(token)}")
    print(f"# open http://GATEWAY{page}#token=<token>  (the fragment never reaches server logs)")
    print(token)
    return 0
