"""Event and cue contracts of LiveCue (wire contract v1), and the project's error tree."""

from .decode import MAX_EVENT_BYTES, UNCHECKED, decode_ack, decode_event, encode
from .errors import BrokerError, ConfigError, InvalidAck, InvalidEvent, LiveCueError
from .events import *  # noqa: F403
from .events import __all__ as _events_all
from .outputs import *  # noqa: F403
from .outputs import __all__ as _outputs_all

__all__ = [
    "decode_event", "decode_ack", "encode", "MAX_EVENT_BYTES", "UNCHECKED",
    "LiveCueError", "InvalidEvent", "InvalidAck", "ConfigError", "BrokerError",
    *_events_all, *_outputs_all,
]
