"""The compiled core (mypyc, ``setup.py``) is the one that runs, and it decides exactly what its
source decides.

``stream.core._native`` keeps the compiled ``state`` / ``engine`` only when they were built from
the current sources. These tests hold the install to it: where a C compiler is, the core must
run compiled (a build that silently fell back would lose the speed without a word); and the
compiled core and the interpreted source, loaded side by side, must give the same cues, stats,
rejections and dumped state on generated shows and on the simulator's.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

from hypothesis import given

import stream.core as core
from livecue.sim.show import generate
from schemas.events import Event
from stream.core import _native, dump_state, new_state, step_many
from stream.playbook import default_playbook

from test_core_properties import FAST, PB, ROOM, events

CORE = Path(core.__file__).resolve().parent
REPO = CORE.parent.parent


def _compiler() -> str | None:  # the same test as setup.py's
    cc = shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0])
    return cc if cc and Path(sysconfig.get_paths()["include"], "Python.h").exists() else None


#: why a test that needs the compiled core fails where there is none
NEEDS = ("the compiled core is needed here: install a C compiler and Python's headers (Debian: gcc, "
         "libc6-dev, python3-dev; .ci/run does) and reinstall (make)")


def _interpreted() -> types.ModuleType:
    """``state`` and ``engine`` loaded from their source as the package ``_pure_core``."""
    pkg = types.ModuleType("_pure_core")
    pkg.__path__ = [str(CORE)]
    sys.modules["_pure_core"] = pkg
    for name in ("rules", "state", "engine"):
        spec = importlib.util.spec_from_file_location(f"_pure_core.{name}", CORE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    engine = sys.modules["_pure_core.engine"]
    assert not any(str(engine.__file__).endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES)
    return engine


PURE = _interpreted()
PURE_STATE = sys.modules["_pure_core.state"]


def test_the_core_runs_compiled_wherever_a_c_compiler_is() -> None:
    if os.environ.get("LIVECUE_CORE", "").lower() == "interpreted":
        assert _native.MODE == "interpreted"
        return
    if _compiler() is None:
        assert _native.MODE == "interpreted" and not _native.compiled_files()
        return
    assert _native.MODE == "compiled", (
        f"the core runs {_native.MODE!r} although a C compiler is here: reinstall (make) to compile it")
    for mod in (core.engine, core.state):
        assert any(str(mod.__file__).endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES), mod.__file__


def test_an_edited_source_runs_instead_of_a_stale_build(tmp_path: Path) -> None:
    """A copy of the package whose engine.py differs from what was compiled loads the source."""
    assert _native.MODE == "compiled", NEEDS  # precondition: there is a build to go stale
    pkg = tmp_path / "stream"
    shutil.copytree(CORE.parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for so in REPO.glob("*__mypyc*"):  # the extensions' shared library sits at the top level
        shutil.copy(so, tmp_path)
    (pkg / "core" / "engine.py").write_text((CORE / "engine.py").read_text() + "\n# edited\n")
    code = ("import stream.core as c, stream.core._native as n; "
            "print(n.MODE, c.engine.__file__.endswith('.py'), c.state.__file__.endswith('.py'))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    env.pop("LIVECUE_CORE", None)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["interpreted", "(stale", "build)", "True", "True"]
    assert "older than its source" in run.stderr
    # the same copy, unedited, runs compiled
    shutil.copy(CORE / "engine.py", pkg / "core" / "engine.py")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["compiled", "False", "False"]


def _both(evs: list[Event], pb: object) -> None:
    a = step_many(new_state(ROOM if not evs else evs[0].room_id), evs, pb)  # type: ignore[arg-type]
    b = PURE.step_many(PURE_STATE.new_state(ROOM if not evs else evs[0].room_id), evs, pb)
    assert a.cues == b.cues
    assert a.stats == b.stats
    assert a.rejected == b.rejected
    assert a.snapshot_due == b.snapshot_due
    assert dump_state(a.state) == PURE_STATE.dump_state(b.state)


@FAST
@given(events())
def test_compiled_and_interpreted_cores_agree_on_generated_shows(evs: list[Event]) -> None:
    assert _native.MODE == "compiled", NEEDS  # else this compares the source with itself
    _both(evs, PB)


def test_compiled_and_interpreted_cores_agree_on_simulated_shows() -> None:
    assert _native.MODE == "compiled", NEEDS
    pb = default_playbook()
    evs = generate(11, [f"room-{i}" for i in range(6)], "mixed", duration=900.0, rate=4.0)
    by_room: dict[str, list[Event]] = {}
    for ev in evs:
        by_room.setdefault(ev.room_id, []).append(ev)
    cues = 0
    for room_evs in by_room.values():
        _both(room_evs, pb)
        cues += len(step_many(new_state(room_evs[0].room_id), room_evs, pb).cues)
    assert cues >= 10  # precondition: the shows made decisions to compare
