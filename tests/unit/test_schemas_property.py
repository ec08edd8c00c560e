"""Property tests of the decoder: it never raises anything but InvalidEvent, and valid events
round-trip encode → decode unchanged.

Valid events are generated from :mod:`schemas.limits`, so the strategies follow the contract.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import (
    EVENT_CLASSES,
    TOPIC_OF_TYPE,
    Ack,
    InvalidAck,
    InvalidEvent,
    LineupItem,
    decode_ack,
    decode_event,
    encode,
)
import schemas.decode as decoder_module
from schemas.decode import decoder_for
from schemas.events import Chat
from schemas.limits import COMMON_FIELDS, FIELDS, KINDS, LINEUP_FIELDS, MAX_LINEUP
from schemas.outputs import ACK_ACTIONS

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The generators of these are costly (nested JSON, lineups): fewer examples keep the suite fast.
HEAVY = settings(SETTINGS, max_examples=100)

# Text as the platform sends it: CJK, emoji, ASCII, controls; never lone surrogates (not UTF-8).
TEXT_CHARS = st.characters(blacklist_categories=("Cs",))
CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)


def _string(lo: int, hi: int) -> st.SearchStrategy[str]:
    alphabet = st.one_of(TEXT_CHARS, CJK)
    return st.one_of(
        st.text(alphabet, min_size=lo, max_size=min(hi, 40)),
        st.sampled_from(sorted({max(lo, 1), hi})).map(lambda n: "字" * n),  # the boundaries
    )


def _kind(kind: str) -> st.SearchStrategy[Any]:
    jtype, bounds = KINDS[kind]
    if jtype == "string":
        return _string(*bounds)  # type: ignore[arg-type]
    if jtype == "integer":
        lo, hi = bounds
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi]))  # type: ignore[arg-type]
    if jtype == "enum":
        return st.sampled_from(bounds)
    assert jtype == "lineup"
    return st.lists(
        st.builds(LineupItem, **{n: _kind(k) for n, k in LINEUP_FIELDS}),
        max_size=min(MAX_LINEUP, 8),
        unique_by=lambda item: item.sku_id,
    ).map(tuple)


def _event_of(etype: str) -> st.SearchStrategy[Any]:
    return st.builds(EVENT_CLASSES[etype], **{n: _kind(k) for n, k in COMMON_FIELDS + FIELDS[etype]})


EVENTS = st.sampled_from(sorted(FIELDS)).flatmap(_event_of)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(TEXT_CHARS, max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(TEXT_CHARS, max_size=10), children, max_size=4),
    max_leaves=12,
)


def _decode_only_invalid(raw: Any, **kw: Any) -> Any:
    """decode_event, asserting that the only exception it may raise is InvalidEvent (with a reason)."""
    try:
        return decode_event(raw, **kw)
    except InvalidEvent as exc:
        assert exc.reason and exc.reason == str(exc)
        assert exc.field is not None and exc.reason.startswith(exc.field + ": ")
        return None


@SETTINGS
@given(EVENTS)
def test_valid_events_round_trip(event: Any) -> None:
    raw = encode(event)
    assert decode_event(raw) == event
    assert decode_event(raw, key=event.room_id.encode(), topic=TOPIC_OF_TYPE[event.type]) == event
    # ...and encoding is stable: the decoded event encodes to the same bytes.
    assert encode(decode_event(raw)) == raw


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_invalid_event(raw: bytes) -> None:
    _decode_only_invalid(raw)
    _decode_only_invalid(raw, key=raw[:8], topic="live.chat")


@SETTINGS
@given(JSON)
def test_arbitrary_json_raises_only_invalid_event(value: Any) -> None:
    assert _decode_only_invalid(orjson.dumps(value)) is None or isinstance(value, dict)


@HEAVY
@given(st.sampled_from(sorted(FIELDS)), st.dictionaries(st.text(TEXT_CHARS, max_size=12), JSON, max_size=8))
def test_arbitrary_objects_with_a_known_type_raise_only_invalid_event(etype: str, obj: dict[str, Any]) -> None:
    obj["type"] = etype
    _decode_only_invalid(orjson.dumps(obj), key=b"room", topic=TOPIC_OF_TYPE[etype])


def _mutations(event: Any) -> st.SearchStrategy[bytes]:
    obj = orjson.loads(encode(event))
    names = sorted(obj)

    def replace(name: str, value: Any) -> bytes:
        return orjson.dumps({**obj, name: value})

    def delete(name: str) -> bytes:
        return orjson.dumps({k: v for k, v in obj.items() if k != name})

    raw = encode(event)

    def flip(i: int, byte: int) -> bytes:
        i %= len(raw)
        return raw[:i] + bytes([byte]) + raw[i + 1:]

    return st.one_of(
        st.builds(replace, st.sampled_from(names), JSON),
        st.builds(delete, st.sampled_from(names)),
        st.builds(flip, st.integers(0, 10**6), st.integers(0, 255)),
        st.integers(0, len(raw)).map(lambda n: raw[:n]),
        st.builds(lambda extra: orjson.dumps({**extra, **obj}), st.dictionaries(st.text(max_size=8), JSON, max_size=3)),
    )


@HEAVY
@given(EVENTS.flatmap(lambda e: st.tuples(st.just(e), _mutations(e))))
def test_mutated_valid_events_raise_only_invalid_event(pair: tuple[Any, bytes]) -> None:
    event, raw = pair
    got = _decode_only_invalid(raw, key=event.room_id.encode(), topic=TOPIC_OF_TYPE[event.type])
    if got is not None:  # a mutation that kept the event legal must decode to a legal event
        assert type(got) is EVENT_CLASSES[got.type]
        assert encode(decode_event(encode(got))) == encode(got)


@SETTINGS
@given(EVENTS.flatmap(lambda e: st.tuples(st.just(e), st.sampled_from([f.name for f in dataclasses.fields(e) if f.name != "type"]))))
def test_dropping_any_field_is_rejected_naming_it(pair: tuple[Any, str]) -> None:
    event, name = pair
    obj = {k: v for k, v in orjson.loads(encode(event)).items() if k != name}
    try:
        decode_event(orjson.dumps(obj))
    except InvalidEvent as exc:
        assert exc.field == name
    else:
        raise AssertionError(f"decode accepted an event without {name}")


ACKS = st.builds(
    Ack, cue_id=_kind("id"), room_id=_kind("id"), action=st.sampled_from(ACK_ACTIONS), by=_kind("id"), ts=_kind("ts")
)


@SETTINGS
@given(ACKS)
def test_acks_round_trip(ack: Ack) -> None:
    assert decode_ack(encode(ack)) == ack


@SETTINGS
@given(st.one_of(st.binary(max_size=200), JSON.map(orjson.dumps)))
def test_decode_ack_raises_only_invalid_ack(raw: bytes) -> None:
    try:
        decode_ack(raw)
    except InvalidAck as exc:
        assert exc.field is not None and exc.reason.startswith(exc.field + ": ")


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("event", fn(*args))
    except InvalidEvent as exc:
        return ("invalid", exc.reason, exc.field)


_KEYS = st.one_of(st.none(), st.just(b""), st.binary(max_size=12), st.just(b"\xff\xfe"), st.text(max_size=6))


@HEAVY
@given(EVENTS.flatmap(lambda e: st.tuples(st.just(e), st.one_of(st.just(encode(e)), _mutations(e)),
                                          st.one_of(st.just(e.room_id.encode()), _KEYS),
                                          st.sampled_from(sorted(set(TOPIC_OF_TYPE.values()))))))
def test_the_worker_s_per_topic_decoder_decides_as_decode_event(case: tuple[Any, bytes, Any, str]) -> None:
    # valid events, mutated ones, other keys (missing, empty, not UTF-8, not bytes) and topics:
    # the same event or the same error, reason and field
    _event, raw, key, topic = case
    assert _outcome(decoder_for(topic), raw, key) == _outcome(decode_event, raw, key, topic)


def test_the_worker_s_per_topic_decoder_takes_the_short_way_for_valid_records() -> None:
    # precondition of the test above: the short way is taken (not everything falls back)
    ev = Chat(event_id="e1", room_id="r1", ts=1_700_000_000_000, user_id="u", text="hi")
    dec = decoder_for("live.chat")
    calls = []
    orig = decoder_module.decode_event
    decoder_module.decode_event = lambda *a: calls.append(a) or orig(*a)  # type: ignore[assignment]
    try:
        assert dec(encode(ev), b"r1") == ev
        assert calls == []
        with pytest.raises(InvalidEvent):
            dec(encode(ev), b"r2")
        assert len(calls) == 1
    finally:
        decoder_module.decode_event = orig  # type: ignore[assignment]


def _chat_json(**over: Any) -> dict[str, Any]:
    base = {"event_id": "e1", "room_id": "r1", "ts": 1_795_176_000_000, "user_id": "u1", "text": "hi",
            "type": "chat"}
    base.update(over)
    return base


_CHAT = orjson.dumps(_chat_json())
_EDGES: list[tuple[str, str, bytes, bool]] = [  # (name, topic, raw, taken)
    ("valid", "live.chat", _CHAT, True),
    ("unknown field", "live.chat", orjson.dumps(_chat_json(x=1)), True),
    ("unknown field 1e999", "live.chat", _CHAT[:-1] + b',"x":1e999}', False),
    ("unknown field NaN", "live.chat", _CHAT[:-1] + b',"x":NaN}', False),
    ("unknown field nested 2000 deep", "live.chat", _CHAT[:-1] + b',"x":' + b"[" * 2000 + b"]" * 2000 + b"}", False),
    ("unknown field 30-digit int", "live.chat", _CHAT[:-1] + b',"x":123456789012345678901234567890}', True),
    ("duplicate text", "live.chat", _CHAT[:-1] + b',"text":"again"}', True),
    ("duplicate type, other topic's", "live.chat", _CHAT[:-1] + b',"type":"like"}', False),
    ("type missing", "live.chat", orjson.dumps({k: v for k, v in _chat_json().items() if k != "type"}), False),
    ("ts float", "live.chat", _CHAT.replace(b"1795176000000", b"1795176000000.0"), False),
    ("ts bool", "live.chat", _CHAT.replace(b"1795176000000", b"true"), False),
    ("ts at TS_MIN", "live.chat", orjson.dumps(_chat_json(ts=946_684_800_000)), True),
    ("ts below TS_MIN", "live.chat", orjson.dumps(_chat_json(ts=946_684_799_999)), False),
    ("ts at TS_MAX", "live.chat", orjson.dumps(_chat_json(ts=4_102_444_800_000)), True),
    ("ts above TS_MAX", "live.chat", orjson.dumps(_chat_json(ts=4_102_444_800_001)), False),
    ("BOM", "live.chat", b"\xef\xbb\xbf" + _CHAT, False),
    ("whitespace around", "live.chat", b" \n" + _CHAT + b" \t", True),
    ("lone surrogate", "live.chat", _CHAT.replace(b'"hi"', b'"\\ud800"'), False),
    ("surrogate pair", "live.chat", _CHAT.replace(b'"hi"', b'"\\ud83d\\ude00"'), True),
    ("NUL escape", "live.chat", _CHAT.replace(b'"hi"', b'"a\\u0000b"'), True),
    ("raw control character", "live.chat", _CHAT.replace(b'"hi"', b'"a\x01b"'), False),
    ("text 1000 CJK", "live.chat", orjson.dumps(_chat_json(text="好" * 1000)), True),
    ("text 1001", "live.chat", orjson.dumps(_chat_json(text="好" * 1001)), False),
    ("text empty", "live.chat", orjson.dumps(_chat_json(text="")), True),
    ("id 128", "live.chat", orjson.dumps(_chat_json(user_id="u" * 128)), True),
    ("id 129", "live.chat", orjson.dumps(_chat_json(user_id="u" * 129)), False),
    ("id empty", "live.chat", orjson.dumps(_chat_json(user_id="")), False),
    ("id number", "live.chat", orjson.dumps(_chat_json(user_id=5)), False),
    ("text null", "live.chat", orjson.dumps(_chat_json(text=None)), False),
    ("not an object", "live.chat", b"[1,2]", False),
    ("like count 0", "live.likes", orjson.dumps({"event_id": "e", "room_id": "r1", "ts": 1_795_176_000_000,
                                                "count": 0, "type": "like"}), False),
    ("like count 1e6", "live.likes", orjson.dumps({"event_id": "e", "room_id": "r1", "ts": 1_795_176_000_000,
                                                  "count": 1_000_000, "type": "like"}), True),
    ("order status refunded", "live.orders", orjson.dumps({
        "event_id": "e", "room_id": "r1", "ts": 1_795_176_000_000, "order_id": "o", "user_id": "u", "sku_id": "s",
        "qty": 1, "amount_cents": 100, "status": "refunded", "type": "order"}), False),
    ("order status paid", "live.orders", orjson.dumps({
        "event_id": "e", "room_id": "r1", "ts": 1_795_176_000_000, "order_id": "o", "user_id": "u", "sku_id": "s",
        "qty": 1, "amount_cents": 100, "status": "paid", "type": "order"}), True),
    ("session start (lineup: the checked way)", "live.room", orjson.dumps({
        "event_id": "e", "room_id": "r1", "ts": 1_795_176_000_000, "session_id": "s", "type": "session_start",
        "lineup": [{"sku_id": "k", "name": "n", "role": "hero", "price_cents": 1, "stock": 2}]}), True),
    ("room topic, type missing", "live.room", orjson.dumps({
        "event_id": "e", "room_id": "r1", "ts": 1_795_176_000_000, "sku_id": "k"}), False),
    ("room topic, chat type", "live.room", _CHAT, False),
    ("room topic, unknown field 1e999", "live.room", orjson.dumps({
        "event_id": "e", "room_id": "r1", "ts": 1_795_176_000_000, "sku_id": "k", "type": "sku_on_air"})[:-1]
     + b',"x":1e999}', False),
    ("room topic, unknown field", "live.room", orjson.dumps({
        "event_id": "e", "room_id": "r1", "ts": 1_795_176_000_000, "sku_id": "k", "type": "sku_on_air", "x": [1]}),
     True),
    ("session end", "live.room", orjson.dumps({
        "event_id": "e", "room_id": "r1", "ts": 1_795_176_000_000, "type": "session_end"}), True),
    ("sku_on_air on the room topic", "live.room", orjson.dumps({
        "event_id": "e", "room_id": "r1", "ts": 1_795_176_000_000, "sku_id": "k", "type": "sku_on_air"}), True),
]


@pytest.mark.parametrize(("name", "topic", "raw", "taken"), _EDGES, ids=[e[0] for e in _EDGES])
def test_the_worker_s_decoder_and_decode_event_agree_on_edge_records(name: str, topic: str, raw: bytes,
                                                                     taken: bool) -> None:
    # the records where the short way's parser (msgspec) and the checked way's (orjson) could
    # part: numbers and nesting orjson refuses in fields nobody reads, duplicate keys, strict
    # types, every bound at and past its edge, escapes; the same event or the same error
    got = _outcome(decoder_for(topic), raw, b"r1")
    assert got == _outcome(decode_event, raw, b"r1", topic), name
    assert (got[0] == "event") == taken, (name, got)  # the case tests what it says
