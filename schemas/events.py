"""Wire contract v1: the input events the platform sends (one JSON object per Kafka record).

Each event is a frozen, slotted dataclass. ``type`` is a real field (fixed per class) so that
``orjson.dumps(event)`` yields the wire format directly. Field limits live in :mod:`schemas.limits`
and are shared by the decoder and the exported JSON Schema files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

__all__ = [
    "TOPIC_ROOM", "TOPIC_VIEWERS", "TOPIC_CHAT", "TOPIC_LIKES", "TOPIC_CART", "TOPIC_ORDERS",
    "TOPIC_CUES", "TOPIC_ROOM_STATS", "TOPIC_DEADLETTER", "TOPIC_ACKS",
    "INPUT_TOPICS", "OUTPUT_TOPICS", "ALL_TOPICS", "TOPIC_OF_TYPE",
    "Role", "OrderStatus", "ROLES", "ORDER_STATUSES",
    "LineupItem", "SessionStart", "SkuOnAir", "StockSet", "SessionEnd", "Viewers", "Chat",
    "Like", "CartAdd", "Order", "RoomReset", "Event", "EVENT_CLASSES",
]

TOPIC_ROOM: Final = "live.room"
TOPIC_VIEWERS: Final = "live.viewers"
TOPIC_CHAT: Final = "live.chat"
TOPIC_LIKES: Final = "live.likes"
TOPIC_CART: Final = "live.cart"
TOPIC_ORDERS: Final = "live.orders"
TOPIC_CUES: Final = "live.cues"
TOPIC_ROOM_STATS: Final = "live.room_stats"
TOPIC_DEADLETTER: Final = "live.deadletter"
TOPIC_ACKS: Final = "live.acks"

INPUT_TOPICS: Final = (TOPIC_ROOM, TOPIC_VIEWERS, TOPIC_CHAT, TOPIC_LIKES, TOPIC_CART, TOPIC_ORDERS)
OUTPUT_TOPICS: Final = (TOPIC_CUES, TOPIC_ROOM_STATS, TOPIC_DEADLETTER, TOPIC_ACKS)
ALL_TOPICS: Final = INPUT_TOPICS + OUTPUT_TOPICS

Role: TypeAlias = Literal["traffic_driver", "giveaway", "hero", "profit"]
OrderStatus: TypeAlias = Literal["created", "paid", "cancelled"]
ROLES: Final = ("traffic_driver", "giveaway", "hero", "profit")
ORDER_STATUSES: Final = ("created", "paid", "cancelled")


@dataclass(frozen=True, slots=True)
class LineupItem:
    """One SKU of the session's lineup (排品)."""

    sku_id: str
    name: str
    role: Role
    price_cents: int
    stock: int


@dataclass(frozen=True, slots=True)
class SessionStart:
    """A live session begins (or is re-announced) with its lineup. Topic ``live.room``."""

    event_id: str
    room_id: str
    ts: int
    session_id: str
    lineup: tuple[LineupItem, ...]
    type: Literal["session_start"] = field(default="session_start", init=False)


@dataclass(frozen=True, slots=True)
class SkuOnAir:
    """The host starts presenting ``sku_id`` (讲解). Topic ``live.room``."""

    event_id: str
    room_id: str
    ts: int
    sku_id: str
    type: Literal["sku_on_air"] = field(default="sku_on_air", init=False)


@dataclass(frozen=True, slots=True)
class StockSet:
    """The controller sets the stock on the live link (0 = held back, 憋单). Topic ``live.room``."""

    event_id: str
    room_id: str
    ts: int
    sku_id: str
    stock: int
    type: Literal["stock_set"] = field(default="stock_set", init=False)


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """The live session ends. Topic ``live.room``."""

    event_id: str
    room_id: str
    ts: int
    type: Literal["session_end"] = field(default="session_end", init=False)


@dataclass(frozen=True, slots=True)
class RoomReset:
    """An operator resets a room's state (``livecue room reset``), e.g. after a wrong clock
    moved it far into the future. Topic ``live.room``. Accepted whatever its ``ts``; the room
    starts over as if it had never been seen. ``by`` names the operator."""

    event_id: str
    room_id: str
    ts: int
    by: str
    type: Literal["room_reset"] = field(default="room_reset", init=False)


@dataclass(frozen=True, slots=True)
class Viewers:
    """Viewer count sample: currently online, entered and left since the previous sample."""

    event_id: str
    room_id: str
    ts: int
    online: int
    entered: int
    left: int
    type: Literal["viewers"] = field(default="viewers", init=False)


@dataclass(frozen=True, slots=True)
class Chat:
    """One chat message (弹幕). Topic ``live.chat``."""

    event_id: str
    room_id: str
    ts: int
    user_id: str
    text: str
    type: Literal["chat"] = field(default="chat", init=False)


@dataclass(frozen=True, slots=True)
class Like:
    """A burst of likes (``count`` ≥ 1). Topic ``live.likes``."""

    event_id: str
    room_id: str
    ts: int
    count: int
    type: Literal["like"] = field(default="like", init=False)


@dataclass(frozen=True, slots=True)
class CartAdd:
    """A viewer adds ``qty`` of ``sku_id`` to the cart. Topic ``live.cart``."""

    event_id: str
    room_id: str
    ts: int
    user_id: str
    sku_id: str
    qty: int
    type: Literal["cart_add"] = field(default="cart_add", init=False)


@dataclass(frozen=True, slots=True)
class Order:
    """An order status update. One ``order_id`` may arrive as created, then paid or cancelled."""

    event_id: str
    room_id: str
    ts: int
    order_id: str
    user_id: str
    sku_id: str
    qty: int
    amount_cents: int
    status: OrderStatus
    type: Literal["order"] = field(default="order", init=False)


Event: TypeAlias = (
    SessionStart | SkuOnAir | StockSet | SessionEnd | RoomReset | Viewers | Chat | Like | CartAdd
    | Order
)

EVENT_CLASSES: Final[dict[str, type[Event]]] = {
    "session_start": SessionStart,
    "sku_on_air": SkuOnAir,
    "stock_set": StockSet,
    "session_end": SessionEnd,
    "room_reset": RoomReset,
    "viewers": Viewers,
    "chat": Chat,
    "like": Like,
    "cart_add": CartAdd,
    "order": Order,
}

TOPIC_OF_TYPE: Final[dict[str, str]] = {
    "session_start": TOPIC_ROOM,
    "sku_on_air": TOPIC_ROOM,
    "stock_set": TOPIC_ROOM,
    "session_end": TOPIC_ROOM,
    "room_reset": TOPIC_ROOM,
    "viewers": TOPIC_VIEWERS,
    "chat": TOPIC_CHAT,
    "like": TOPIC_LIKES,
    "cart_add": TOPIC_CART,
    "order": TOPIC_ORDERS,
}
