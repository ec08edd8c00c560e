"""``livecue token``: mint a signed, expiring, room-scoped token for a screen."""

from __future__ import annotations

import argparse
import secrets
import sys
import time

from consumers.tokens import SCREEN_ROLES, mint, parse_ttl
from livecue.config import Settings

NAME = "token"
HELP = "mint a screen token (controller, host or viewer) for one or more rooms; prints it last"
SETTINGS = ("token_secret_file", "log_format", "log_level")  # the secret itself: env only


class _NoSecretFlag(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *_: object, **__: object) -> None:
        parser.error("--token-secret is not accepted (a flag shows in the process list): "
                     "set LIVECUE_TOKEN_SECRET or LIVECUE_TOKEN_SECRET_FILE")


def refuse_secret_flag(p: argparse.ArgumentParser) -> None:
    """Make ``--token-secret`` an error (without this, argparse would take it as an
    abbreviation of ``--token-secret-file`` and read a file named after the secret)."""
    p.add_argument("--token-secret", action=_NoSecretFlag, nargs="?", help=argparse.SUPPRESS)


def add_arguments(p: argparse.ArgumentParser) -> None:
    refuse_secret_flag(p)
    p.add_argument("--room", action="append", required=True, metavar="ROOM_ID",
                   help="a room the token grants (repeat for several)")
    p.add_argument("--role", choices=SCREEN_ROLES, default="controller", help="screen role (default controller)")
    p.add_argument("--ttl", default="12h", help="lifetime, e.g. 90m, 12h, 2d (default 12h)")
    p.add_argument("--by", default=None, help="who acts with it; recorded as `by` in live.acks (default: the role)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.token_secret:
        print("livecue token: LIVECUE_TOKEN_SECRET (or LIVECUE_TOKEN_SECRET_FILE) must hold the gateway's secret",
              file=sys.stderr)
        return 2
    try:
        ttl = parse_ttl(args.ttl)
        now = time.time()
        jti = secrets.token_hex(8)
        token = mint(settings.token_secret, args.role, args.room, ttl, args.by or args.role, now, jti=jti)
    except ValueError as exc:
        print(f"livecue token: {exc}", file=sys.stderr)
        return 2
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(now) + ttl))
    page = "/host" if args.role == "host" else "/"
    print(f"# role={args.role} rooms={','.join(args.room)} expires={expires} jti={jti}  "
          "(revoke it: add the jti to LIVECUE_REVOKED_TOKENS_FILE)")
    print(f"# open http://GATEWAY{page}#token=<token>  (the fragment never reaches server logs)")
    print(token)
    return 0
