"""Bytes in, typed event out: the one decode function of the hot path.

``decode_event`` either returns an event of :mod:`schemas.events` or raises
:class:`~schemas.errors.InvalidEvent` with a short reason naming the field. It never raises
anything else, whatever the bytes (a property test holds it to that).
"""

from __future__ import annotations

import dataclasses
import operator

from collections.abc import Callable
from typing import Annotated, Any, Final, Literal, cast

import msgspec
import orjson

from .errors import InvalidAck, InvalidEvent
from .events import EVENT_CLASSES, TOPIC_OF_TYPE, Event, LineupItem
from .limits import COMMON_FIELDS, FIELDS, KINDS, LINEUP_FIELDS
from .outputs import ACK_ACTIONS, Ack

__all__ = ["decode_event", "decoder_for", "decode_ack", "encode", "MAX_EVENT_BYTES", "UNCHECKED"]

#: Larger records are rejected before parsing (the biggest legal event, a full lineup, is ~60 KiB).
MAX_EVENT_BYTES: Final = 256 * 1024


class _Unchecked:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHECKED"


#: Pass as ``key`` to skip the Kafka-key check (offline files, backtests).
UNCHECKED: Final = _Unchecked()

_Check = Callable[[Any, str], Any]


def _string_check(lo: int, hi: int) -> _Check:
    def check(v: Any, name: str) -> Any:
        if type(v) is not str:
            raise InvalidEvent(f"{name}: must be a string", name)
        n = len(v)
        if n < lo:
            raise InvalidEvent(f"{name}: must not be empty", name)
        if n > hi:
            raise InvalidEvent(f"{name}: longer than {hi} characters", name)
        return v

    return check


def _int_check(lo: int, hi: int) -> _Check:
    def check(v: Any, name: str) -> Any:
        # bool is an int subclass; a float such as 3.0 is not an integer on this wire.
        if type(v) is not int:
            raise InvalidEvent(f"{name}: must be an integer", name)
        if v < lo:
            if lo == 1 and v <= 0:
                raise InvalidEvent(f"{name}: must be positive", name)
            raise InvalidEvent(f"{name}: below {lo}", name)
        if v > hi:
            raise InvalidEvent(f"{name}: above {hi}", name)
        return v

    return check


def _enum_check(allowed: tuple[object, ...]) -> _Check:
    allowed_set = frozenset(allowed)
    text = " | ".join(str(a) for a in allowed)

    def check(v: Any, name: str) -> Any:
        if type(v) is not str or v not in allowed_set:
            raise InvalidEvent(f"{name}: must be one of {text}", name)
        return v

    return check


def _lineup_check(lo: int, hi: int) -> _Check:
    def check(v: Any, name: str) -> Any:
        if type(v) is not list:
            raise InvalidEvent(f"{name}: must be an array", name)
        if len(v) > hi:
            raise InvalidEvent(f"{name}: more than {hi} items", name)
        items = []
        seen: set[str] = set()
        for i, raw in enumerate(v):
            where = f"{name}[{i}]"
            if type(raw) is not dict:
                raise InvalidEvent(f"{where}: must be an object", where)
            args = _fields(raw, _LINEUP_CHECKS, where + ".")
            if args[0] in seen:
                raise InvalidEvent(f"{where}.sku_id: duplicate sku_id", where + ".sku_id")
            seen.add(args[0])
            items.append(LineupItem(*args))
        return tuple(items)

    return check


def _make_check(kind: str) -> _Check:
    jtype, bounds = KINDS[kind]
    if jtype == "string":
        return _string_check(*bounds)  # type: ignore[arg-type]
    if jtype == "integer":
        return _int_check(*bounds)  # type: ignore[arg-type]
    if jtype == "enum":
        return _enum_check(bounds)
    return _lineup_check(*bounds)  # type: ignore[arg-type]


_CHECKS: Final[dict[str, _Check]] = {k: _make_check(k) for k in KINDS}
_LINEUP_CHECKS: Final = tuple((n, _CHECKS[k]) for n, k in LINEUP_FIELDS)
_TYPE_CHECKS: Final[dict[str, tuple[tuple[str, _Check], ...]]] = {
    t: tuple((n, _CHECKS[k]) for n, k in COMMON_FIELDS + extra) for t, extra in FIELDS.items()
}
_MISSING: Final = object()
_TYPES_TEXT: Final = ", ".join(EVENT_CLASSES)


def _fast_source(etype: str) -> str | None:
    """Source of a per-type decoder with every check inlined: returns the event, or None on any
    problem (the checked path then names it). One function call per event instead of one per
    field; None for types with nested structure (the lineup)."""
    fields = COMMON_FIELDS + FIELDS[etype]
    loads, tests = [], []
    for i, (name, kind) in enumerate(fields):
        jtype, bounds = KINDS[kind]
        v = f"a{i}"
        loads.append(f"{v} = obj[{name!r}]")
        if jtype == "string":
            lo, hi = bounds
            tests.append(f"type({v}) is str and {lo} <= len({v}) <= {hi}")
        elif jtype == "integer":
            lo, hi = bounds
            tests.append(f"type({v}) is int and {lo} <= {v} <= {hi}")
        elif jtype == "enum":
            tests.append(f"type({v}) is str and {v} in {frozenset(bounds)!r}")
        else:
            return None
    # Built without the class's __init__: a frozen dataclass's sets every field through
    # object.__setattr__ (py-spy: 7 % of a many-room worker); the slots' own descriptors give the
    # same object at a quarter of the cost (tests/unit/test_schemas_decode.py holds them equal).
    sets = _slot_sets(EVENT_CLASSES[etype], {name: f"a{i}" for i, (name, _) in enumerate(fields)})
    if sets is None:
        return None
    return (f"def fast(obj):\n    try:\n        {'; '.join(loads)}\n    except KeyError:\n        return None\n"
            f"    if {' and '.join(tests)}:\n        o = new(cls); {'; '.join(sets)}\n        return o\n"
            f"    return None\n")


def _slot_sets(cls: type, values: dict[str, str]) -> list[str] | None:
    """``set_<field>(o, <expression>)`` for every field of ``cls``, in order: ``values[name]``
    where given, else the field's default. None if a field has neither, or a value names no
    field. The names are bound by :func:`_slot_namespace`."""
    left = dict(values)
    sets = []
    for f in dataclasses.fields(cls):
        if f.name in left:
            sets.append(f"set_{f.name}(o, {left.pop(f.name)})")
        elif f.default is not dataclasses.MISSING:
            sets.append(f"set_{f.name}(o, {f.default!r})")
        else:
            return None
    return None if left else sets


def _slot_namespace(cls: type) -> dict[str, Any]:
    """``cls``, ``new`` and each field's ``set_<field>`` (the slot's member descriptor) for code
    generated with :func:`_slot_sets`."""
    ns: dict[str, Any] = {"cls": cls, "new": object.__new__}
    for f in dataclasses.fields(cls):
        ns[f"set_{f.name}"] = cls.__dict__[f.name].__set__
    return ns


def _make_fast(etype: str) -> Callable[[dict[str, Any]], Event | None] | None:
    src = _fast_source(etype)
    if src is None:
        return None
    ns = _slot_namespace(EVENT_CLASSES[etype])
    exec(compile(src, f"<decode {etype}>", "exec"), ns)  # generated from schemas.limits only
    fast: Callable[[dict[str, Any]], Event | None] = ns["fast"]
    return fast


_FAST: Final[dict[str, Callable[[dict[str, Any]], Event | None] | None]] = {t: _make_fast(t) for t in FIELDS}


def _fields(obj: dict[str, Any], checks: tuple[tuple[str, _Check], ...], prefix: str = "") -> list[Any]:
    get = obj.get
    if prefix:
        out = []
        for name, check in checks:
            v = get(name, _MISSING)
            if v is _MISSING:
                raise InvalidEvent(f"{prefix}{name}: missing", prefix + name)
            out.append(check(v, prefix + name))
        return out
    # the per-event path: no per-field string building
    try:
        return [check(obj[name], name) for name, check in checks]
    except KeyError:
        for name, _check in checks:
            if name not in obj:
                raise InvalidEvent(f"{name}: missing", name) from None
        raise


def _parse_object(raw: bytes | bytearray | memoryview | str, err: type[InvalidEvent]) -> dict[str, Any]:
    if raw is None or not isinstance(raw, (bytes, bytearray, memoryview, str)):
        raise err("value: missing or not bytes", "value")
    if len(raw) > MAX_EVENT_BYTES:
        raise err(f"value: larger than {MAX_EVENT_BYTES} bytes", "value")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if isinstance(exc.__cause__, UnicodeDecodeError) or "UTF-8" in str(exc) or "utf-8" in str(exc):
            raise err("value: not valid UTF-8", "value") from None
        raise err("value: not valid JSON", "value") from None
    if type(obj) is not dict:
        raise err("value: JSON is not an object", "value")
    return obj


def decode_event(
    raw: bytes | bytearray | memoryview | str,
    key: bytes | None | _Unchecked = UNCHECKED,
    topic: str | None = None,
) -> Event:
    """Decode one record's value into a typed event.

    ``key`` is the record's Kafka key; it must equal ``room_id`` (pass :data:`UNCHECKED` to skip,
    e.g. for files). ``topic``, when given, must be the topic the event's type belongs to.
    Raises :class:`InvalidEvent` for anything that cannot be used; never anything else.
    """
    obj = _parse_object(raw, InvalidEvent)
    etype = obj.get("type", _MISSING)
    if etype is _MISSING:
        raise InvalidEvent("type: missing", "type")
    checks = _TYPE_CHECKS.get(etype) if type(etype) is str else None
    if checks is None:
        raise InvalidEvent(f"type: unknown (expected one of {_TYPES_TEXT})", "type")
    if topic is not None and TOPIC_OF_TYPE[etype] != topic:
        raise InvalidEvent(f"type: {etype} does not belong on topic {topic}", "type")
    fast = _FAST[etype]
    event = fast(obj) if fast is not None else None
    if event is None:
        args = _fields(obj, checks)  # names what is wrong (or builds a nested type)
        event = EVENT_CLASSES[etype](*args)
    if key is not UNCHECKED:
        if not key:
            raise InvalidEvent("key: missing Kafka key (must equal room_id)", "key")
        try:
            skey = key.decode() if isinstance(key, (bytes, bytearray)) else str(key)
        except UnicodeDecodeError:
            raise InvalidEvent("key: not valid UTF-8", "key") from None
        if skey != event.room_id:
            raise InvalidEvent("key: Kafka key disagrees with room_id", "key")
    return event


def _wire_struct(etype: str, tagged: bool) -> tuple[type, Callable[[Any], Event]] | None:
    """A msgspec Struct for one flat event type, every check of :func:`decode_event` in its
    annotations (the same bounds from :mod:`schemas.limits`; strict types: no bool or float for
    an int), refusing fields it does not know; and a function that turns a decoded Struct into
    the event (built through the slots' descriptors, like ``_FAST``). None for types with nested
    structure (the lineup). ``type`` must be there and be ``etype``: as the tag of a union
    (``tagged``: msgspec needs it to pick the member), else as a required Literal field (a lone
    tagged Struct takes a record without its tag)."""
    fields = COMMON_FIELDS + FIELDS[etype]
    spec: list[tuple[str, Any]] = []
    for name, kind in fields:
        jtype, bounds = KINDS[kind]
        lo, hi = (cast(int, b) for b in bounds[:2]) if jtype in ("string", "integer") else (0, 0)
        if jtype == "string":
            spec.append((name, Annotated[str, msgspec.Meta(min_length=lo, max_length=hi)]))
        elif jtype == "integer":
            spec.append((name, Annotated[int, msgspec.Meta(ge=lo, le=hi)]))
        elif jtype == "enum":
            spec.append((name, Literal[bounds]))
        else:
            return None
    if tagged:
        struct = msgspec.defstruct(f"Wire_{etype}", spec, tag_field="type", tag=etype, forbid_unknown_fields=True)
    else:
        spec.append(("type", Literal[etype]))
        struct = msgspec.defstruct(f"Wire_{etype}", spec, forbid_unknown_fields=True)
    cls = EVENT_CLASSES[etype]
    sets = _slot_sets(cls, {name: f"s.{name}" for name, _ in fields})
    if sets is None:
        return None
    ns = _slot_namespace(cls)
    src = f"def convert(s):\n    o = new(cls); {'; '.join(sets)}\n    return o\n"
    exec(compile(src, f"<convert {etype}>", "exec"), ns)  # generated from schemas.limits only
    return struct, ns["convert"]


def decoder_for(topic: str) -> Callable[[Any, Any], Event]:
    """``decode_event(raw, key, topic)`` for one input topic, cheaper per record: the worker's
    path (py-spy: decode_event's generic dispatch and key decoding were 5 % of a many-room
    worker). A record with ``bytes`` value and key, valid JSON of one of the topic's flat types
    passing the contract's checks, and a key equal to ``room_id`` takes the short way; anything else
    goes through :func:`decode_event` itself, which names what is wrong. Same result, same
    errors (a property test holds them equal).

    The short way is one msgspec decode of the topic's flat types (a tagged union of
    :func:`_wire_struct`), which parses and checks in C; any record it does not take (a session
    start's lineup, an unknown field, anything invalid) goes the checked way. py-spy put
    ``orjson.loads`` plus the inlined Python checks at ~19 % of the in-process many-room
    pipeline; per chat record 2.4 -> 1.6 us. Unknown fields are refused rather than skipped:
    msgspec skips them without orjson's limits (it took ``1e999`` there, orjson does not), and
    the short way must never take a record the checked way refuses."""
    flat = [t for t, tp in TOPIC_OF_TYPE.items()
            if tp == topic and all(KINDS[k][0] != "lineup" for _, k in COMMON_FIELDS + FIELDS[t])]
    wires = [w for t in flat if (w := _wire_struct(t, tagged=len(flat) > 1)) is not None]
    convert = {struct: conv for struct, conv in wires}
    union: Any = None
    for struct, _conv in wires:
        union = struct if union is None else union | struct
    wire_decode = msgspec.json.Decoder(union).decode if wires else None
    wire_error, max_bytes = msgspec.DecodeError, MAX_EVENT_BYTES  # ValidationError is one too

    def decode(raw: Any, key: Any) -> Event:
        if wire_decode is not None and type(raw) is bytes and type(key) is bytes and len(raw) <= max_bytes:
            try:
                wire = wire_decode(raw)
            except wire_error:
                wire = None
            if wire is not None:
                event = convert[type(wire)](wire)
                if key == event.room_id.encode():
                    return event
        return decode_event(raw, key, topic)

    return decode


_ACK_CHECKS: Final = (
    ("cue_id", _CHECKS["id"]),
    ("room_id", _CHECKS["id"]),
    ("action", _enum_check(ACK_ACTIONS)),
    ("by", _CHECKS["id"]),
    ("ts", _CHECKS["ts"]),
)


def decode_ack(raw: bytes | bytearray | memoryview | str) -> Ack:
    """Decode an acknowledgement record (``live.acks``). Raises :class:`InvalidAck`."""
    obj = _parse_object(raw, InvalidAck)
    try:
        args = _fields(obj, _ACK_CHECKS)
    except InvalidAck:
        raise
    except InvalidEvent as exc:
        raise InvalidAck(exc.reason, exc.field) from None
    return Ack(*args)


_AS_DICT: dict[type, tuple[tuple[str, ...], Callable[[Any], Any]]] = {}


def _as_dict(obj: Any) -> dict[str, Any]:
    """A dataclass instance as a dict of its fields, in field order (what orjson writes for it)."""
    cls = type(obj)
    spec = _AS_DICT.get(cls)
    if spec is None:
        if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
            raise TypeError(f"cannot encode {cls.__name__}")
        names = tuple(f.name for f in dataclasses.fields(obj))
        one: Callable[[Any], Any] = operator.attrgetter(*names)
        spec = _AS_DICT[cls] = (names, one if len(names) > 1 else (lambda o: (one(o),)))
    names, values = spec
    return dict(zip(names, values(obj)))


def encode(obj: object) -> bytes:
    """Encode an event or output record to its wire bytes (compact UTF-8 JSON).

    Dataclasses go through :func:`_as_dict`: orjson reads a slotted dataclass field by field
    (18 us for a room_stats with five SKUs; py-spy: 62 % of building and sending a snapshot);
    handing it a dict is 8.6 us, same bytes (tests/unit/test_schemas_golden.py).
    """
    return orjson.dumps(obj, default=_as_dict, option=orjson.OPT_PASSTHROUGH_DATACLASS)
