"""Which browser origins may open a websocket (pure). Defends against cross-site websocket hijacking.

The allow-list is exact (scheme, host and port as the browser sends them). An empty setting
allows only the gateway's own ``http://host:port`` origins (plus the loopback aliases when it is
bound to loopback). A request without an ``Origin`` header is not from a browser page: it is let
through and must still authenticate like any other.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["own_origins", "allowed_origins", "origin_ok"]

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


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
