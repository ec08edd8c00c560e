"""Wire contract v1: what LiveCue writes (cues, room stats, dead letters) and the screens' acks.

These are plain frozen dataclasses; ``orjson.dumps`` turns them into their wire JSON. No Faust
metadata ever appears in them, so any program can read the output topics.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "DEADLETTER_RAW_MAX",
    "CUE_KINDS", "SEVERITIES", "TIERS", "ACK_ACTIONS",
    "CueKind", "Severity", "Tier", "AckAction",
    "Cue", "SkuStats", "RoomStats", "DeadLetter", "Ack", "build_sku_stats", "build_room_stats",
]

CueKind: TypeAlias = Literal[
    "push_stock", "release_orders", "switch_to_traffic_driver", "switch_to_profit", "unpaid_orders"
]
CUE_KINDS: Final = (
    "push_stock", "release_orders", "switch_to_traffic_driver", "switch_to_profit", "unpaid_orders"
)
Severity: TypeAlias = Literal["info", "warn", "critical"]
SEVERITIES: Final = ("info", "warn", "critical")
Tier: TypeAlias = Literal["hot", "warm", "cold"]
TIERS: Final = ("hot", "warm", "cold")
AckAction: TypeAlias = Literal["ack", "done", "dismiss"]
ACK_ACTIONS: Final = ("ack", "done", "dismiss")
#: bytes of a bad record's value a dead letter carries (base64 makes them 4/3 as large)
DEADLETTER_RAW_MAX: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class Cue:
    """A prompt for the people running the room.

    ``cue_id`` is deterministic (room, session, kind, SKU, episode start) so reprocessing emits
    the same id. ``ts`` is the event time (epoch ms) at which the trigger held; ``emitted_at``
    the wall time (epoch ms) it was sent. ``headline`` is at most 60 characters, for the host.
    ``texts`` carries the same headline/detail in every language the playbook has.
    """

    cue_id: str
    room_id: str
    session_id: str
    kind: CueKind
    severity: Severity
    sku_id: str | None
    target_sku_id: str | None
    headline: str
    detail: str
    evidence: dict[str, Any]
    ts: int
    emitted_at: int = 0
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    type: Literal["cue"] = field(default="cue", init=False)


@dataclass(frozen=True, slots=True)
class SkuStats:
    """Per-SKU funnel in a room_stats snapshot. Rates are per minute over the short window."""

    sku_id: str
    name: str
    role: str
    price_cents: int
    stock: int
    on_air: bool
    held: bool
    sold: int
    cart_adds_per_min: float
    orders_per_min: float
    units_per_min: float
    conversion: float | None
    eta_s: float | None


@dataclass(frozen=True, slots=True)
class RoomStats:
    """A snapshot of one active room, about once a second of event time."""

    room_id: str
    session_id: str
    ts: int
    tier: Tier
    online: int
    online_trend: float
    entered_per_min: float
    left_per_min: float
    chat_per_min: float
    unique_chatters: int
    intent_per_min: float
    intent_share: float
    likes_per_min: float
    cart_adds_per_min: float
    orders_per_min: float
    gmv_cents_per_min: int
    gmv_cents_total: int
    unpaid_share: float
    on_air_sku: str | None
    skus: tuple[SkuStats, ...]
    emitted_at: int = 0
    type: Literal["room_stats"] = field(default="room_stats", init=False)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input record that could not be used, with where it came from and why.

    ``raw_b64`` is the record's value bytes, base64-encoded: all of them up to
    :data:`DEADLETTER_RAW_MAX` bytes, else that prefix (``raw_truncated``), so a dead letter
    always fits where its record did (a record at the broker's size limit must not become a
    dead letter the broker refuses). ``raw_len`` and ``raw_sha256`` describe the whole value;
    the record itself stays in its topic at ``offset`` until retention.
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    field_name: str | None
    raw_b64: str
    emitted_at: int
    raw_len: int = 0
    raw_sha256: str = ""
    raw_truncated: bool = False
    type: Literal["deadletter"] = field(default="deadletter", init=False)

    @staticmethod
    def of(
        topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
        reason: str, field_name: str | None, emitted_at: int,
    ) -> DeadLetter:
        """Build a record from raw Kafka fields (key decoded leniently and cut to 256
        characters, value kept as base64 up to :data:`DEADLETTER_RAW_MAX` bytes)."""
        skey = key[:1024].decode("utf-8", "replace")[:256] if key is not None else None
        data = bytes(value or b"")
        cut = len(data) > DEADLETTER_RAW_MAX
        raw = base64.b64encode(data[:DEADLETTER_RAW_MAX] if cut else data).decode("ascii")
        return DeadLetter(topic, partition, offset, skey, reason[:500], field_name, raw, emitted_at,
                          len(data), hashlib.sha256(data).hexdigest(), cut)

    def raw(self) -> bytes:
        """The original value bytes (their first :data:`DEADLETTER_RAW_MAX` if ``raw_truncated``)."""
        return base64.b64decode(self.raw_b64)


@dataclass(frozen=True, slots=True)
class Ack:
    """A screen's acknowledgement of a cue (``live.acks``). ``by`` names the screen's user."""

    cue_id: str
    room_id: str
    action: AckAction
    by: str
    ts: int


def _positional_builder(cls: type) -> Any:
    """``build(*values)`` for a frozen slotted dataclass: every field in declaration order (the
    ``init=False`` ones too), set through the slots' own descriptors. The same object as the
    class's ``__init__`` builds (tests/unit/test_outputs_build.py holds them equal), without a
    frozen dataclass's ``object.__setattr__`` per field: py-spy put building the 6 objects of a
    room_stats snapshot at a fifth of the snapshot's cost, and room_stats are built for every
    live room every second."""
    from dataclasses import fields

    names = [f.name for f in fields(cls)]
    ns: dict[str, Any] = {"new": object.__new__, "cls": cls}
    for n in names:
        ns[f"set_{n}"] = cls.__dict__[n].__set__
    src = (f"def build({', '.join(names)}):\n    o = new(cls)\n    "
           + "; ".join(f"set_{n}(o, {n})" for n in names) + "\n    return o\n")
    exec(compile(src, f"<build {cls.__name__}>", "exec"), ns)  # generated from the field names only
    return ns["build"]


#: positional builders: ``SkuStats`` in field order; ``RoomStats`` in field order, then
#: ``emitted_at`` and ``type`` (always ``"room_stats"``)
build_sku_stats: Final[Callable[..., SkuStats]] = _positional_builder(SkuStats)
build_room_stats: Final[Callable[..., RoomStats]] = _positional_builder(RoomStats)
