"""Playbooks from TOML files: validation, per-room overlays, reload on change (the I/O side).

The core (:mod:`stream.core`) only knows the :class:`~stream.core.Playbook` value; this module
turns files into one:

* :func:`load_playbook` reads one file (stdlib ``tomllib``). Keys it does not set keep the
  shipped default. Every key is checked: unknown keys, wrong types and out-of-range values raise
  :class:`~schemas.errors.ConfigError` whose message names the file, the key path and the line.
* :func:`default_playbook` is the shipped ``stream/playbooks/default.toml``.
* :class:`PlaybookSet` holds a default file plus per-room ``ROOM_ID.toml`` overlays from a
  directory (a room file sets only the keys it changes), and reloads them when their mtime or
  size changes. A bad edit is reported and the last good playbook is kept: a reload never raises.
"""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import MISSING, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError
from stream.core.rules import CueText, Playbook

__all__ = ["load_playbook", "default_playbook", "playbook_from_mapping", "PlaybookSet",
           "DEFAULT_PLAYBOOK_NAME"]

DEFAULT_PLAYBOOK_NAME = "default.toml"


class _KeyError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _type_name(v: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(v), type(v).__name__)


def _convert(value: Any, hint: Any, meta: Mapping[str, Any], path: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if type(value) is not bool:
            raise _KeyError(path, f"must be true or false, not {_type_name(value)}")
        return value
    if hint is int:
        if type(value) is not int:
            raise _KeyError(path, f"must be an integer, not {_type_name(value)}")
    elif hint is float:
        if type(value) not in (int, float):
            raise _KeyError(path, f"must be a number, not {_type_name(value)}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise _KeyError(path, "must be a finite number")
    elif hint is str:
        if type(value) is not str:
            raise _KeyError(path, f"must be a string, not {_type_name(value)}")
        return value
    elif origin is tuple:
        if type(value) is not list:
            raise _KeyError(path, f"must be an array of strings, not {_type_name(value)}")
        for i, item in enumerate(value):
            if type(item) is not str or not item:
                raise _KeyError(f"{path}[{i}]", "must be a non-empty string")
        return tuple(value)
    else:  # pragma: no cover - a field type this loader does not know
        raise _KeyError(path, "unsupported setting type")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise _KeyError(path, f"must be at least {lo}")
    if hi is not None and value > hi:
        raise _KeyError(path, f"must be at most {hi}")
    return value


def _section(cls: type[Any], data: Any, path: str) -> Any:
    if type(data) is not dict:
        raise _KeyError(path, f"must be a table, not {_type_name(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.init}
    for key in data:
        if key not in known:
            raise _KeyError(f"{path}.{key}", f"unknown key (known: {', '.join(known)})")
    kwargs = {}
    for name, f in known.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f.metadata, f"{path}.{name}")
    return cls(**kwargs)


def _texts(data: Any, base: Mapping[str, Mapping[str, CueText]]) -> dict[str, dict[str, CueText]]:
    if type(data) is not dict:
        raise _KeyError("texts", f"must be a table, not {_type_name(data)}")
    out = {lang: dict(table) for lang, table in base.items()}
    for lang, table in data.items():
        if type(table) is not dict:
            raise _KeyError(f"texts.{lang}", f"must be a table, not {_type_name(table)}")
        merged = out.setdefault(lang, {})
        for key, pair in table.items():
            where = f"texts.{lang}.{key}"
            if type(pair) is not dict:
                raise _KeyError(where, f"must be a table, not {_type_name(pair)}")
            for k in pair:
                if k not in ("headline", "detail"):
                    raise _KeyError(f"{where}.{k}", "unknown key (known: headline, detail)")
            old = merged.get(key)
            parts = {}
            for k in ("headline", "detail"):
                if k in pair:
                    if type(pair[k]) is not str or not pair[k].strip():
                        raise _KeyError(f"{where}.{k}", "must be a non-empty string")
                    parts[k] = pair[k]
                elif old is not None:
                    parts[k] = getattr(old, k)
                else:
                    raise _KeyError(f"{where}.{k}", "missing")
            merged[key] = CueText(parts["headline"], parts["detail"])
    return out


def _build(data: Mapping[str, Any]) -> Playbook:
    base = Playbook()
    hints = typing.get_type_hints(Playbook)
    known = {f.name: f for f in fields(Playbook) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        f = known.get(key)
        if f is None:
            raise _KeyError(key, f"unknown key (known: {', '.join(known)})")
        hint = hints[key]
        if key == "texts":
            kwargs[key] = _texts(value, base.texts)
        elif is_dataclass(hint):
            kwargs[key] = _section(hint, value, key)  # type: ignore[arg-type]
        else:
            assert f.default is not MISSING
            kwargs[key] = _convert(value, hint, f.metadata, key)
    pb = Playbook(**kwargs)
    problems = pb.problems()
    if problems:
        raise _KeyError(*problems[0])
    return pb


def _find_line(text: str, keypath: str) -> int | None:
    """Best-effort line number (1-based) of ``keypath`` in a TOML text."""
    parts = re.sub(r"\[\d+\]$", "", keypath).split(".")
    lines = text.splitlines()
    table: list[str] = []
    header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    key_re = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")
    header_line = None
    for no, line in enumerate(lines, 1):
        m = header.match(line)
        if m:
            table = [p.strip().strip("\"'") for p in m.group(1).split(".")]
            if table == parts:
                header_line = no
            continue
        k = key_re.match(line)
        if k:
            full = table + [p.strip().strip("\"'") for p in k.group(1).split(".")]
            if full == parts:
                return no
    if header_line is not None:
        return header_line
    if len(parts) > 1:
        return _find_line(text, ".".join(parts[:-1]))
    return None


def _error(path: Path | str, text: str | None, keypath: str, message: str) -> ConfigError:
    line = _find_line(text, keypath) if text is not None else None
    where = f"{path}:{line}" if line else str(path)
    return ConfigError(f"{where}: {keypath}: {message}")


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read playbook: {exc}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def playbook_from_mapping(data: Mapping[str, Any], source: str = "<mapping>") -> Playbook:
    """Validate an already-parsed TOML document (keys not set keep the shipped default)."""
    try:
        return _build(data)
    except _KeyError as exc:
        raise ConfigError(f"{source}: {exc.path}: {exc.message}") from None


def load_playbook(path: Path | str) -> Playbook:
    """Load and validate one playbook file. Raises ConfigError naming file, line and key."""
    p = Path(path)
    text, data = _read(p)
    try:
        return _build(data)
    except _KeyError as exc:
        raise _error(p, text, exc.path, exc.message) from None


def _default_text() -> str:
    return (resources.files("stream") / "playbooks" / DEFAULT_PLAYBOOK_NAME).read_text("utf-8")


def default_playbook() -> Playbook:
    """The shipped default playbook (``stream/playbooks/default.toml``)."""
    text = _default_text()
    try:
        return _build(tomllib.loads(text))
    except (_KeyError, tomllib.TOMLDecodeError) as exc:  # pragma: no cover - shipped file is tested
        raise ConfigError(f"{DEFAULT_PLAYBOOK_NAME}: {exc}") from None


def _overlay(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _overlay(out[k], v)
        else:
            out[k] = v
    return out


def _has_key(data: Mapping[str, Any], keypath: str) -> bool:
    cur: Any = data
    for part in re.sub(r"\[\d+\]$", "", keypath).split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


_Stamp = tuple[int, int]


class PlaybookSet:
    """The default playbook plus per-room overlays ``room_dir/ROOM_ID.toml``.

    ``default_path=None`` uses the shipped default; ``room_dir=None`` means no overlays.
    The constructor raises ConfigError if any file is bad (fail fast at start-up);
    :meth:`reload_if_changed` never raises and keeps the last good playbooks.
    Not thread-safe: call it from the worker's own task.
    """

    def __init__(self, default_path: Path | None = None, room_dir: Path | None = None) -> None:
        self.default_path = Path(default_path) if default_path is not None else None
        self.room_dir = Path(room_dir) if room_dir is not None else None
        #: path -> reason of the last failed load (cleared once the file loads again).
        self.errors: dict[str, str] = {}
        self._default_doc: dict[str, Any] = {}
        self._default_text: str = ""
        self._default_stamp: _Stamp | None = None
        self._default_pb = Playbook()
        self._room_docs: dict[str, tuple[str, dict[str, Any]]] = {}
        self._room_stamps: dict[str, _Stamp] = {}
        self._rooms: dict[str, Playbook] = {}
        self._load_default()
        for room, path in sorted(self._room_files().items()):
            self._load_room(room, path)

    # -- queries
    def for_room(self, room_id: str) -> Playbook:
        """The playbook of ``room_id``: its overlay on the default, or the default."""
        return self._rooms.get(room_id, self._default_pb)

    @property
    def default(self) -> Playbook:
        return self._default_pb

    def rooms(self) -> list[str]:
        """Rooms that have an overlay in force."""
        return sorted(self._rooms)

    # -- loading
    def _stamp(self, path: Path) -> _Stamp | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _room_files(self) -> dict[str, Path]:
        if self.room_dir is None:
            return {}
        try:
            entries = list(self.room_dir.iterdir())
        except OSError:
            return {}
        if self.default_path is not None:
            entries = [p for p in entries if p.resolve() != self.default_path.resolve()]
        return {p.stem: p for p in entries if p.suffix == ".toml" and p.is_file()}

    def _load_default(self) -> None:
        if self.default_path is None:
            text = _default_text()
            stamp = None
        else:
            stamp = self._stamp(self.default_path)
            text, _ = _read(self.default_path)
        data = tomllib.loads(text)
        path = self.default_path or DEFAULT_PLAYBOOK_NAME
        try:
            pb = _build(data)
        except _KeyError as exc:
            raise _error(path, text, exc.path, exc.message) from None
        self._default_doc, self._default_text, self._default_pb = data, text, pb
        self._default_stamp = stamp

    def _combine(self, room: str, path: Path, text: str, data: dict[str, Any]) -> Playbook:
        try:
            return _build(_overlay(self._default_doc, data))
        except _KeyError as exc:
            if _has_key(data, exc.path):
                raise _error(path, text, exc.path, exc.message) from None
            raise _error(self.default_path or DEFAULT_PLAYBOOK_NAME, self._default_text,
                         exc.path, f"{exc.message} (with overlay {path.name})") from None

    def _load_room(self, room: str, path: Path) -> None:
        stamp = self._stamp(path)
        text, data = _read(path)
        pb = self._combine(room, path, text, data)
        self._room_docs[room] = (text, data)
        self._rooms[room] = pb
        if stamp is not None:
            self._room_stamps[room] = stamp

    def reload_if_changed(self) -> list[str]:
        """Reload files whose mtime/size changed; one line per change, never raises.

        Lines read ``reloaded PATH``, ``removed PATH`` or ``rejected PATH: REASON (keeping the
        last good playbook)``; :attr:`errors` holds the reasons still standing.
        """
        report: list[str] = []
        if self.default_path is not None:
            stamp = self._stamp(self.default_path)
            if stamp is not None and stamp != self._default_stamp:
                key = str(self.default_path)
                try:
                    self._load_default()
                except ConfigError as exc:
                    self._default_stamp = stamp  # report a bad edit once, not on every poll
                    self.errors[key] = str(exc)
                    report.append(f"rejected {key}: {exc} (keeping the last good playbook)")
                else:
                    self.errors.pop(key, None)
                    report.append(f"reloaded {key}")
                    for room, (text, data) in sorted(self._room_docs.items()):
                        rpath = self._room_files().get(room, Path(f"{room}.toml"))
                        try:
                            self._rooms[room] = self._combine(room, rpath, text, data)
                        except ConfigError as exc2:
                            self.errors[str(rpath)] = str(exc2)
                            report.append(f"rejected {rpath}: {exc2} (keeping the last good "
                                          "playbook)")
        files = self._room_files()
        for room in sorted(set(self._room_stamps) - set(files)):
            self._room_stamps.pop(room, None)
            self._room_docs.pop(room, None)
            self._rooms.pop(room, None)
            report.append(f"removed {room}.toml")
        for room, path in sorted(files.items()):
            stamp = self._stamp(path)
            if stamp is None or stamp == self._room_stamps.get(room):
                continue
            try:
                self._load_room(room, path)
            except ConfigError as exc:
                self._room_stamps[room] = stamp
                self.errors[str(path)] = str(exc)
                report.append(f"rejected {path}: {exc} (keeping the last good playbook)")
            else:
                self.errors.pop(str(path), None)
                report.append(f"reloaded {path}")
        return report
