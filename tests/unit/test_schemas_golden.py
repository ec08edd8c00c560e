"""Golden JSON files pin the wire format of contract v1, both ways.

``tests/golden/<name>.json`` holds one record per event type and per output. For each:

- decoding the golden bytes gives exactly the expected model object (events, acks);
- encoding the expected model gives the golden JSON: same field names and values (compared as
  canonical sorted-key bytes) and the same key order (compared as compact bytes).

A change to any field name, type, order or default shows up here as a diff against a file that
other programs (the platform, the screens, dashboards) rely on. Change the golden file only
together with the contract version.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import (
    EVENT_CLASSES,
    TOPIC_OF_TYPE,
    Ack,
    CartAdd,
    Chat,
    Cue,
    DeadLetter,
    Like,
    LineupItem,
    RoomReset,
    Order,
    RoomStats,
    SessionEnd,
    SessionStart,
    SkuOnAir,
    SkuStats,
    StockSet,
    Viewers,
    decode_ack,
    decode_event,
    encode,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
TS = 1_718_000_000_000  # 2024-06-10T06:13:20Z

EVENTS: dict[str, Any] = {
    "session_start": SessionStart(
        event_id="evt-0001", room_id="room-42", ts=TS, session_id="sess-2024-06-10",
        lineup=(
            LineupItem("sku-tea", "明前龙井 250g", "traffic_driver", 990, 500),
            LineupItem("sku-cup", "手工茶杯（赠品）", "giveaway", 0, 100),
            LineupItem("sku-set", "龙井礼盒", "hero", 19900, 300),
            LineupItem("sku-pot", "紫砂壶", "profit", 59900, 0),
        ),
    ),
    "sku_on_air": SkuOnAir(event_id="evt-0002", room_id="room-42", ts=TS + 1000, sku_id="sku-set"),
    "stock_set": StockSet(event_id="evt-0003", room_id="room-42", ts=TS + 2000, sku_id="sku-set", stock=0),
    "session_end": SessionEnd(event_id="evt-0004", room_id="room-42", ts=TS + 7_200_000),
    "room_reset": RoomReset(event_id="evt-0010", room_id="room-42", ts=TS + 10_000, by="ops-wang"),
    "viewers": Viewers(event_id="evt-0005", room_id="room-42", ts=TS + 3000, online=12873, entered=340, left=0),
    "chat": Chat(event_id="evt-0006", room_id="room-42", ts=TS + 4000, user_id="u-9001", text="还有吗？没抢到 😭"),
    "like": Like(event_id="evt-0007", room_id="room-42", ts=TS + 5000, count=37),
    "cart_add": CartAdd(event_id="evt-0008", room_id="room-42", ts=TS + 6000, user_id="u-9001", sku_id="sku-set", qty=2),
    "order": Order(
        event_id="evt-0009", room_id="room-42", ts=TS + 7000, order_id="ord-77", user_id="u-9001",
        sku_id="sku-set", qty=2, amount_cents=39800, status="paid",
    ),
}

OUTPUTS: dict[str, Any] = {
    "cue": Cue(
        cue_id="cue-room-42-release_orders-sku-set-1718000004000", room_id="room-42",
        session_id="sess-2024-06-10", kind="release_orders", severity="warn", sku_id="sku-set",
        target_sku_id=None, headline="放单！龙井礼盒 有人没抢到", detail="近30秒 12 条“没抢到”，库存 0，建议放单 50 件",
        evidence={"missed_per_min": 24.0, "stock": 0, "window_s": 30, "intent_share": 0.41},
        ts=TS + 4000, emitted_at=TS + 4012,
        texts={
            "zh": {"headline": "放单！龙井礼盒 有人没抢到", "detail": "近30秒 12 条“没抢到”，库存 0，建议放单 50 件"},
            "en": {"headline": "Release orders: gift box sold out", "detail": "12 'missed it' in 30 s, stock 0"},
        },
    ),
    "room_stats": RoomStats(
        room_id="room-42", session_id="sess-2024-06-10", ts=TS + 5000, tier="hot", online=12873,
        online_trend=0.125, entered_per_min=340.0, left_per_min=12.5, chat_per_min=220.0,
        unique_chatters=180, intent_per_min=61.5, intent_share=0.28, likes_per_min=1500.0,
        cart_adds_per_min=44.0, orders_per_min=20.0, gmv_cents_per_min=398000,
        gmv_cents_total=1990000, unpaid_share=0.1, on_air_sku="sku-set",
        skus=(
            SkuStats("sku-set", "龙井礼盒", "hero", 19900, 0, True, True, 100, 44.0, 20.0, 40.0, 0.45, None),
            SkuStats("sku-tea", "明前龙井 250g", "traffic_driver", 990, 500, False, False, 0, 0.0, 0.0, 0.0, None, 750.5),
        ),
        emitted_at=TS + 5003,
    ),
    "deadletter": DeadLetter(
        topic="live.chat", partition=3, offset=1234, key="room-42", reason="ts: must be an integer",
        field_name="ts", raw_b64="eyJ0eXBlIjoiY2hhdCIsInRzIjoiMTcxODAwMDAwMDAwMCJ9", emitted_at=TS + 9000,
        raw_len=36, raw_sha256="1bcb535f8c3bfcf97e1b64513a41003ec5ae72fe3d0fe5b49085582929adc53d", raw_truncated=False,
    ),
    "ack": Ack(cue_id="cue-room-42-release_orders-sku-set-1718000004000", room_id="room-42", action="done", by="controller-li", ts=TS + 6000),
}

ALL = {**EVENTS, **OUTPUTS}


def _golden_bytes(name: str) -> bytes:
    return (GOLDEN / f"{name}.json").read_bytes()


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def test_every_event_type_and_output_has_a_golden_file() -> None:
    assert set(EVENTS) == set(EVENT_CLASSES)
    assert set(EVENTS) == set(TOPIC_OF_TYPE)
    on_disk = {p.stem for p in GOLDEN.glob("*.json")}
    assert on_disk == set(ALL), f"golden files and expected objects differ: {on_disk ^ set(ALL)}"


@pytest.mark.parametrize("etype", sorted(EVENTS))
def test_golden_event_decodes_to_expected(etype: str) -> None:
    raw = _golden_bytes(etype)
    expected = EVENTS[etype]
    assert decode_event(raw) == expected
    # ...and it passes the full record checks a worker applies: key = room_id, on its topic.
    assert decode_event(raw, key=b"room-42", topic=TOPIC_OF_TYPE[etype]) == expected


def test_golden_ack_decodes_to_expected() -> None:
    assert decode_ack(_golden_bytes("ack")) == OUTPUTS["ack"]


@pytest.mark.parametrize("name", sorted(ALL))
def test_encode_matches_golden_names_and_values(name: str) -> None:
    golden = orjson.loads(_golden_bytes(name))
    encoded = orjson.loads(encode(ALL[name]))
    assert encoded == golden
    assert _canonical(encoded) == _canonical(golden)


@pytest.mark.parametrize("name", sorted(ALL))
def test_encode_matches_golden_key_order(name: str) -> None:
    # orjson keeps the file's key order on loads and dumps, so compact bytes compare the order too.
    assert encode(ALL[name]) == orjson.dumps(orjson.loads(_golden_bytes(name)))


@pytest.mark.parametrize("etype", sorted(EVENTS))
def test_golden_event_type_field(etype: str) -> None:
    golden = orjson.loads(_golden_bytes(etype))
    assert golden["type"] == etype
    assert {f.name for f in dataclasses.fields(EVENT_CLASSES[etype])} == set(golden)


def test_golden_outputs_carry_their_type_and_no_faust_metadata() -> None:
    for name in ("cue", "room_stats", "deadletter"):
        golden = orjson.loads(_golden_bytes(name))
        assert golden["type"] == name
    for name in OUTPUTS:
        assert "__faust" not in _golden_bytes(name).decode()
        assert "__faust" not in encode(OUTPUTS[name]).decode()


def test_golden_deadletter_keeps_the_raw_bytes() -> None:
    dl = OUTPUTS["deadletter"]
    assert dl.raw() == b'{"type":"chat","ts":"1718000000000"}'
    rebuilt = DeadLetter.of(
        "live.chat", 3, 1234, b"room-42", dl.raw(), "ts: must be an integer", "ts", TS + 9000
    )
    assert rebuilt == dl


def test_deadletter_of_a_huge_record_is_bounded_and_identifies_the_whole() -> None:
    import hashlib
    from schemas.outputs import DEADLETTER_RAW_MAX
    value = b"x" * (1024 * 1024 - 200)  # about the broker's default message.max.bytes
    dl = DeadLetter.of("live.chat", 0, 7, b"k" * 5000, value, "value: larger than 262144 bytes", "value", TS)
    assert dl.raw_truncated and dl.raw() == value[:DEADLETTER_RAW_MAX]
    assert dl.raw_len == len(value) and dl.raw_sha256 == hashlib.sha256(value).hexdigest()
    assert len(encode(dl)) < 32 * 1024 and dl.key is not None and len(dl.key) == 256


def test_golden_files_are_canonical_utf8_not_escaped() -> None:
    # Chinese text is stored as UTF-8, not \\u escapes: what orjson writes and what a human reads.
    assert "没抢到" in _golden_bytes("chat").decode("utf-8")
    assert b"\\u" not in _golden_bytes("chat")
