"""Structured logging: one event a line; JSON when not on a terminal, ``key=value`` text otherwise.

Loggers are named per component (``logging.getLogger(__name__)``); context such as topic,
partition, offset or connection id goes in ``extra={...}`` and becomes fields of the line.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

__all__ = ["configure_logging", "JsonFormatter", "TextFormatter", "RepeatThrottle"]

_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., **extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info).replace("\n", "\\n")
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level logger: msg key=value ...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{t} {record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extra:
            line += " " + extra
        if record.exc_info:
            line += " exc=" + self.formatException(record.exc_info).replace("\n", "\\n")
        return line


class RepeatThrottle(logging.Filter):
    """Lets the same (logger, level, message template) through at most once per ``window_s``;
    the next line that passes says how many were held back (``repeated=N``).

    A Kafka client whose broker is gone logs the same connection error many times a second
    (about 50,000 lines over an 8 s outage were measured): one line a few seconds says the same.
    ``clock`` is injectable for tests.
    """

    def __init__(self, window_s: float = 5.0, clock: Any = time.monotonic, max_keys: int = 1024) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.repeated = last[1]
        if len(self._seen) >= self.max_keys:
            self._seen.clear()
        self._seen[key] = (now, 0)
        return True


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """Install one stderr handler with the chosen format on the root logger."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # Faust/aiokafka are chatty at INFO; keep their warnings.
    for noisy in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # ...and repeat themselves while a broker is away: one line per message every 5 s
    handler.addFilter(_ThirdPartyThrottle())


class _ThirdPartyThrottle(RepeatThrottle):
    """Throttles only the Kafka client libraries' records; LiveCue's own lines all pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("aiokafka", "kafka", "faust", "mode")):
            return True
        return super().filter(record)
