"""Screen tokens: signed, expiring, room-scoped access grants (JWT, HS256, via PyJWT).

A token is a compact JWT signed with HMAC-SHA256 over the shared secret (at least 32 bytes).
Its claims: ``role``, ``rooms``, ``by``, ``aud`` (``livecue-screen``), and the registered
``iat``, ``nbf``, ``exp`` and ``jti`` claims, which PyJWT requires and checks (signature first,
then times, with :data:`LEEWAY_S` of clock skew). ``jti`` is the token's id: per-token caps,
revocation and logs use it, never the token's spelling (one token has several spellings).

A hand-rolled format (``lc1.…``) was used before; it let one token pass under several
fingerprints (the MAC's last base64url character carries unused bits). The library removes that
class of bug. A token is a bearer secret: never log it; log the ``jti`` (or :func:`fingerprint`
for a token that did not verify).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import jwt

from schemas.errors import LiveCueError

__all__ = [
    "ScreenRole", "SCREEN_ROLES", "Claims", "TokenError", "mint", "verify", "fingerprint",
    "parse_ttl", "check_secret", "MAX_TOKEN_CHARS", "MAX_ROOMS", "MIN_SECRET_BYTES", "LEEWAY_S",
    "AUDIENCE",
]

ScreenRole: TypeAlias = Literal["controller", "host", "viewer"]
SCREEN_ROLES: Final = ("controller", "host", "viewer")
MAX_TOKEN_CHARS: Final = 4096
#: Rooms one token may grant: a control room over 50 busy rooms must fit.
MAX_ROOMS: Final = 64
MAX_TTL_S: Final = 30 * 24 * 3600
#: HS256 wants a key at least as long as its output (RFC 7518 §3.2).
MIN_SECRET_BYTES: Final = 32
#: Tolerated clock skew between the minting host and the gateway (nbf, iat and exp).
LEEWAY_S: Final = 5
AUDIENCE: Final = "livecue-screen"
_ALGORITHM: Final = "HS256"
#: Room ids and names: what the wire contract allows for an id (1..128 characters), minus controls.
_ID_RE: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_JTI_RE: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_JWT: Final = jwt.PyJWT(options={"enforce_minimum_key_length": True})


class TokenError(LiveCueError, ValueError):
    """A token that grants nothing. ``reason`` (a metric label and the error code the screen
    gets) is ``bad_token``, ``expired`` or ``revoked``."""

    def __init__(self, reason: Literal["bad_token", "expired", "revoked"], detail: str) -> None:
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


def check_secret(secret: str) -> bytes:
    """The secret as key bytes; :class:`ValueError` when shorter than :data:`MIN_SECRET_BYTES`."""
    key = secret.encode("utf-8")
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes "
                         "(e.g. openssl rand -hex 32)")
    return key


def mint(secret: str, role: str, rooms: list[str] | tuple[str, ...], ttl_s: int, by: str, now: float,
         jti: str | None = None) -> str:
    """A token granting ``role`` on ``rooms`` for ``ttl_s`` seconds from ``now``.

    Raises :class:`ValueError` for a short secret, unknown role, bad room id, TTL or jti.
    """
    key = check_secret(secret)
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
    jti = jti or secrets.token_hex(8)
    if not _JTI_RE.fullmatch(jti):
        raise ValueError("jti: 1..64 characters of A-Z a-z 0-9 _ . : -")
    iat = int(now)
    claims = {"role": role, "rooms": list(rooms), "by": by, "aud": AUDIENCE,
              "iat": iat, "nbf": iat, "exp": iat + int(ttl_s), "jti": jti}
    return _JWT.encode(claims, key, algorithm=_ALGORITHM)


def verify(secret: str, token: object, now: float | None = None) -> Claims:
    """The claims of a valid, unexpired token signed with ``secret``; else :class:`TokenError`.

    PyJWT checks the signature, then ``exp``/``nbf``/``iat`` against the wall clock with
    :data:`LEEWAY_S`; ``now`` (the caller's clock, when given) must also be before ``exp``.
    """
    try:
        key = check_secret(secret)
    except ValueError:
        raise TokenError("bad_token", "no usable secret configured") from None
    if type(token) is not str or not 0 < len(token) <= MAX_TOKEN_CHARS or not token.isascii():
        raise TokenError("bad_token", "malformed token")
    try:
        p: dict[str, Any] = _JWT.decode(
            token, key, algorithms=[_ALGORITHM], audience=AUDIENCE, leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "nbf", "jti", "aud"]})
    except jwt.ExpiredSignatureError:
        raise TokenError("expired", "token expired") from None
    except jwt.InvalidSignatureError:
        raise TokenError("bad_token", "bad signature") from None
    except jwt.ImmatureSignatureError:
        raise TokenError("bad_token", "not valid yet") from None
    except jwt.PyJWTError:
        raise TokenError("bad_token", "malformed token") from None
    role, rooms, by, iat, exp, jti = (p.get(k) for k in ("role", "rooms", "by", "iat", "exp", "jti"))
    if (role not in SCREEN_ROLES or type(rooms) is not list or not 0 < len(rooms) <= MAX_ROOMS
            or not all(type(r) is str and _ID_RE.fullmatch(r) for r in rooms)
            or type(by) is not str or not _ID_RE.fullmatch(by)
            or type(iat) is not int or type(exp) is not int
            or type(jti) is not str or not _JTI_RE.fullmatch(jti)):
        raise TokenError("bad_token", "malformed claims")
    if now is not None and exp <= now:
        raise TokenError("expired", "token expired")
    return Claims(role, tuple(rooms), by, iat, exp, jti)


def fingerprint(token: str) -> str:
    """A short, non-reversible id of a token's spelling, safe for logs of tokens that did not
    verify. Accounting uses the verified ``jti`` instead."""
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
