"""Field kinds and their limits: the single source for the decoder and the JSON Schema export.

A limit is the line between a plausible event and an absurd one; anything past it is rejected
as invalid rather than allowed to poison a room's windows.
"""

from __future__ import annotations

from typing import Final

__all__ = ["KINDS", "FIELDS", "LINEUP_FIELDS", "COMMON_FIELDS", "MAX_LINEUP"]

TS_MIN: Final = 946_684_800_000  # 2000-01-01T00:00:00Z in epoch ms
TS_MAX: Final = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_LINEUP: Final = 200

#: kind -> (json type, bounds/enum). For strings the bounds are (min_len, max_len);
#: for integers (minimum, maximum); for enums the allowed values.
KINDS: Final[dict[str, tuple[str, tuple[object, ...]]]] = {
    "id": ("string", (1, 128)),
    "name": ("string", (1, 200)),
    "text": ("string", (0, 1000)),
    "ts": ("integer", (TS_MIN, TS_MAX)),
    "count": ("integer", (1, 1_000_000)),
    "qty": ("integer", (1, 10_000)),
    "viewers": ("integer", (0, 100_000_000)),
    "stock": ("integer", (0, 100_000_000)),
    "money": ("integer", (0, 10**12)),
    "role": ("enum", ("traffic_driver", "giveaway", "hero", "profit")),
    "status": ("enum", ("created", "paid", "cancelled")),
    "lineup": ("lineup", (0, MAX_LINEUP)),
}

COMMON_FIELDS: Final = (("event_id", "id"), ("room_id", "id"), ("ts", "ts"))

LINEUP_FIELDS: Final = (
    ("sku_id", "id"), ("name", "name"), ("role", "role"), ("price_cents", "money"), ("stock", "stock"),
)

#: type -> the fields beyond the common ones, in wire order.
FIELDS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "session_start": (("session_id", "id"), ("lineup", "lineup")),
    "sku_on_air": (("sku_id", "id"),),
    "stock_set": (("sku_id", "id"), ("stock", "stock")),
    "session_end": (),
    "room_reset": (("by", "id"),),
    "viewers": (("online", "viewers"), ("entered", "viewers"), ("left", "viewers")),
    "chat": (("user_id", "id"), ("text", "text")),
    "like": (("count", "count"),),
    "cart_add": (("user_id", "id"), ("sku_id", "id"), ("qty", "qty")),
    "order": (
        ("order_id", "id"), ("user_id", "id"), ("sku_id", "id"), ("qty", "qty"),
        ("amount_cents", "money"), ("status", "status"),
    ),
}
