"""Recording lines: round-trip of good and bad records, and bad lines reported, not raised."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from livecue.recording import BadLine, Record, RecordingError, dumps_line, iter_lines, loads_line, read_recording, record_of, write_recording
from livecue.sim import generate


def test_events_round_trip_through_a_file(tmp_path: Path) -> None:
    events = generate(1, 2, "mixed", duration=30)
    path = tmp_path / "r.jsonl"
    assert write_recording(path, events) == len(events)
    back = list(read_recording(path))
    assert back == [record_of(e) for e in events]
    line = orjson.loads(path.read_bytes().splitlines()[0])
    assert set(line) == {"topic", "key", "value"} and line["value"]["type"] == "session_start"


@pytest.mark.parametrize("value", [b"not json \xff\xfe", "不是 json".encode(), b'{"ts": 1}', b"[1,2]"])
def test_any_value_bytes_survive_a_round_trip(value: bytes) -> None:
    rec = Record("live.chat", "room-1", value)
    back = loads_line(dumps_line(rec))
    if value.startswith((b"{", b"[")):
        assert orjson.loads(back.value) == orjson.loads(value)
    else:
        assert back == rec


def test_null_key_is_kept() -> None:
    assert loads_line(dumps_line(Record("live.likes", None, b"{}"))).key is None


def test_bad_lines_are_reported_with_line_numbers() -> None:
    lines = [
        b'{"topic":"live.likes","key":"r","value":{"a":1}}\n',
        b"garbage\n",
        b"\n",
        b'{"topic":5,"key":"r","value":{}}\n',
        b'{"topic":"t","key":"r"}\n',
        b'{"topic":"t","key":"r","value_b64":"!!"}\n',
    ]
    out = list(iter_lines(lines))
    assert isinstance(out[0], Record)
    bad = [x for x in out if isinstance(x, BadLine)]
    assert [(b.line_no, b.reason) for b in bad] == [
        (2, "line: not valid JSON"), (4, "topic: missing or not a string"), (5, "value: missing"),
        (6, "value_b64: not valid base64"),
    ]
    with pytest.raises(RecordingError):
        loads_line(b"[]")
