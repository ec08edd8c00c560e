"""Who may read ``/reports/``: the screens' own tokens, and short-lived signed links made from them.

A review shows a room's sales, so the gateway serves it only to someone who may watch that room:

* ``Authorization: Bearer TOKEN``, a screen token (:mod:`consumers.tokens`) that verifies, is not
  revoked, and whose rooms include the review's room (any role: whoever may watch the room live
  may read its review). For scripts, ``curl -H``, and the screens' own requests.
* ``?exp=E&sig=S``: a *review link*, signed by the gateway for one room's directory, valid until
  ``E`` (epoch seconds, at most :data:`LINK_TTL_S` ahead and never past the token's own expiry).

Why links and not the token itself in the URL: a review is opened as an ordinary page (a new
tab from the control room or the wall), and a navigation cannot carry an ``Authorization``
header; the page itself runs no script (its CSP forbids it), so it cannot fetch itself with one.
A token in the query would put a 12-hour bearer secret into the browser's history, bookmarks
and any proxy's access log. A link grants one room's reviews, read-only, for minutes; it names
nothing else. So the screens fetch ``/reports/~links`` with their token in the header (the
token never leaves the fragment and the header) and put the links they get on their review
buttons, fetching fresh ones before these expire. Cost: a link copied out keeps working for its
remaining minutes even if the token is revoked meanwhile (at most :data:`LINK_TTL_S`).

The signature is HMAC-SHA256 with the token secret over ``livecue-report-link``, the directory
name and ``E``; a JWT's signing input (base64url, starting ``eyJ``) can never equal that text,
so a link's MAC is no use as a token's and the reverse.

Answers: no credentials 401 (with ``WWW-Authenticate: Bearer``); a token or link that does not
verify 401; a valid one for other rooms 403; then :func:`consumers.reporter.serve_report` (404 for
anything that is not a plain review file under the directory, ``..`` and symlinks included).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Collection
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs

import orjson

from .reporter import REPORT_CSP, safe_name, serve_report
from .tokens import Claims, TokenError, check_secret, verify

__all__ = ["LINK_TTL_S", "LINKS_PATH", "sign_link", "check_link", "review_links", "answer"]

#: How long a review link stays valid.
LINK_TTL_S: Final = 600
#: ``GET /reports/~links`` (Bearer token): links to the latest review of each of the token's
#: rooms that has one. ``~`` is never part of a stored directory name, so no room shadows it.
LINKS_PATH: Final = "~links"

_TEXT: Final = "text/plain; charset=utf-8"
Answer = tuple[int, bytes, str, list[tuple[str, str]]]


def _mac(secret: str, directory: str, exp: int) -> str:
    msg = f"livecue-report-link\n{directory}\n{exp}".encode()
    digest = hmac.new(check_secret(secret), msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_link(secret: str, room_id: str, exp: int) -> str:
    """``/reports/DIR/?exp=E&sig=S``: the room's latest review until ``exp`` (epoch seconds)."""
    d = safe_name(room_id)
    return f"/reports/{d}/?exp={exp}&sig={_mac(secret, d, exp)}"


def check_link(secret: str, directory: str, query: str, now: float) -> bool | None:
    """None when ``query`` carries no link; else whether it is a valid, unexpired link for
    ``directory``."""
    q = parse_qs(query, keep_blank_values=True)
    if "sig" not in q and "exp" not in q:
        return None
    try:
        (exp_s,), (sig,) = q["exp"], q["sig"]
        exp = int(exp_s)
    except (KeyError, ValueError):
        return False
    if exp < now or exp > now + LINK_TTL_S + 60:
        return False
    try:
        return hmac.compare_digest(sig.encode(), _mac(secret, directory, exp).encode())
    except ValueError:  # no usable secret
        return False


def _claims(secret: str, revoked: Collection[str], authorization: str | None,
            now: float) -> Claims | None:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        claims = verify(secret, token.strip(), now)
    except TokenError:
        return None
    return None if claims.jti in revoked else claims


def review_links(root: Path, secret: str, claims: Claims, now: float) -> dict[str, str]:
    """A link per room of ``claims`` that has a review under ``root``."""
    exp = int(min(now + LINK_TTL_S, claims.exp))
    return {r: sign_link(secret, r, exp) for r in claims.rooms
            if (root / safe_name(r) / "index.html").is_file()}


def answer(root: Path, rel: str, query: str, authorization: str | None, secret: str,
           revoked: Collection[str], now: float | None = None) -> Answer:
    """``(status, body, content type, extra headers)`` for ``GET /reports/<rel>?<query>``."""
    now = time.time() if now is None else now
    directory = rel.split("/", 1)[0]
    link = check_link(secret, directory, query, now) if rel != LINKS_PATH else None
    if link:
        return _serve(root, rel)
    claims = _claims(secret, revoked, authorization, now)
    if claims is None:
        why = b"review link expired or invalid\n" if link is False else b"token required\n"
        return 401, why, _TEXT, [("WWW-Authenticate", 'Bearer realm="livecue-reports"')]
    if rel == LINKS_PATH:
        body = orjson.dumps({"links": review_links(root, secret, claims, now),
                             "expires_at": int(min(now + LINK_TTL_S, claims.exp))})
        return 200, body, "application/json", []
    if directory not in {safe_name(r) for r in claims.rooms}:
        return 403, b"token does not grant this room\n", _TEXT, []
    return _serve(root, rel)


def _serve(root: Path, rel: str) -> Answer:
    status, body, ctype = serve_report(root, rel)
    if status != 200:
        return 404, b"not found\n", _TEXT, []
    return 200, body, ctype, [("Content-Security-Policy", REPORT_CSP)]
