"""The exported JSON Schema files (``schemas/json/``) are in sync with the models and agree with
the decoder.

``jsonschema`` is not a dependency, so a minimal draft 2020-12 validator for the keywords the
export uses lives here. It refuses any keyword it does not know, so a schema feature added to
the export cannot be silently ignored by this test.

Known, deliberate differences (the decoder is stricter than JSON Schema can say):

- a float with an integral value (``3.0``) is an integer to JSON Schema, not to the decoder;
- duplicate ``sku_id`` in a lineup (no JSON Schema keyword for "unique by property");
- the record size limit (``MAX_EVENT_BYTES``) is about bytes on the wire, not the JSON value.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import InvalidEvent, decode_event
from schemas.jsonschema import SCHEMA_DIR, build_schemas, render
from schemas.limits import FIELDS, KINDS

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
BASE: dict[str, dict[str, Any]] = {t: orjson.loads((GOLDEN / f"{t}.json").read_bytes()) for t in FIELDS}
ON_DISK: dict[str, dict[str, Any]] = {p.name: orjson.loads(p.read_bytes()) for p in SCHEMA_DIR.glob("*.json")}

# --- a minimal validator ---------------------------------------------------------------------

_ANNOTATIONS = {"$schema", "$id", "title", "description"}
_KEYWORDS = _ANNOTATIONS | {
    "type", "required", "properties", "additionalProperties", "minimum", "maximum", "minLength",
    "maxLength", "enum", "const", "items", "minItems", "maxItems", "oneOf", "$ref",
}


def _is_type(value: Any, jtype: str) -> bool:
    if jtype == "object":
        return isinstance(value, dict)
    if jtype == "array":
        return isinstance(value, list)
    if jtype == "string":
        return isinstance(value, str)
    if jtype == "boolean":
        return isinstance(value, bool)
    if jtype == "null":
        return value is None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if jtype == "number":
        return True
    if jtype == "integer":  # draft 2020-12: any number with a zero fractional part
        return isinstance(value, int) or (math.isfinite(value) and value == int(value))
    raise AssertionError(f"validator does not know type {jtype!r}")


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def errors(schema: dict[str, Any], value: Any, where: str = "$", schemas: dict[str, Any] = ON_DISK) -> list[str]:
    """Every violation of ``schema`` by ``value`` as ``"path: keyword"``; empty if valid."""
    unknown = set(schema) - _KEYWORDS
    assert not unknown, f"validator does not implement {unknown} (at {where})"
    out: list[str] = []
    if "$ref" in schema:
        out += errors(schemas[schema["$ref"]], value, where, schemas)
    if "oneOf" in schema:
        passing = sum(not errors(s, value, where, schemas) for s in schema["oneOf"])
        if passing != 1:
            out.append(f"{where}: oneOf ({passing} matched)")
    if "type" in schema and not _is_type(value, schema["type"]):
        return out + [f"{where}: type"]
    if "const" in schema and not _json_equal(value, schema["const"]):
        out.append(f"{where}: const")
    if "enum" in schema and not any(_json_equal(value, e) for e in schema["enum"]):
        out.append(f"{where}: enum")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{where}: minLength")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(f"{where}: maxLength")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{where}: minimum")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{where}: maximum")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{where}: minItems")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{where}: maxItems")
        if "items" in schema:
            for i, item in enumerate(value):
                out += errors(schema["items"], item, f"{where}[{i}]", schemas)
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                out.append(f"{where}.{name}: required")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                out += errors(sub, value[name], f"{where}.{name}", schemas)
        assert schema.get("additionalProperties", True) is True, "validator only knows additionalProperties: true"
    return out


def valid(value: Any, name: str = "event.schema.json") -> bool:
    return not errors(ON_DISK[name], value)


def decodes(value: Any) -> bool:
    try:
        decode_event(orjson.dumps(value))
    except InvalidEvent:
        return False
    return True


# --- the validator itself works --------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "value", "ok"),
    [
        ({"type": "integer"}, 3, True), ({"type": "integer"}, 3.0, True), ({"type": "integer"}, 3.5, False),
        ({"type": "integer"}, True, False), ({"type": "integer"}, "3", False), ({"type": "string"}, 3, False),
        ({"type": "array"}, {}, False), ({"type": "object"}, [], False), ({"const": "chat"}, "chat", True),
        ({"const": "chat"}, "like", False), ({"const": 1}, True, False), ({"enum": ["a", "b"]}, "c", False),
        ({"minLength": 2}, "字字", True), ({"maxLength": 1}, "字字", False), ({"minimum": 1}, 0, False),
        ({"maximum": 1}, 2, False), ({"minItems": 1}, [], False), ({"maxItems": 1}, [1, 2], False),
        ({"items": {"type": "integer"}}, [1, "x"], False), ({"required": ["a"]}, {}, False),
        ({"properties": {"a": {"type": "string"}}}, {"a": 1}, False),
        ({"properties": {"a": {"type": "string"}}}, {"b": 1}, True),
        ({"oneOf": [{"type": "string"}, {"minLength": 1}]}, "x", False),
    ],
)
def test_minimal_validator(schema: dict[str, Any], value: Any, ok: bool) -> None:
    assert (not errors(schema, value, schemas={})) is ok


def test_minimal_validator_refuses_unknown_keywords() -> None:
    with pytest.raises(AssertionError, match="does not implement"):
        errors({"pattern": "^a$"}, "a", schemas={})


# --- in sync with the models -----------------------------------------------------------------


def test_schema_files_are_in_sync_with_the_models() -> None:
    built = build_schemas()
    assert set(ON_DISK) == set(built), "run `make schemas`"
    for name, schema in built.items():
        assert (SCHEMA_DIR / name).read_bytes() == render(schema), f"{name} is stale: run `make schemas`"


def test_one_schema_file_per_event_type_plus_the_union() -> None:
    assert set(ON_DISK) == {f"{t}.schema.json" for t in FIELDS} | {"event.schema.json"}
    refs = {r["$ref"] for r in ON_DISK["event.schema.json"]["oneOf"]}
    assert refs == {f"{t}.schema.json" for t in FIELDS}


# --- in agreement with the decoder -----------------------------------------------------------


@pytest.mark.parametrize("etype", sorted(FIELDS))
def test_golden_events_are_valid_by_their_schema_and_the_union(etype: str) -> None:
    assert errors(ON_DISK[f"{etype}.schema.json"], BASE[etype]) == []
    assert valid(BASE[etype])
    assert decodes(BASE[etype])


@pytest.mark.parametrize("etype", sorted(FIELDS))
def test_golden_event_is_valid_only_by_its_own_type_schema(etype: str) -> None:
    for other in FIELDS:
        if other != etype:
            assert not valid(BASE[etype], f"{other}.schema.json")


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    if path.startswith("lineup[0]."):
        obj["lineup"][0][path.split(".", 1)[1]] = value
    elif value is _DELETE:
        del obj[path]
    else:
        obj[path] = value
    return obj


_DELETE = object()

INVALID = [
    ("chat", "ts", "1718000000000"), ("chat", "ts", 1718000000), ("chat", "ts", True), ("chat", "text", "买" * 1001),
    ("chat", "user_id", ""), ("chat", "user_id", None), ("chat", "type", "chat2"), ("chat", "room_id", _DELETE),
    ("like", "count", 0), ("like", "count", -3), ("like", "count", 1_000_001), ("like", "count", "3"),
    ("cart_add", "qty", 0), ("cart_add", "qty", 10_001), ("order", "status", "shipped"),
    ("order", "amount_cents", 19.9), ("order", "amount_cents", -1), ("viewers", "online", -1),
    ("stock_set", "stock", 100_000_001), ("session_start", "lineup", "none"),
    ("session_start", "lineup", [{"sku_id": f"s{i}", "name": "n", "role": "hero", "price_cents": 1, "stock": 1} for i in range(201)]),
    ("session_start", "lineup[0].role", "bestseller"), ("session_start", "lineup[0].price_cents", "9.90"),
    ("session_start", "lineup[0].name", "茶" * 201), ("sku_on_air", "sku_id", 5), ("session_end", "event_id", "e" * 129),
]


@pytest.mark.parametrize(("etype", "path", "value"), INVALID, ids=[f"{e}-{p}-{i}" for i, (e, p, _) in enumerate(INVALID)])
def test_invalid_events_are_rejected_by_schema_and_decoder(etype: str, path: str, value: Any) -> None:
    obj = _set(BASE[etype], path, value)
    assert not decodes(obj)
    assert not valid(obj)
    assert not valid(obj, f"{etype}.schema.json")


@pytest.mark.parametrize("value", [[], "chat", 3, None, {}])
def test_non_events_are_rejected_by_schema_and_decoder(value: Any) -> None:
    assert not decodes(value)
    assert not valid(value)


def test_known_difference_integral_float() -> None:
    obj = _set(BASE["like"], "count", 3.0)
    assert valid(obj) and not decodes(obj)


def test_known_difference_duplicate_sku_id() -> None:
    obj = copy.deepcopy(BASE["session_start"])
    obj["lineup"][1]["sku_id"] = obj["lineup"][0]["sku_id"]
    assert valid(obj) and not decodes(obj)


def test_unknown_extra_fields_are_allowed_by_both() -> None:
    obj = {**BASE["order"], "coupon": {"id": "c1"}, "v": 2}
    assert valid(obj) and decodes(obj)


# Mutations of golden events: wherever neither known difference is involved, schema and decoder
# must reach the same verdict.
_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=8),
    st.sampled_from([0, 1, -1, 10**12, 10**12 + 1, 1_000_001, 100_000_001, 946_684_800_000, 4_102_444_800_001, "", "字" * 129]),
    st.sampled_from([v for kind in KINDS.values() if kind[0] == "enum" for v in kind[1]]),
)
_VALUE = st.one_of(_LEAF, st.lists(_LEAF, max_size=2), st.dictionaries(st.text(max_size=4), _LEAF, max_size=2))


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    etype = draw(st.sampled_from(sorted(FIELDS)))
    obj = copy.deepcopy(BASE[etype])
    for _ in range(draw(st.integers(1, 3))):
        target = obj
        items = [i for i in obj.get("lineup", ()) if isinstance(i, dict)] if isinstance(obj.get("lineup"), list) else []
        if items and draw(st.booleans()):
            target = draw(st.sampled_from(items))
        name = draw(st.sampled_from(sorted(target) + ["type", "extra"]))
        if draw(st.integers(0, 4)) == 0:
            target.pop(name, None)
        else:
            target[name] = draw(_VALUE)
    return obj


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_schema_and_decoder_agree_on_mutated_events(obj: dict[str, Any]) -> None:
    assert valid(obj) == decodes(obj), errors(ON_DISK["event.schema.json"], obj)
