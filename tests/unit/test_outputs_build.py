"""The positional builders of room_stats (``build_room_stats``, ``build_sku_stats``) make the same
objects as the dataclasses' own constructors: equal, same hash, same wire JSON, still frozen."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.decode import encode
from schemas.outputs import TIERS, RoomStats, SkuStats, build_room_stats, build_sku_stats

text = st.text(max_size=12)
num = st.floats(allow_nan=False, allow_infinity=False, width=32)
opt = st.none() | num
sku_values = st.tuples(text, text, st.sampled_from(["hero", "profit", "traffic_driver", "giveaway"]),
                       st.integers(0, 10**9), st.integers(0, 10**6), st.booleans(), st.booleans(),
                       st.integers(0, 10**6), num, num, num, opt, opt)


@given(sku_values)
def test_build_sku_stats_equals_the_constructor(values: tuple) -> None:
    built, made = build_sku_stats(*values), SkuStats(*values)
    assert built == made and hash(built) == hash(made)
    assert orjson.dumps(built) == orjson.dumps(made)
    assert [f.name for f in dataclasses.fields(SkuStats)] == list(SkuStats.__slots__)  # every field set


@given(st.lists(sku_values, max_size=4), text, text, st.integers(0, 2**50), st.sampled_from(TIERS),
       st.integers(0, 10**7), num, st.none() | text, st.integers(0, 2**50))
def test_build_room_stats_equals_the_constructor(skus: list, room: str, session: str, ts: int, tier: str,
                                                 online: int, rate: float, on_air: str | None,
                                                 emitted: int) -> None:
    sk = tuple(SkuStats(*v) for v in skus)
    args = (room, session, ts, tier, online, rate, rate, rate, rate, online, rate, rate, rate, rate, rate,
            online, online, rate, on_air, sk)
    built = build_room_stats(*args, emitted, "room_stats")
    made = RoomStats(*args, emitted_at=emitted)
    assert built == made and hash(built) == hash(made)
    assert encode(built) == encode(made)
    assert orjson.loads(encode(built))["type"] == "room_stats"
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.online = 1  # type: ignore[misc]


def test_builders_take_every_field_in_order() -> None:
    # a field added to the schema changes the builders' arity: a caller passing the old list
    # fails loudly instead of building a half-set object
    for cls, build in ((SkuStats, build_sku_stats), (RoomStats, build_room_stats)):
        names = [f.name for f in dataclasses.fields(cls)]
        assert build.__code__.co_varnames[:build.__code__.co_argcount] == tuple(names)
