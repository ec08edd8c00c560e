"""Screen tokens: signed, expiring, room-scoped access grants (pure; time is passed in).

Format: ``lc1.<payload>.<mac>``, both parts base64url without padding. ``payload`` is compact
JSON ``{"v":1,"role":..,"rooms":[..],"by":..,"iat":..,"exp":..,"jti":..}`` (seconds since the
epoch) and ``mac`` is HMAC-SHA256 over ``"lc1." + payload`` with the shared secret. Verification
compares MACs with :func:`hmac.compare_digest` before it parses anything.

A token is a bearer secret: never log it; log :func:`fingerprint` instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

import orjson

from schemas.errors import LiveCueError

__all__ = [
    "ScreenRole", "SCREEN_ROLES", "Claims", "TokenError", "mint", "verify", "fingerprint",
    "parse_ttl", "MAX_TOKEN_CHARS", "MAX_ROOMS",
]

ScreenRole: TypeAlias = Literal["controller", "host", "viewer"]
SCREEN_ROLES: Final = ("controller", "host", "viewer")
PREFIX: Final = "lc1."
MAX_TOKEN_CHARS: Final = 4096
MAX_ROOMS: Final = 32
MAX_TTL_S: Final = 30 * 24 * 3600
#: Tolerated clock skew between the minting host and the gateway.
SKEW_S: Final = 60
#: Room ids and names: what the wire contract allows for an id (1..128 characters), minus controls.
_ID_RE: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


class TokenError(LiveCueError, ValueError):
    """A token that grants nothing. ``reason`` is ``bad_token`` or ``expired`` (metric label)."""

    def __init__(self, reason: Literal["bad_token", "expired"], detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token grants: a role on some rooms until ``exp`` (epoch seconds)."""

    role: ScreenRole
    rooms: tuple[str, ...]
    by: str
    iat: int
    exp: int
    jti: str

    @property
    def can_ack(self) -> bool:
        return self.role == "controller"


def _b64e(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


_B64_RE: Final = re.compile(r"[A-Za-z0-9_-]+")


def _b64d(s: str) -> bytes:
    if not _B64_RE.fullmatch(s):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _mac(secret: str, signed: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), signed.encode("ascii"), hashlib.sha256).digest()


def mint(secret: str, role: str, rooms: list[str] | tuple[str, ...], ttl_s: int, by: str, now: float,
         jti: str | None = None) -> str:
    """A token granting ``role`` on ``rooms`` for ``ttl_s`` seconds from ``now``.

    Raises :class:`ValueError` for an empty secret, unknown role, bad room id or TTL.
    """
    if not secret:
        raise ValueError("token secret is empty (set LIVECUE_TOKEN_SECRET)")
    if role not in SCREEN_ROLES:
        raise ValueError(f"role must be one of {', '.join(SCREEN_ROLES)}")
    rooms = tuple(dict.fromkeys(rooms))
    if not rooms or len(rooms) > MAX_ROOMS:
        raise ValueError(f"a token names 1..{MAX_ROOMS} rooms")
    for r in rooms:
        if not _ID_RE.fullmatch(r):
            raise ValueError(f"bad room id {r!r}")
    if not _ID_RE.fullmatch(by):
        raise ValueError("by: 1..128 printable characters")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl must be 1 s .. {MAX_TTL_S // 86400} days")
    iat = int(now)
    payload = {"v": 1, "role": role, "rooms": list(rooms), "by": by, "iat": iat,
               "exp": iat + int(ttl_s), "jti": jti or secrets.token_hex(8)}
    body = _b64e(orjson.dumps(payload))
    return PREFIX + body + "." + _b64e(_mac(secret, PREFIX + body))


def verify(secret: str, token: object, now: float) -> Claims:
    """The claims of a valid, unexpired token signed with ``secret``; else :class:`TokenError`."""
    if not secret:
        raise TokenError("bad_token", "no secret configured")
    if type(token) is not str or not token.startswith(PREFIX) or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("bad_token", "malformed token")
    parts = token[len(PREFIX):].split(".")
    if len(parts) != 2:
        raise TokenError("bad_token", "malformed token")
    body, mac_text = parts
    if not _B64_RE.fullmatch(body):
        raise TokenError("bad_token", "malformed token")
    try:
        mac = _b64d(mac_text)
    except ValueError:
        raise TokenError("bad_token", "malformed token") from None
    if not hmac.compare_digest(mac, _mac(secret, PREFIX + body)):
        raise TokenError("bad_token", "bad signature")
    try:
        p = orjson.loads(_b64d(body))
    except (ValueError, orjson.JSONDecodeError):
        raise TokenError("bad_token", "malformed payload") from None
    if type(p) is not dict or p.get("v") != 1:
        raise TokenError("bad_token", "unknown token version")
    role, rooms, by, iat, exp, jti = (p.get(k) for k in ("role", "rooms", "by", "iat", "exp", "jti"))
    if (role not in SCREEN_ROLES or type(rooms) is not list or not 0 < len(rooms) <= MAX_ROOMS
            or not all(type(r) is str and _ID_RE.fullmatch(r) for r in rooms)
            or type(by) is not str or not _ID_RE.fullmatch(by)
            or type(iat) is not int or type(exp) is not int or type(jti) is not str):
        raise TokenError("bad_token", "malformed claims")
    if iat > now + SKEW_S:
        raise TokenError("bad_token", "issued in the future")
    if exp <= now:
        raise TokenError("expired", "token expired")
    return Claims(role, tuple(rooms), by, iat, exp, jti)


def fingerprint(token: str) -> str:
    """A short, non-reversible id of a token, safe for logs and per-token accounting."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:12]


_TTL_RE: Final = re.compile(r"(\d+)\s*([smhd]?)")
_UNIT: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """``"12h"`` → 43200. Accepts ``N``, ``Ns``, ``Nm``, ``Nh``, ``Nd``. Raises ValueError."""
    m = _TTL_RE.fullmatch(text.strip().lower())
    if not m:
        raise ValueError("ttl: expected e.g. 90s, 30m, 12h or 2d")
    n = int(m.group(1)) * _UNIT[m.group(2)]
    if not 0 < n <= MAX_TTL_S:
        raise ValueError(f"ttl: must be between 1 s and {MAX_TTL_S // 86400} days")
    return n
