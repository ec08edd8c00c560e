"""Recordings: JSONL files of Kafka records, one ``{"topic", "key", "value"}`` object a line.

``value`` is the record's value as the JSON object written on the wire; ``key`` the Kafka key
(the room id) as a string, or null. A record whose value is not a JSON object (the dead-letter
cases a platform really sends) is kept faithfully instead: ``"value_text"`` holds it when it is
UTF-8, ``"value_b64"`` otherwise, so a replay sends the same bad bytes again.

The simulator writes this format with ``--out``; ``livecue record`` writes it from a broker;
``livecue replay`` and ``livecue backtest`` read it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from schemas.decode import encode
from schemas.errors import LiveCueError
from schemas.events import TOPIC_OF_TYPE, Event

__all__ = [
    "Record", "BadLine", "RecordingError", "record_of", "dumps_line", "loads_line",
    "write_recording", "read_recording", "iter_lines",
]


class RecordingError(LiveCueError, ValueError):
    """A recording line that is not a ``{"topic", "key", "value"}`` object."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record: topic, key (text or None) and the value's wire bytes."""

    topic: str
    key: str | None
    value: bytes

    @property
    def key_bytes(self) -> bytes | None:
        return None if self.key is None else self.key.encode()


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line of a recording that could not be read as a record (1-based ``line_no``)."""

    line_no: int
    reason: str
    text: str


def record_of(event: Event) -> Record:
    """The record that carries ``event`` on the wire: its topic, key = room_id, encoded value."""
    return Record(TOPIC_OF_TYPE[event.type], event.room_id, encode(event))


def dumps_line(rec: Record | Event) -> bytes:
    """One recording line (without the newline) for a record or an event."""
    if not isinstance(rec, Record):
        return orjson.dumps({"topic": TOPIC_OF_TYPE[rec.type], "key": rec.room_id, "value": rec})
    doc: dict[str, Any] = {"topic": rec.topic, "key": rec.key}
    try:
        doc["value"] = orjson.loads(rec.value)
    except orjson.JSONDecodeError:
        try:
            doc["value_text"] = rec.value.decode()
        except UnicodeDecodeError:
            doc["value_b64"] = base64.b64encode(rec.value).decode()
    return orjson.dumps(doc)


def loads_line(line: bytes | str) -> Record:
    """Parse one recording line. Raises :class:`RecordingError` with a short reason."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise RecordingError("line: not valid JSON") from None
    if type(doc) is not dict:
        raise RecordingError("line: not a JSON object")
    topic = doc.get("topic")
    if type(topic) is not str or not topic:
        raise RecordingError("topic: missing or not a string")
    key = doc.get("key")
    if key is not None and type(key) is not str:
        raise RecordingError("key: not a string or null")
    if "value" in doc:
        value = orjson.dumps(doc["value"])
    elif type(doc.get("value_text")) is str:
        value = doc["value_text"].encode()
    elif type(doc.get("value_b64")) is str:
        try:
            value = base64.b64decode(doc["value_b64"], validate=True)
        except ValueError:
            raise RecordingError("value_b64: not valid base64") from None
    else:
        raise RecordingError("value: missing")
    return Record(topic, key, value)


def write_recording(out: Path | str | IO[bytes], records: Iterable[Record | Event]) -> int:
    """Write records (or events) as JSONL to a path or a binary file. Returns the line count."""
    if isinstance(out, (str, Path)):
        with open(out, "wb") as f:
            return write_recording(f, records)
    n = 0
    for rec in records:
        out.write(dumps_line(rec) + b"\n")
        n += 1
    return n


def iter_lines(lines: Iterable[bytes | str]) -> Iterator[Record | BadLine]:
    """Parse lines into records; a bad line becomes a :class:`BadLine` (blank lines are skipped)."""
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield loads_line(line)
        except RecordingError as exc:
            text = line if isinstance(line, str) else line.decode("utf-8", "replace")
            yield BadLine(i, exc.reason, text.rstrip("\r\n")[:200])


def read_recording(path: Path | str) -> Iterator[Record | BadLine]:
    """Read a recording file lazily, line by line."""
    with open(path, "rb") as f:
        yield from iter_lines(f)
