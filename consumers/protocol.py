"""The screen protocol's messages (pure): validate what a screen sends, build what it receives.

Every message is one JSON object in a text frame with a ``type``. See ``docs/protocol.md``.
:func:`parse_client` turns a frame into a typed message or raises :class:`ProtocolError` whose
``code`` goes into the ``error`` frame; it never raises anything else, whatever the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import orjson

from schemas.errors import LiveCueError
from schemas.outputs import ACK_ACTIONS

__all__ = [
    "ProtocolError", "Auth", "Action", "Resume", "ClientMessage", "parse_client",
    "CUE_STATE_OF", "host_view", "frame", "error_frame", "MAX_ROOMS_PER_RESUME",
]

MAX_ID: Final = 128
MAX_TOKEN: Final = 4096
MAX_ROOMS_PER_RESUME: Final = 64
#: ``cue_state.state`` for each acknowledgement action.
CUE_STATE_OF: Final = {"ack": "acked", "done": "done", "dismiss": "dismissed"}

ErrorCode: TypeAlias = Literal[
    "bad_message", "unknown_type", "auth_required", "already_authenticated", "forbidden",
    "wrong_room", "unknown_cue", "rate_limited", "unavailable", "expired", "revoked",
]


class ProtocolError(LiveCueError, ValueError):
    """A client message that cannot be used. ``code`` is a stable identifier, ``message`` is safe."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Auth:
    token: str
    rooms: tuple[str, ...] | None  # a subset of the token's rooms, or None for all of them


@dataclass(frozen=True, slots=True)
class Action:
    action: Literal["ack", "done", "dismiss"]
    cue_id: str
    room_id: str


@dataclass(frozen=True, slots=True)
class Resume:
    rooms: dict[str, int]  # room_id -> last seq seen (-1: nothing yet)


ClientMessage: TypeAlias = Auth | Action | Resume


def _id(obj: dict[str, Any], name: str) -> str:
    v = obj.get(name)
    if type(v) is not str or not 0 < len(v) <= MAX_ID:
        raise ProtocolError("bad_message", f"{name}: must be a string of 1..{MAX_ID} characters")
    return v


def parse_client(raw: str | bytes) -> ClientMessage:
    """Validate one frame from a screen. Binary frames, non-objects and unknown types are errors."""
    if not isinstance(raw, str):
        raise ProtocolError("bad_message", "binary frames are not accepted; send JSON text")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_message", "not valid JSON") from None
    if type(obj) is not dict:
        raise ProtocolError("bad_message", "a message must be a JSON object")
    t = obj.get("type")
    if t == "auth":
        token = obj.get("token")
        if type(token) is not str or not 0 < len(token) <= MAX_TOKEN:
            raise ProtocolError("bad_message", "token: must be a non-empty string")
        rooms = obj.get("rooms")
        if rooms is None:
            return Auth(token, None)
        if type(rooms) is not list or not 0 < len(rooms) <= MAX_ROOMS_PER_RESUME:
            raise ProtocolError("bad_message", "rooms: must be a non-empty array")
        out = []
        for r in rooms:
            if type(r) is not str or not 0 < len(r) <= MAX_ID:
                raise ProtocolError("bad_message", "rooms: each must be a room id")
            out.append(r)
        return Auth(token, tuple(dict.fromkeys(out)))
    if t in ACK_ACTIONS:
        return Action(t, _id(obj, "cue_id"), _id(obj, "room_id"))
    if t == "resume":
        rooms = obj.get("rooms")
        if type(rooms) is not dict or len(rooms) > MAX_ROOMS_PER_RESUME:
            raise ProtocolError("bad_message", "rooms: must be an object {room_id: last_seq}")
        res: dict[str, int] = {}
        for r, seq in rooms.items():
            if not 0 < len(r) <= MAX_ID:
                raise ProtocolError("bad_message", "rooms: keys must be room ids")
            if type(seq) is not int or not -1 <= seq < 2**63:
                raise ProtocolError("bad_message", "rooms: each last_seq must be an integer >= -1")
            res[r] = seq
        return Resume(res)
    if type(t) is not str:
        raise ProtocolError("bad_message", "type: missing")
    raise ProtocolError("unknown_type", "type: unknown (expected auth, ack, done, dismiss or resume)")


_HOST_FIELDS: Final = ("type", "seq", "cue_id", "room_id", "kind", "severity", "headline", "ts", "emitted_at")


def host_view(cue: dict[str, Any]) -> dict[str, Any]:
    """What a host screen gets of a cue: the headline (in every language), severity, ids. No evidence."""
    out: dict[str, Any] = {k: cue[k] for k in _HOST_FIELDS if k in cue}
    texts = cue.get("texts")
    if type(texts) is dict:
        out["texts"] = {
            lang: {"headline": t["headline"]}
            for lang, t in texts.items()
            if type(t) is dict and type(t.get("headline")) is str
        }
    return out


def frame(msg: dict[str, Any]) -> str:
    """Encode a server message (a dict with ``type``) as the text of one frame."""
    return orjson.dumps(msg).decode("utf-8")


def error_frame(code: str, message: str, **extra: Any) -> str:
    return frame({"type": "error", "code": code, "message": message, **extra})
