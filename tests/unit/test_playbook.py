"""Playbook files: the shipped default, validation errors naming file/line/key, overlays, reload."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from schemas.errors import ConfigError
from stream.core import Playbook
from stream.playbook import PlaybookSet, default_playbook, load_playbook, playbook_from_mapping

DEFAULT_TOML = Path(__file__).resolve().parents[2] / "stream" / "playbooks" / "default.toml"


def test_shipped_default_loads_and_equals_the_dataclass_defaults() -> None:
    pb = default_playbook()
    assert pb == Playbook()
    assert load_playbook(DEFAULT_TOML) == pb
    assert pb.language == "zh"
    assert "没抢到" in pb.intent.missed_words and "链接" in pb.intent.words
    assert pb.problems() == []


def test_shipped_default_sets_every_key_explicitly() -> None:
    """The TOML documents every setting: nothing silently falls back to code defaults."""
    import tomllib
    from dataclasses import fields, is_dataclass

    doc = tomllib.loads(DEFAULT_TOML.read_text("utf-8"))
    for f in fields(Playbook):
        if not f.init:
            continue
        assert f.name in doc, f.name
        value = getattr(Playbook(), f.name)
        if is_dataclass(value):
            for g in fields(value):
                assert g.name in doc[f.name], f"{f.name}.{g.name}"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("text,key,line,msg", [
    ('language = "zh"\n[tier]\nhot_enter = 1.3\nbogus = 1\n', "tier.bogus", 4, "unknown key"),
    ('[push_stock]\n\n eta_s = "thirty"\n', "push_stock.eta_s", 3, "must be a number"),
    ('stats_interval_ms = 5\n', "stats_interval_ms", 1, "at least 100"),
    ('[push_stock]\nenabled = 1\n', "push_stock.enabled", 2, "true or false"),
    ('[windows]\nshort_ms = 7000\n', "windows.short_ms", 2, "multiple of windows.bucket_ms"),
    ('language = "fr"\n', "language", 1, "must be one of"),
    ('[intent]\nwords = ["ok", 3]\n', "intent.words[1]", 2, "non-empty string"),
    ('[tier]\nhot_enter = 0.5\n', "tier.hot_enter", 2, "cold_enter <= cold_exit"),
    ('[texts.zh.push_stock_soon]\nheadline = "{nope} 卖完"\n',
     "texts.zh.push_stock_soon.headline", 2, "unknown placeholder {nope}"),
    ('[texts.en.not_a_cue]\nheadline = "x"\ndetail = "y"\n', "texts.en.not_a_cue", 1,
     "unknown cue text"),
    ('[bounds]\nmax_orders = 10\n', "bounds.max_orders", 2, "at least 100"),
    ('[tier]\nbaseline = "sometimes"\n', "tier.baseline", 2, "session or absolute"),
    ('windows = 3\n', "windows", 1, "must be a table"),
    ('[release_orders]\nmin_hold_ms = -1\n', "release_orders.min_hold_ms", 2, "at least 0"),
    ('[release_orders]\nmin_hold_ms = 20.5\n', "release_orders.min_hold_ms", 2,
     "must be an integer"),
    ('[release_orders]\nintent_vs_baseline = 0.5\n', "release_orders.intent_vs_baseline", 2,
     "at least 1.0"),
    ('[release_orders]\nbaseline_intent_share = 1.5\n', "release_orders.baseline_intent_share",
     2, "at most 1.0"),
    ('[release_orders]\n\nbaseline_min_ms = "1m"\n', "release_orders.baseline_min_ms", 3,
     "must be an integer"),
    # A falling ETA no longer re-fires push_stock: the old knob is gone, and saying so beats
    # silently ignoring it.
    ('[push_stock]\nworsen_factor = 2.0\n', "push_stock.worsen_factor", 2, "unknown key"),
])
def test_bad_file_errors_name_file_line_and_key(tmp_path: Path, text: str, key: str, line: int,
                                                msg: str) -> None:
    p = _write(tmp_path, "room-x.toml", text)
    with pytest.raises(ConfigError) as ei:
        load_playbook(p)
    message = str(ei.value)
    assert message.startswith(f"{p}:{line}: {key}: "), message
    assert msg in message


def test_not_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    p = _write(tmp_path, "bad.toml", "[tier\nx=")
    with pytest.raises(ConfigError, match=re.escape(str(p)) + ": not valid TOML"):
        load_playbook(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_playbook(tmp_path / "missing.toml")


def test_partial_file_keeps_defaults_for_the_rest(tmp_path: Path) -> None:
    p = _write(tmp_path, "p.toml", '[push_stock]\neta_s = 45\n\n[texts.en.unpaid_orders]\n'
               'headline = "Pay up!"\n')
    pb = load_playbook(p)
    assert pb.push_stock.eta_s == 45.0 and isinstance(pb.push_stock.eta_s, float)
    assert pb.push_stock.cooldown_ms == Playbook().push_stock.cooldown_ms
    assert pb.texts["en"]["unpaid_orders"].headline == "Pay up!"
    assert pb.texts["en"]["unpaid_orders"].detail == Playbook().texts["en"]["unpaid_orders"].detail
    assert pb.tier == Playbook().tier


def test_release_orders_hold_and_baseline_keys_load_and_overlay(tmp_path: Path) -> None:
    d = Playbook().release_orders
    assert (d.min_hold_ms, d.intent_vs_baseline, d.baseline_intent_share, d.baseline_min_ms) == (
        20_000, 1.5, 0.16, 60_000)
    p = _write(tmp_path, "p.toml", "[release_orders]\nmin_hold_ms = 45000\n"
               "intent_vs_baseline = 2\nbaseline_intent_share = 0.2\n")
    pb = load_playbook(p)
    ro = pb.release_orders
    assert ro.min_hold_ms == 45_000 and ro.intent_vs_baseline == 2.0
    assert isinstance(ro.intent_vs_baseline, float) and ro.baseline_intent_share == 0.2
    assert ro.baseline_min_ms == d.baseline_min_ms and ro.min_intent_share == d.min_intent_share


def test_lexicon_from_the_playbook_drives_intent_matching() -> None:
    pb = playbook_from_mapping({"intent": {"words": ["gimme"], "missed_words": ["too slow"]}})
    assert pb.intent_re is not None and pb.missed_re is not None
    assert pb.intent_re.search("gimme that")
    assert pb.intent_re.search("too slow again")  # missed-it words are intent too
    assert not pb.intent_re.search("链接")
    assert pb.missed_re.search("too slow")
    with pytest.raises(ConfigError, match="<mapping>: intent.words: must not be empty"):
        playbook_from_mapping({"intent": {"words": [], "missed_words": []}})


def test_per_room_override_overlays_only_the_keys_it_sets(tmp_path: Path) -> None:
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    _write(rooms, "room-42.toml", 'language = "en"\n[push_stock]\neta_s = 10\n')
    ps = PlaybookSet(None, rooms)
    pb = ps.for_room("room-42")
    assert pb.language == "en" and pb.push_stock.eta_s == 10.0
    assert pb.push_stock.cooldown_ms == Playbook().push_stock.cooldown_ms
    assert pb.tier == Playbook().tier
    assert ps.for_room("room-7") == Playbook()
    assert ps.for_room("../room-42") == Playbook()  # ids are not paths
    assert ps.rooms() == ["room-42"]


def test_room_override_on_a_custom_default(tmp_path: Path) -> None:
    default = _write(tmp_path, "base.toml", '[push_stock]\neta_s = 50\ncooldown_ms = 1000\n')
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    _write(rooms, "r1.toml", "[push_stock]\ncooldown_ms = 2000\n")
    ps = PlaybookSet(default, rooms)
    assert ps.default.push_stock.eta_s == 50
    assert ps.for_room("r1").push_stock.eta_s == 50  # from the default file
    assert ps.for_room("r1").push_stock.cooldown_ms == 2000


def test_bad_room_file_at_start_up_raises_naming_it(tmp_path: Path) -> None:
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    bad = _write(rooms, "r1.toml", "[tier]\nhot_enter = 0.1\n")
    with pytest.raises(ConfigError, match=re.escape(f"{bad}:2: tier.hot_enter")):
        PlaybookSet(None, rooms)


def _touch_later(p: Path, text: str) -> None:
    st = p.stat()
    p.write_text(text, encoding="utf-8")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_reload_picks_up_edits_and_keeps_the_last_good_on_a_bad_edit(tmp_path: Path) -> None:
    default = _write(tmp_path, "default.toml", "[push_stock]\neta_s = 40\n")
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    room = _write(rooms, "r1.toml", "[push_stock]\ncooldown_ms = 5000\n")
    ps = PlaybookSet(default, rooms)
    assert ps.reload_if_changed() == []

    _touch_later(room, "[push_stock]\ncooldown_ms = 7000\n")
    assert ps.reload_if_changed() == [f"reloaded {room}"]
    assert ps.for_room("r1").push_stock.cooldown_ms == 7000

    _touch_later(room, "[push_stock]\ncooldown_ms = -1\n")  # bad edit
    report = ps.reload_if_changed()
    assert len(report) == 1 and report[0].startswith(f"rejected {room}: {room}:2: ")
    assert "push_stock.cooldown_ms" in report[0]
    assert ps.for_room("r1").push_stock.cooldown_ms == 7000  # last good kept
    assert str(room) in ps.errors
    assert ps.reload_if_changed() == []  # reported once, not on every poll

    _touch_later(default, "[push_stock\n")  # the default breaks too
    report = ps.reload_if_changed()
    assert report and report[0].startswith(f"rejected {default}")
    assert ps.default.push_stock.eta_s == 40 and ps.for_room("r1").push_stock.eta_s == 40

    _touch_later(default, "[push_stock]\neta_s = 20\n")
    _touch_later(room, "[push_stock]\ncooldown_ms = 9000\n")
    report = ps.reload_if_changed()
    assert f"reloaded {default}" in report and f"reloaded {room}" in report
    assert ps.for_room("r1").push_stock.eta_s == 20
    assert ps.for_room("r1").push_stock.cooldown_ms == 9000
    assert ps.errors == {}

    new = _write(rooms, "r2.toml", 'language = "en"\n')
    assert ps.reload_if_changed() == [f"reloaded {new}"]
    assert ps.for_room("r2").language == "en"
    room.unlink()
    assert ps.reload_if_changed() == ["removed r1.toml"]
    assert ps.for_room("r1") == ps.default
