"""The review's recording reader (livecue.report.source.read_file) against a plain reference
reader written here (every line through livecue.recording and schemas.decode.decode_event): the
same events in the same order, the same merge keys, the same dead letters and acks, whatever
the lines hold (bad JSON, odd shapes, wrong keys, oversize values, other rooms)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from livecue.recording import BadLine, Record, dumps_line, read_recording, record_of
from livecue.report.source import Inputs, read_file
from livecue.sim.show import generate
from schemas.decode import MAX_EVENT_BYTES, decode_event
from schemas.errors import InvalidEvent
from schemas.events import INPUT_TOPICS, Event
from stream.core.align import canonical_order

ROOM = "room-a"
OTHER = "room-b"


def _reference(path: Path, room: str | None) -> tuple[list[Event], list[int], list[str], int]:
    events: list[Event] = []
    keys: list[int] = []
    dls: list[tuple[str | None, str]] = []
    acks = 0
    for rec in read_recording(path):
        if isinstance(rec, BadLine):
            dls.append((None, rec.reason))
            continue
        if rec.topic in INPUT_TOPICS:
            if room is not None and rec.key != room:
                continue
            try:
                ev = decode_event(rec.value, key=rec.key_bytes, topic=rec.topic)
            except InvalidEvent as exc:
                dls.append((rec.key, exc.reason))
                continue
            events.append(ev)
            keys.append(ev.ts * 8 + INPUT_TOPICS.index(rec.topic))
        elif rec.topic == "live.acks" and (rec.key is None or rec.key == room):
            acks += 1
        elif rec.topic == "live.deadletter" and (rec.key is None or rec.key == room):
            d = orjson.loads(rec.value)
            dls.append((d.get("key") if isinstance(d.get("key"), str) else rec.key, str(d.get("reason") or "?")))
    return events, keys, [r for k, r in dls if k is None or k == room], acks


def _bad_lines(show: list[Event]) -> list[bytes]:
    chat = orjson.loads(record_of(next(e for e in show if e.type == "chat" and e.room_id == ROOM)).value)
    t = chat["ts"]

    def line(topic: object, key: object, value: object) -> bytes:
        return orjson.dumps({"topic": topic, "key": key, "value": value})

    return [
        b"{not json",
        b"[1, 2, 3]",
        b'"a string"',
        b'{"topic": "live.chat", "key": "room-a"}',
        orjson.dumps({"key": ROOM, "topic": "live.chat", "value": {**chat, "ts": t + 1}}),  # other field order
        line("live.chat", ROOM, {**chat, "ts": float(t)}),
        line("live.chat", ROOM, {**chat, "type": "like"}),
        line("live.likes", ROOM, chat),
        line("live.chat", OTHER, chat),  # key disagrees with room_id
        line("live.chat", None, chat),
        line("live.chat", ROOM, {**chat, "type": ["chat"]}),
        line(["live.chat"], ROOM, chat),
        line("live.chat", ROOM, {**chat, "type": "nope"}),
        line("live.chat", ROOM, [chat]),
        line("live.chat", ROOM, {**chat, "text": "x" * (MAX_EVENT_BYTES + 10)}),
        line("live.chat", ROOM, {**chat, "extra": "y" * (MAX_EVENT_BYTES + 10)}),  # fields all fine
        line("live.chat", ROOM, {**chat, "extra": {"nested": [1, 2]}, "ts": t + 2}),
        orjson.dumps({"topic": "live.chat", "key": ROOM, "value_text": "plain words"}),
        orjson.dumps({"topic": "live.chat", "key": ROOM, "value_b64": "////"}),
        orjson.dumps({"topic": "live.deadletter", "key": ROOM, "value": {"key": ROOM, "reason": "r1"}}),
        orjson.dumps({"topic": "live.deadletter", "key": OTHER, "value": {"key": OTHER, "reason": "r2"}}),
        orjson.dumps({"topic": "live.acks", "key": ROOM, "value": {"cue_id": "c", "room_id": ROOM,
                                                                    "action": "ack", "by": "x", "ts": t}}),
        b"",
    ]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    show = generate(3, [ROOM, OTHER], "mixed", duration=120.0, rate=60.0)
    lines = [dumps_line(e) for e in show]
    bad = _bad_lines(show)
    for i, b in enumerate(bad):  # spread through the show
        lines.insert((i + 1) * len(lines) // (len(bad) + 2), b)
    lines.append(dumps_line(record_of(show[-1])))  # a last line without its newline
    path = tmp_path_factory.mktemp("src") / "show.jsonl"
    path.write_bytes(b"\n".join(lines))
    return path


@pytest.mark.parametrize("room", [ROOM, OTHER])
def test_reader_equals_reference(recording: Path, room: str) -> None:
    inp = read_file(recording, room)
    events, keys, dls, acks = _reference(recording, room)
    assert len(events) > 1000
    assert inp.events == events
    assert inp.keys == keys
    assert inp.deadletters == dls and len(dls) >= (12 if room == ROOM else 3)
    if room == ROOM:
        assert f"value: larger than {MAX_EVENT_BYTES} bytes" in dls
    assert len(inp.acks) == acks
    assert inp.items == [(INPUT_TOPICS[k & 7], k >> 3, e) for k, e in zip(keys, events)]


def test_ordered_is_canonical_order(recording: Path) -> None:
    inp = read_file(recording, ROOM)
    assert inp.ordered() == canonical_order(inp.items)
    # a topic out of time order: the order is still canonical_order's, not a sort
    items = inp.items
    i = next(j for j in range(len(items) - 1, 0, -1) if items[j][0] == "live.chat")
    swapped = Inputs(ROOM, list(inp.events), list(inp.keys), False)
    k = next(j for j in range(i - 1, 0, -1) if items[j][0] == "live.chat" and items[j][1] < items[i][1])
    swapped.events[i], swapped.events[k] = swapped.events[k], swapped.events[i]
    swapped.keys[i], swapped.keys[k] = swapped.keys[k], swapped.keys[i]
    assert swapped.ordered() == canonical_order(swapped.items)
    assert swapped.ordered() != sorted(swapped.events, key=lambda e: e.ts)


def test_foreign_and_unkeyed_room(tmp_path: Path) -> None:
    show = generate(4, [ROOM], "mixed", duration=30.0, rate=20.0)
    path = tmp_path / "one.jsonl"
    path.write_bytes(b"\n".join(dumps_line(e) for e in show) + b"\n")
    assert read_file(path, None).events == show and read_file(path, None).room_id == ROOM
    assert read_file(path, None).in_order
    with pytest.raises(Exception, match="no events"):
        read_file(path, OTHER)
    rec = Record("live.chat", None, record_of(next(e for e in show if e.type == "chat")).value)
    path.write_bytes(path.read_bytes() + dumps_line(rec) + b"\n")
    # a keyless record is no room's when a room is named, a dead letter when the file has one room
    assert read_file(path, ROOM).deadletters == []
    assert read_file(path, None).deadletters == ["key: missing Kafka key (must equal room_id)"]


def test_a_topic_out_of_order_in_the_file_is_merged_not_sorted(recording: Path, tmp_path: Path) -> None:
    lines = recording.read_bytes().split(b"\n")
    chat = [i for i, ln in enumerate(lines) if ln.startswith(b'{"topic":"live.chat","key":"room-a"')]
    i, j = chat[50], chat[300]
    lines[i], lines[j] = lines[j], lines[i]  # two chats of the room swapped: live.chat out of order
    path = tmp_path / "swapped.jsonl"
    path.write_bytes(b"\n".join(lines))
    inp = read_file(path, ROOM)
    assert not inp.in_order
    assert inp.ordered() == canonical_order(inp.items)
    assert inp.ordered() != [e for _, _, e in sorted(inp.items, key=lambda it: (it[1], INPUT_TOPICS.index(it[0])))]
