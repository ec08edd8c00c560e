"""Fuzzing playbook loading (hypothesis): whatever a careless or hostile edit puts in a playbook,
:func:`load_playbook`, :func:`playbook_from_mapping` and :class:`PlaybookSet` raise nothing but
:class:`~schemas.errors.ConfigError` (and a reload never raises at all).

Inputs: documents built from the real key names with values of every TOML type (and a few no
TOML parser makes), the shipped default with lines mutated, and arbitrary bytes.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import ConfigError
from stream.core.rules import Playbook
from stream.playbook import PlaybookSet, load_playbook, playbook_from_mapping

DEFAULT_TEXT = (Path(__file__).resolve().parents[2] / "stream" / "playbooks" / "default.toml").read_text("utf-8")
_HINTS = typing.get_type_hints(Playbook)
SECTIONS = {f.name: [x.name for x in fields(_HINTS[f.name])] for f in fields(Playbook)
            if f.init and is_dataclass(_HINTS[f.name])}
TOP = [f.name for f in fields(Playbook) if f.init and f.name not in SECTIONS]
LANGS = ["zh", "en", "fr", ""]
CUE_KINDS = ["push_stock", "release_orders", "switch_to_traffic_driver", "switch_to_profit",
             "unpaid_orders", "nope"]

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["session", "absolute", "zh", "en", "", " ", "true", "0", "1e309"]),
    st.datetimes(), st.dates(), st.times(), st.none(), st.binary(max_size=8),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A playbook document: mostly real keys (so validation goes deep), some unknown ones."""
    doc: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(TOP + list(SECTIONS) + ["texts", "bogus"]), max_size=6, unique=True)):
        if key in SECTIONS and draw(st.booleans()):
            names = SECTIONS[key] + ["unknown_key"]
            doc[key] = draw(st.dictionaries(st.sampled_from(names), values, max_size=len(names)))
        elif key == "texts" and draw(st.booleans()):
            doc[key] = draw(st.dictionaries(
                st.sampled_from(LANGS),
                st.dictionaries(st.sampled_from(CUE_KINDS), st.one_of(
                    st.dictionaries(st.sampled_from(["headline", "detail", "extra"]),
                                    st.one_of(st.text(max_size=80), values), max_size=3), values),
                    max_size=4), max_size=3))
        else:
            doc[key] = draw(values)
    return doc


@FUZZ
@given(documents())
def test_playbook_from_mapping_raises_only_config_error(doc: dict[str, Any]) -> None:
    try:
        pb = playbook_from_mapping(doc, "fuzz")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz: "), exc
    else:
        assert isinstance(pb, Playbook) and not pb.problems()


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v).replace("inf", "inf").replace("nan", "nan")
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@st.composite
def mutated_default(draw: st.DrawFn) -> str:
    """The shipped default with some lines' values replaced, lines dropped or junk inserted."""
    lines = DEFAULT_TEXT.splitlines()
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["value", "drop", "insert", "dup"]))
        if op == "value" and "=" in lines[i]:
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}= {_toml_value(draw(scalars.filter(lambda x: x is not None and not isinstance(x, bytes))))}"
        elif op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        else:
            lines.insert(i, draw(st.text(max_size=40)))
    return "\n".join(lines)


def _write(text_or_bytes: str | bytes) -> Path:
    fd, name = tempfile.mkstemp(suffix=".toml")
    with os.fdopen(fd, "wb") as f:
        f.write(text_or_bytes.encode("utf-8", "surrogatepass") if isinstance(text_or_bytes, str) else text_or_bytes)
    return Path(name)


@FUZZ
@given(st.one_of(mutated_default(), st.binary(max_size=300), st.text(max_size=300)))
def test_load_playbook_raises_only_config_error(content: str | bytes) -> None:
    path = _write(content)
    try:
        load_playbook(path)
    except ConfigError as exc:
        assert str(path) in str(exc), "the message names the file"
    finally:
        path.unlink()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_default(), st.one_of(mutated_default(), st.binary(max_size=200)))
def test_playbook_set_raises_only_config_error_and_reload_never_raises(default: str, room: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "rooms").mkdir()
        (root / "default.toml").write_text(DEFAULT_TEXT, "utf-8")
        pset = PlaybookSet(root / "default.toml", root / "rooms")
        room_file = root / "rooms" / "room-1.toml"
        room_file.write_bytes(room.encode("utf-8", "surrogatepass") if isinstance(room, str) else room)
        (root / "default.toml").write_text(default + "\n# changed\n", "utf-8", errors="surrogatepass")
        report = pset.reload_if_changed()  # never raises, whatever the edits
        assert all(isinstance(line, str) for line in report)
        assert isinstance(pset.for_room("room-1"), Playbook)
        try:
            PlaybookSet(root / "default.toml", root / "rooms")
        except ConfigError:
            pass
