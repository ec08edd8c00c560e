"""Export JSON Schema (draft 2020-12) files for every input event, built from :mod:`schemas.limits`.

``python -m schemas.jsonschema --write`` regenerates ``schemas/json/``; ``--check`` exits 1 if
the files on disk differ from what the models say (a test runs the same comparison).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from .limits import COMMON_FIELDS, FIELDS, KINDS, LINEUP_FIELDS

__all__ = ["build_schemas", "SCHEMA_DIR"]

SCHEMA_DIR = Path(__file__).parent / "json"
_BASE = "https://livecue.dev/schemas/v1/"


def _kind_schema(kind: str) -> dict[str, Any]:
    jtype, bounds = KINDS[kind]
    if jtype == "string":
        return {"type": "string", "minLength": bounds[0], "maxLength": bounds[1]}
    if jtype == "integer":
        return {"type": "integer", "minimum": bounds[0], "maximum": bounds[1]}
    if jtype == "enum":
        return {"type": "string", "enum": list(bounds)}
    item = _object_schema(LINEUP_FIELDS)
    return {"type": "array", "minItems": bounds[0], "maxItems": bounds[1], "items": item}


def _object_schema(fields: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [n for n, _ in fields],
        "properties": {n: _kind_schema(k) for n, k in fields},
        "additionalProperties": True,
    }


def build_schemas() -> dict[str, dict[str, Any]]:
    """Return ``{file name: schema}`` for every event type, plus ``event.schema.json`` (any event)."""
    out: dict[str, dict[str, Any]] = {}
    refs = []
    for etype, extra in FIELDS.items():
        schema = _object_schema(COMMON_FIELDS + extra)
        schema["properties"] = {"type": {"const": etype}, **schema["properties"]}
        schema["required"] = ["type", *schema["required"]]
        name = f"{etype}.schema.json"
        out[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": _BASE + name,
            "title": f"LiveCue event: {etype}",
            "description": "Wire contract v1. Kafka key = room_id. Times in epoch ms; money in integer minor units.",
            **schema,
        }
        refs.append({"$ref": name})
    out["event.schema.json"] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": _BASE + "event.schema.json",
        "title": "LiveCue event (any type)",
        "oneOf": refs,
    }
    return out


def render(schema: dict[str, Any]) -> bytes:
    """Canonical bytes of a schema file (indented, sorted keys, trailing newline)."""
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite schemas/json/")
    parser.add_argument("--check", action="store_true", help="fail if schemas/json/ is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, schema in build_schemas().items():
        path = SCHEMA_DIR / name
        data = render(schema)
        if args.write:
            SCHEMA_DIR.mkdir(exist_ok=True)
            path.write_bytes(data)
        elif not path.exists() or path.read_bytes() != data:
            stale.append(name)
    if stale:
        print("stale JSON Schema files (run `make schemas`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
