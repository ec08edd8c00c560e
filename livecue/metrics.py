"""Shared metrics plumbing: ``/metrics`` server and build info, always on an injected registry."""

from __future__ import annotations

import platform
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from . import __version__

__all__ = ["build_info", "serve_metrics"]


def build_info(registry: CollectorRegistry, component: str) -> Gauge:
    """``livecue_build_info{version, component, python}`` = 1."""
    g = Gauge(
        "livecue_build_info", "LiveCue build information (always 1).",
        ["version", "component", "python"], registry=registry,
    )
    g.labels(__version__, component, platform.python_version()).set(1)
    return g


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> tuple[Any, int]:
    """Serve ``/metrics`` for ``registry`` on ``host:port`` in a daemon thread.

    Returns ``(server, bound_port)``; port 0 picks a free one.
    """
    server, thread = start_http_server(port, addr=host, registry=registry)
    return server, int(server.server_address[1])
