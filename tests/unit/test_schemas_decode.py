"""Every way ``decode_event`` rejects a record, and that each reason names the field.

Valid base events come from ``tests/golden/``; each case breaks one thing. The field-level cases
are generated from :mod:`schemas.limits`, so a new field or kind is covered without editing here.
"""

from __future__ import annotations

import copy
import json
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import (
    EVENT_CLASSES,
    INPUT_TOPICS,
    MAX_EVENT_BYTES,
    TOPIC_OF_TYPE,
    UNCHECKED,
    Chat,
    InvalidAck,
    InvalidEvent,
    decode_ack,
    decode_event,
    encode,
)
from schemas.limits import COMMON_FIELDS, FIELDS, KINDS, LINEUP_FIELDS, MAX_LINEUP

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
BASE: dict[str, dict[str, Any]] = {t: orjson.loads((GOLDEN / f"{t}.json").read_bytes()) for t in FIELDS}
MARKER = "PAYLOAD-MARKER-不应出现"  # a value that must never be echoed into a reason


def _raw(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:  # integers beyond 64 bits: orjson cannot write them, a platform might
        return json.dumps(obj, ensure_ascii=False).encode()


def _reject(raw: Any, **kw: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw, **kw)
    exc = info.value
    assert type(exc) is InvalidEvent
    assert isinstance(exc, ValueError)
    assert exc.reason == str(exc)
    return exc


def _assert_names(exc: InvalidEvent, field: str, fragment: str) -> None:
    assert exc.field == field, exc.reason
    assert exc.reason.startswith(field + ": "), exc.reason
    assert fragment in exc.reason, exc.reason
    assert MARKER not in exc.reason


# --- the field cases, derived from the limits ------------------------------------------------


def _field_paths() -> list[tuple[str, str, str]]:
    """(event type, path, kind) for every field, lineup items included (path 'lineup[0].x')."""
    out = []
    for etype, extra in FIELDS.items():
        for name, kind in COMMON_FIELDS + extra:
            out.append((etype, name, kind))
            if kind == "lineup":
                out.extend((etype, f"lineup[0].{n}", k) for n, k in LINEUP_FIELDS)
    return out


FIELD_PATHS = _field_paths()


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    if path.startswith("lineup[0]."):
        obj["lineup"][0][path.split(".", 1)[1]] = value
    else:
        obj[path] = value
    return obj


def _delete(obj: dict[str, Any], path: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    if path.startswith("lineup[0]."):
        del obj["lineup"][0][path.split(".", 1)[1]]
    else:
        del obj[path]
    return obj


def _wrong_values(kind: str) -> list[tuple[Any, str]]:
    """(bad value, fragment of the reason) for a field of ``kind``."""
    jtype, bounds = KINDS[kind]
    if jtype == "string":
        lo, hi = bounds
        cases: list[tuple[Any, str]] = [
            (12345, "must be a string"), (None, "must be a string"), (True, "must be a string"),
            ([MARKER], "must be a string"), ({"v": MARKER}, "must be a string"), (1.5, "must be a string"),
            ("字" * (hi + 1), f"longer than {hi} characters"),  # type: ignore[operator]
        ]
        if lo:
            cases.append(("", "must not be empty"))
        return cases
    if jtype == "integer":
        lo, hi = bounds
        cases = [
            (True, "must be an integer"), (False, "must be an integer"),
            (float(max(lo, 3)), "must be an integer"),  # 3.0 is a float, not an integer, here  # type: ignore[call-overload]
            (str(max(lo, 3)), "must be an integer"), ("3", "must be an integer"),  # type: ignore[call-overload]
            (None, "must be an integer"), (1.5, "must be an integer"), ([3], "must be an integer"),
            (MARKER, "must be an integer"),
            (hi + 1, f"above {hi}"), (10**30, ""),  # type: ignore[operator]
        ]
        if lo == 1:
            cases += [(0, "must be positive"), (-1, "must be positive"), (-(2**63), "must be positive")]
        elif lo == 0:
            cases += [(-1, "below 0"), (-(2**63), "below 0")]
        else:
            cases += [(lo - 1, f"below {lo}"), (0, f"below {lo}"), (-1, f"below {lo}")]  # type: ignore[operator]
        return cases
    if jtype == "enum":
        return [
            (MARKER, "must be one of"), ("", "must be one of"), (None, "must be one of"),
            (1, "must be one of"), ([bounds[0]], "must be one of"), (str(bounds[0]).upper(), "must be one of"),
        ]
    assert jtype == "lineup"
    return [
        ({"sku_id": MARKER}, "must be an array"), (MARKER, "must be an array"), (None, "must be an array"),
        (7, "must be an array"),
    ]


WRONG_CASES = [
    pytest.param(etype, path, value, fragment, id=f"{etype}-{path}-{i}")
    for etype, path, kind in FIELD_PATHS
    for i, (value, fragment) in enumerate(_wrong_values(kind))
]


def test_the_generated_cases_cover_every_kind_and_type() -> None:
    kinds = {kind for _, _, kind in FIELD_PATHS}
    assert kinds == set(KINDS)
    assert {etype for etype, _, _ in FIELD_PATHS} >= set(FIELDS) - {"session_end"}
    assert len(WRONG_CASES) > 300


@pytest.mark.parametrize(("etype", "path", "value", "fragment"), WRONG_CASES)
def test_wrong_field_value_is_rejected_naming_the_field(etype: str, path: str, value: Any, fragment: str) -> None:
    exc = _reject(_raw(_set(BASE[etype], path, value)))
    _assert_names(exc, path, fragment)


@pytest.mark.parametrize(
    ("etype", "path"), [pytest.param(e, p, id=f"{e}-{p}") for e, p, _ in FIELD_PATHS] + [
        pytest.param(e, "type", id=f"{e}-type") for e in FIELDS
    ],
)
def test_missing_field_is_rejected_naming_the_field(etype: str, path: str) -> None:
    exc = _reject(_raw(_delete(BASE[etype], path)))
    _assert_names(exc, path, "missing")


@pytest.mark.parametrize(("etype", "path", "kind"), FIELD_PATHS, ids=[f"{e}-{p}" for e, p, _ in FIELD_PATHS])
def test_field_at_its_bounds_is_accepted(etype: str, path: str, kind: str) -> None:
    jtype, bounds = KINDS[kind]
    if jtype == "string":
        values: list[Any] = ["字" * bounds[0] or "", "字" * bounds[1]]  # type: ignore[operator]
        if bounds[0] == 0:
            values[0] = ""
    elif jtype == "integer":
        values = [bounds[0], bounds[1]]
    elif jtype == "enum":
        values = list(bounds)
    else:
        return  # the lineup's bounds have their own tests below
    for v in values:
        event = decode_event(_raw(_set(BASE[etype], path, v)))
        got = event.lineup[0] if path.startswith("lineup[0].") else event  # type: ignore[union-attr]
        assert getattr(got, path.rsplit(".", 1)[-1]) == v


# --- named cases from the issue ----------------------------------------------------------------


@pytest.mark.parametrize("value", [3.0, 1.0, 37.0, 1e2])
def test_float_with_integral_value_is_not_an_integer(value: float) -> None:
    _assert_names(_reject(_raw(_set(BASE["like"], "count", value))), "count", "must be an integer")


@pytest.mark.parametrize("raw_count", [b"3.0", b"3e0", b"3E0", b"30e-1"])
def test_float_spellings_of_integers_are_rejected(raw_count: bytes) -> None:
    raw = b'{"type":"like","event_id":"e","room_id":"r","ts":1718000000000,"count":' + raw_count + b"}"
    _assert_names(_reject(raw), "count", "must be an integer")


@pytest.mark.parametrize("ts", ["1718000000000", 1718000000000.0, 1.718e12, True, None, [1718000000000]])
def test_ts_must_be_an_integer(ts: Any) -> None:
    _assert_names(_reject(_raw(_set(BASE["chat"], "ts", ts))), "ts", "must be an integer")


@pytest.mark.parametrize("ts", [1718000000, 0, -1, 10**17])  # seconds instead of ms; absurd
def test_ts_out_of_range_is_rejected(ts: int) -> None:
    _assert_names(_reject(_raw(_set(BASE["chat"], "ts", ts))), "ts", "")


@pytest.mark.parametrize(
    ("etype", "path"),
    [("like", "count"), ("cart_add", "qty"), ("order", "qty")],
)
@pytest.mark.parametrize("value", [0, -1, -100])
def test_zero_or_negative_quantities_and_counts(etype: str, path: str, value: int) -> None:
    _assert_names(_reject(_raw(_set(BASE[etype], path, value))), path, "must be positive")


@pytest.mark.parametrize(
    ("etype", "path"),
    [("stock_set", "stock"), ("viewers", "online"), ("viewers", "entered"), ("viewers", "left"),
     ("order", "amount_cents"), ("session_start", "lineup[0].stock"), ("session_start", "lineup[0].price_cents")],
)
def test_negative_stock_viewers_money(etype: str, path: str) -> None:
    _assert_names(_reject(_raw(_set(BASE[etype], path, -1))), path, "below 0")


@pytest.mark.parametrize(("etype", "path"), [("order", "amount_cents"), ("session_start", "lineup[0].price_cents")])
@pytest.mark.parametrize("value", [19.9, 199.0, "19900", "¥199", None, True])
def test_money_must_be_integer_minor_units(etype: str, path: str, value: Any) -> None:
    _assert_names(_reject(_raw(_set(BASE[etype], path, value))), path, "must be an integer")


@pytest.mark.parametrize(
    ("etype", "path", "value", "fragment"),
    [
        ("like", "count", 1_000_001, "above 1000000"),
        ("cart_add", "qty", 10_001, "above 10000"),
        ("viewers", "online", 100_000_001, "above 100000000"),
        ("order", "amount_cents", 10**12 + 1, "above 1000000000000"),
        ("chat", "text", "买" * 1001, "longer than 1000 characters"),
        ("chat", "user_id", "u" * 129, "longer than 128 characters"),
        ("session_start", "lineup[0].name", "茶" * 201, "longer than 200 characters"),
    ],
)
def test_absurd_values_are_rejected(etype: str, path: str, value: Any, fragment: str) -> None:
    _assert_names(_reject(_raw(_set(BASE[etype], path, value))), path, fragment)


def test_text_limit_counts_characters_not_bytes() -> None:
    # 1000 Chinese characters are 3000 UTF-8 bytes and still a legal chat message.
    event = decode_event(_raw(_set(BASE["chat"], "text", "买" * 1000)))
    assert isinstance(event, Chat) and len(event.text) == 1000


def _item(i: int) -> dict[str, Any]:
    return {"sku_id": f"sku-{i}", "name": f"商品{i}", "role": "hero", "price_cents": 100, "stock": 1}


def test_lineup_limits() -> None:
    ok = decode_event(_raw(_set(BASE["session_start"], "lineup", [_item(i) for i in range(MAX_LINEUP)])))
    assert len(ok.lineup) == MAX_LINEUP  # type: ignore[union-attr]
    assert decode_event(_raw(_set(BASE["session_start"], "lineup", []))).lineup == ()  # type: ignore[union-attr]
    exc = _reject(_raw(_set(BASE["session_start"], "lineup", [_item(i) for i in range(MAX_LINEUP + 1)])))
    _assert_names(exc, "lineup", f"more than {MAX_LINEUP} items")


@pytest.mark.parametrize("item", [MARKER, 5, None, [MARKER], True])
def test_lineup_item_must_be_an_object(item: Any) -> None:
    exc = _reject(_raw(_set(BASE["session_start"], "lineup", [_item(0), item])))
    _assert_names(exc, "lineup[1]", "must be an object")


@pytest.mark.parametrize("dup_at", [1, 3])
def test_duplicate_sku_id_in_lineup(dup_at: int) -> None:
    items = [_item(i) for i in range(4)]
    items[dup_at] = {**_item(9), "sku_id": items[0]["sku_id"]}
    exc = _reject(_raw(_set(BASE["session_start"], "lineup", items)))
    _assert_names(exc, f"lineup[{dup_at}].sku_id", "duplicate sku_id")


def test_nested_lineup_reason_points_at_the_item() -> None:
    items = [_item(0), _item(1), {**_item(2), "role": "bestseller"}]
    _assert_names(_reject(_raw(_set(BASE["session_start"], "lineup", items))), "lineup[2].role", "must be one of")


@pytest.mark.parametrize(
    "etype_value", ["chat2", "Chat", "", " chat", "cue", "room_stats", "deadletter", 5, None, True, ["chat"], {"t": "chat"}]
)
def test_unknown_type(etype_value: Any) -> None:
    exc = _reject(_raw({**BASE["chat"], "type": etype_value}))
    _assert_names(exc, "type", "unknown")
    for known in EVENT_CLASSES:
        assert known in exc.reason  # the reason lists what would have been accepted


# --- the record as a whole -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b" ", b"{", b"}", b"{'type': 'chat'}", b'{"type":"chat",}', b'{"type":"chat"} {}', b"nul",
     b"NaN", b'{"count": NaN}', b'{"ts": Infinity}', b"[" * 5000, b'{"a":1}\x00', b"\x00",
     b'{"type":"chat" "event_id":"e"}', b'{"type":chat}'],
    ids=lambda r: repr(r[:20]),
)
def test_invalid_json(raw: bytes) -> None:
    _assert_names(_reject(raw), "value", "not valid JSON")


@pytest.mark.parametrize(
    "raw",
    [b"\xff", b'{"type":"chat","text":"\xe4\xb9"}', b'{"type":"chat","text":"\xc0\xaf"}',
     b'{"type":"chat","text":"\xed\xa0\x80"}', '{"type":"chat","text":"\ud800"}',
     "买".encode("gbk") + b'{"type":"chat"}'],
    ids=["ff", "truncated-cjk", "overlong", "surrogate-bytes", "surrogate-str", "gbk"],
)
def test_non_utf8(raw: bytes | str) -> None:
    _assert_names(_reject(raw), "value", "not valid UTF-8")


def test_gbk_encoded_chat_is_not_utf8() -> None:
    # A platform writing GBK instead of UTF-8 must be told so, not get "bad JSON".
    raw = ('{"type":"chat","event_id":"e","room_id":"r","ts":1718000000000,"user_id":"u","text":"还有吗"}').encode("gbk")
    _assert_names(_reject(raw), "value", "not valid UTF-8")


@pytest.mark.parametrize("raw", [b"[]", b"[{}]", b'"chat"', b"42", b"4.2", b"null", b"true", b"false", b'[{"type":"chat"}]'])
def test_json_that_is_not_an_object(raw: bytes) -> None:
    _assert_names(_reject(raw), "value", "not an object")


@pytest.mark.parametrize("raw", [None, 42, 4.2, {"type": "chat"}, ["x"], object()], ids=lambda r: type(r).__name__)
def test_value_that_is_not_bytes(raw: Any) -> None:
    _assert_names(_reject(raw), "value", "missing or not bytes")


def test_oversize_record_is_rejected_before_parsing() -> None:
    filler = "x" * MAX_EVENT_BYTES
    raw = _raw({**BASE["chat"], "padding": filler})
    assert len(raw) > MAX_EVENT_BYTES
    _assert_names(_reject(raw), "value", f"larger than {MAX_EVENT_BYTES} bytes")
    # Even garbage of that size is rejected by size, not parsed.
    _assert_names(_reject(b"\xff" * (MAX_EVENT_BYTES + 1)), "value", "larger than")


def test_the_largest_legal_event_fits_the_size_limit() -> None:
    items = [
        {"sku_id": "s" * 120 + f"{i:04d}", "name": "名" * 200, "role": "traffic_driver",
         "price_cents": 10**12, "stock": 100_000_000}
        for i in range(MAX_LINEUP)
    ]
    raw = _raw({**BASE["session_start"], "lineup": items})
    # 200 maximal CJK names are ~600 bytes each: the biggest legal event must still decode.
    if len(raw) > MAX_EVENT_BYTES:
        pytest.fail(f"a legal full lineup is {len(raw)} bytes, more than MAX_EVENT_BYTES={MAX_EVENT_BYTES}")
    assert len(decode_event(raw).lineup) == MAX_LINEUP  # type: ignore[union-attr]


@pytest.mark.parametrize("etype", sorted(FIELDS))
def test_unknown_extra_fields_are_ignored(etype: str) -> None:
    extra = {**BASE[etype], "x_platform": {"nested": [1, 2.5, None]}, "schema_version": 2, "trace": MARKER}
    if etype == "session_start":
        extra["lineup"] = [{**item, "image_url": "https://x/y.png"} for item in extra["lineup"]]
    event = decode_event(_raw(extra))
    assert event == decode_event(_raw(BASE[etype]))
    assert not hasattr(event, "x_platform")
    assert b"x_platform" not in encode(event)


def test_duplicate_keys_last_one_wins_like_any_json_parser() -> None:
    raw = b'{"type":"like","event_id":"e","room_id":"r","ts":1718000000000,"count":-5,"count":5}'
    assert decode_event(raw).count == 5  # type: ignore[union-attr]


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, lambda b: b.decode()], ids=["bytes", "bytearray", "memoryview", "str"])
def test_accepted_input_buffers(wrap: Callable[[bytes], Any]) -> None:
    assert decode_event(wrap(_raw(BASE["chat"]))) == decode_event(_raw(BASE["chat"]))


# --- Kafka key and topic -------------------------------------------------------------------------


@pytest.mark.parametrize("etype", sorted(FIELDS))
def test_key_equal_to_room_id_is_accepted(etype: str) -> None:
    room = BASE[etype]["room_id"]
    assert decode_event(_raw(BASE[etype]), key=room.encode()).room_id == room
    assert decode_event(_raw(BASE[etype]), key=UNCHECKED).room_id == room


def test_non_ascii_room_id_key() -> None:
    obj = {**BASE["chat"], "room_id": "直播间-7"}
    assert decode_event(_raw(obj), key="直播间-7".encode()).room_id == "直播间-7"


@pytest.mark.parametrize("key", [None, b""], ids=["none", "empty"])
def test_missing_key(key: bytes | None) -> None:
    _assert_names(_reject(_raw(BASE["chat"]), key=key), "key", "missing Kafka key")


@pytest.mark.parametrize("key", [b"room-43", b"ROOM-42", b"room-42 ", b"room", b"room-42\x00"], ids=repr)
def test_key_disagrees_with_room_id(key: bytes) -> None:
    exc = _reject(_raw(BASE["chat"]), key=key)
    _assert_names(exc, "key", "disagrees with room_id")
    assert "room-4" not in exc.reason  # neither key nor room id is echoed


def test_key_not_utf8() -> None:
    _assert_names(_reject(_raw(BASE["chat"]), key=b"\xffroom"), "key", "not valid UTF-8")


def test_field_errors_are_reported_before_key_errors() -> None:
    # A broken event with a wrong key is dead-lettered for what is wrong in the event itself.
    obj = _set(BASE["chat"], "ts", "soon")
    _assert_names(_reject(_raw(obj), key=b"other"), "ts", "must be an integer")


WRONG_TOPICS = [
    pytest.param(etype, topic, id=f"{etype}-on-{topic}")
    for etype in FIELDS
    for topic in (*INPUT_TOPICS, "live.cues", "live.chat.v2", "")
    if topic != TOPIC_OF_TYPE[etype]
]


@pytest.mark.parametrize(("etype", "topic"), WRONG_TOPICS)
def test_event_on_the_wrong_topic(etype: str, topic: str) -> None:
    exc = _reject(_raw(BASE[etype]), key=b"room-42", topic=topic)
    _assert_names(exc, "type", "does not belong on topic")


@pytest.mark.parametrize("etype", sorted(FIELDS))
def test_event_on_its_own_topic(etype: str) -> None:
    assert decode_event(_raw(BASE[etype]), key=b"room-42", topic=TOPIC_OF_TYPE[etype]).type == etype


# --- the model / limits coupling -------------------------------------------------------------


@pytest.mark.parametrize("etype", sorted(FIELDS))
def test_limits_list_the_dataclass_fields_in_constructor_order(etype: str) -> None:
    # decode_event builds events positionally from the limits: the orders must agree.
    init_fields = [f.name for f in dataclasses.fields(EVENT_CLASSES[etype]) if f.init]
    assert init_fields == [n for n, _ in COMMON_FIELDS + FIELDS[etype]]


# --- acknowledgements ------------------------------------------------------------------------

ACK = {"cue_id": "cue-1", "room_id": "room-42", "action": "ack", "by": "controller-li", "ts": 1718000000000}


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [("action", "snooze", "must be one of"), ("action", None, "must be one of"), ("ts", "now", "must be an integer"),
     ("ts", 1.7e12, "must be an integer"), ("by", "", "must not be empty"), ("cue_id", 7, "must be a string"),
     ("room_id", "r" * 129, "longer than 128")],
)
def test_ack_rejections_name_the_field(path: str, value: Any, fragment: str) -> None:
    with pytest.raises(InvalidAck) as info:
        decode_ack(_raw({**ACK, path: value}))
    _assert_names(info.value, path, fragment)


@pytest.mark.parametrize("path", sorted(ACK))
def test_ack_missing_field(path: str) -> None:
    obj = {k: v for k, v in ACK.items() if k != path}
    with pytest.raises(InvalidAck) as info:
        decode_ack(_raw(obj))
    _assert_names(info.value, path, "missing")


@pytest.mark.parametrize(("raw", "fragment"), [(b"{", "not valid JSON"), (b"\xff", "not valid UTF-8"), (b"[]", "not an object")])
def test_ack_bad_record(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidAck) as info:
        decode_ack(raw)
    _assert_names(info.value, "value", fragment)


def test_the_fast_per_type_decoders_build_exactly_what_the_class_builds() -> None:
    """The generated decoders skip the frozen dataclass's __init__ (they set the slots through
    their descriptors): every event of a simulated show decodes to an object equal, field by
    field and in type, to the one its class's constructor builds from the checked path."""
    from livecue.sim.show import generate
    from schemas.decode import _FAST, _TYPE_CHECKS, _fields

    from schemas.events import RoomReset

    seen: set[str] = set()
    show = generate(3, ["fast-1", "fast-2"], "mixed", duration=600, rate=8.0)
    for ev in [*show, RoomReset(event_id="reset-1", room_id="fast-1", ts=show[-1].ts, by="ops")]:
        obj = orjson.loads(encode(ev))
        fast = _FAST[ev.type]
        if fast is None:
            continue
        got = fast(obj)
        slow = EVENT_CLASSES[ev.type](*_fields(obj, _TYPE_CHECKS[ev.type]))
        assert type(got) is type(slow) and got == slow == ev and hash(got) == hash(slow)
        for f in dataclasses.fields(slow):
            assert type(getattr(got, f.name)) is type(getattr(slow, f.name)), (ev.type, f.name)
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.ts = 0  # type: ignore[misc]
        seen.add(ev.type)
    assert seen == {t for t, f in _FAST.items() if f is not None}, "every fast decoder exercised"
