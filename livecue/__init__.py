"""LiveCue: real-time in-stream event processing for live-stream commerce.

Process-level pieces live here (settings, CLI, embedded broker, logging, metrics server);
the contracts are in :mod:`schemas`, the decision engine and worker in :mod:`stream`,
the websocket gateway in :mod:`consumers`.
"""

__version__ = "0.1.0"
