"""Which build of the decision core runs: compiled (mypyc) or the interpreted source.

``setup.py`` compiles :data:`COMPILED` (``state.py``, ``engine.py``) to C extensions with mypyc
when a C compiler is there: the same source, type-checked by mypy, run as native code. py-spy
put the core at about half of the in-process many-room pipeline, in hundreds of small functions
over lists and slotted objects, which is what mypyc makes cheaper (instruction counts of the
in-process pipeline under valgrind: about a quarter fewer). ``align.py`` stays interpreted: its
tests subclass it to count the bulk path, which a compiled class forbids.

:func:`select` runs before the package imports them (``stream/core/__init__.py``). It keeps the
extensions only if ``_native.built`` holds the digest of the current sources: after an edit to
either source without a rebuild (``make`` reinstalls when they change), or with
``LIVECUE_CORE=interpreted``, it loads both from source instead, so what runs is always what
the tree says. :data:`MODE` then says which: ``compiled``, ``interpreted`` (nothing compiled,
or asked for) or ``interpreted (stale build)``.

Standard library only: ``setup.py`` imports this file before the package is installed.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

__all__ = ["COMPILED", "digest", "select", "compiled_files", "MODE"]

#: the core's modules compiled by setup.py, in import order
COMPILED = ("state", "engine")
_HERE = Path(__file__).resolve().parent
_PACKAGE = "stream.core"
MODE = "interpreted"


def digest(folder: Path) -> str:
    """blake2b of the compiled modules' sources, in order."""
    h = hashlib.blake2b(digest_size=16)
    for name in COMPILED:
        h.update((folder / f"{name}.py").read_bytes())
    return h.hexdigest()


def compiled_files(folder: Path = _HERE) -> list[Path]:
    """The extension files of :data:`COMPILED` found in ``folder``."""
    found = []
    for name in COMPILED:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            p = folder / f"{name}{suffix}"
            if p.exists():
                found.append(p)
                break
    return found


def _load_source(name: str) -> None:
    full = f"{_PACKAGE}.{name}"
    spec = importlib.util.spec_from_file_location(full, _HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[full] = mod
    spec.loader.exec_module(mod)
    package = sys.modules.get(_PACKAGE)
    if package is not None:  # as an import would: the package's attribute names the module
        setattr(package, name, mod)


def select() -> str:
    """Decide which build the package imports (see the module docstring); returns :data:`MODE`."""
    global MODE
    ext = compiled_files()
    if not ext:
        MODE = "interpreted"
        return MODE
    forced = os.environ.get("LIVECUE_CORE", "").lower() == "interpreted"
    built = _HERE / "_native.built"
    fresh = (len(ext) == len(COMPILED) and built.exists()
             and built.read_text().strip() == digest(_HERE))
    if fresh and not forced:
        MODE = "compiled"
        return MODE
    if not any(f"{_PACKAGE}.{n}" in sys.modules for n in COMPILED):
        for name in COMPILED:
            _load_source(name)
    MODE = "interpreted" if forced else "interpreted (stale build)"
    if not forced:
        print(f"livecue: the compiled core is older than its source ({', '.join(p.name for p in ext)}): "
              "running the source; reinstall (make) to compile it again", file=sys.stderr)
    return MODE
