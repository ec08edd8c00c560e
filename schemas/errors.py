"""The one error tree of LiveCue.

::

    LiveCueError
     ├── InvalidEvent (ValueError)      an input record that cannot be used; carries a safe reason
     │    └── InvalidAck                a screen's acknowledgement that cannot be used
     ├── ConfigError (ValueError)       a setting or playbook value that is wrong; names where
     └── BrokerError (RuntimeError)     the embedded broker could not start or answer

Every ``reason`` is short, names the offending field, never echoes the payload, and is safe to
show to a user or to write into a dead-letter record.
"""

from __future__ import annotations

__all__ = ["LiveCueError", "InvalidEvent", "InvalidAck", "ConfigError", "BrokerError"]


class LiveCueError(Exception):
    """Base class of every error LiveCue raises on purpose."""


class InvalidEvent(LiveCueError, ValueError):
    """An event that cannot be used. ``reason`` is a short, safe text naming the field."""

    __slots__ = ("reason", "field")

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class InvalidAck(InvalidEvent):
    """An acknowledgement from a screen that cannot be used."""


class ConfigError(LiveCueError, ValueError):
    """A configuration value that is wrong. The message names the setting (and file/line)."""


class BrokerError(LiveCueError, RuntimeError):
    """The embedded broker could not be started or did not answer in time."""
