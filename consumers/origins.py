"""Which browser origins may open a websocket (pure). Defends against cross-site websocket hijacking.

The allow-list is exact (scheme, host and port as the browser sends them). With an empty setting
the gateway allows its own ``http://host:port`` origins (plus the loopback aliases when it is
bound to loopback) and, wherever it is bound, an origin whose host and port are the ``Host``
header the request came in with: the page and its websocket were served from the same place.
That covers a gateway bound to ``0.0.0.0`` and reached at the machine's real address, and a
TLS-terminating proxy that passes ``Host`` through (page ``https://h``, Host ``h``). A proxy
that rewrites ``Host`` needs ``LIVECUE_ALLOWED_ORIGINS``.

A request without an ``Origin`` header is not from a browser page: it is let through and must
still authenticate like any other. Screens authenticate with a token they send, never with a
cookie, so a page that tricks a browser into connecting gains nothing without a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

__all__ = ["own_origins", "allowed_origins", "origin_ok", "origin_matches_host"]

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_DEFAULT_PORT: Final = {"http": 80, "https": 443}
_HOST_RE: Final = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)(?::(\d{1,5}))?")


def _host(h: str) -> str:
    return f"[{h}]" if ":" in h and not h.startswith("[") else h


def own_origins(host: str, port: int) -> frozenset[str]:
    """The origins of the gateway's own pages when served from ``host:port``."""
    h = _host(host)
    hosts = set(_LOOPBACK) if h in _LOOPBACK else {h}
    return frozenset(f"http://{x}:{port}" for x in hosts)


def allowed_origins(setting: Iterable[str], host: str, port: int) -> frozenset[str]:
    """The configured allow-list, or the gateway's own origins when the setting is empty."""
    configured = frozenset(o.rstrip("/") for o in setting)
    return configured or own_origins(host, port)


def origin_ok(origin: str | None, allowed: frozenset[str]) -> bool:
    """True for no Origin (a tool, not a browser) or an exact match; ``null`` never matches."""
    if origin is None:
        return True
    return origin in allowed


def origin_matches_host(origin: str | None, host_header: str | None) -> bool:
    """True when ``origin`` (``scheme://host[:port]``, nothing more) names the same host and
    port as the request's ``Host`` header; a Host without a port means the scheme's default."""
    if not origin or not host_header or len(origin) > 300 or len(host_header) > 300:
        return False
    try:
        o = urlsplit(origin)
        o_port = o.port
    except ValueError:
        return False
    if (o.scheme not in _DEFAULT_PORT or not o.hostname or o.path or o.query or o.fragment
            or o.username is not None or o.password is not None or origin.endswith(":")):
        return False
    m = _HOST_RE.fullmatch(host_header.strip())
    if not m:
        return False
    h_name = m.group(1).lower().strip("[]")
    h_port = int(m.group(2)) if m.group(2) else _DEFAULT_PORT[o.scheme]
    o_name = o.hostname.lower()
    return o_name == h_name and (o_port or _DEFAULT_PORT[o.scheme]) == h_port
