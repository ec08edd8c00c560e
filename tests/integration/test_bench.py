"""``livecue bench`` end to end, at tiny sizes: a real run of every part as a subprocess.

It starts its own embedded brokers, real workers, a real gateway, real websocket screens and
(when the ``bench`` extra is installed) Quix Streams and Bytewax. The test checks what the run
hands over, never how fast anything was: every headline key is in the JSON with a number of the
right sign and type (a peer may be null, and then only with a reason), the ratios agree with
the figures they come from, the PNG is a PNG, progress went to stderr and the table to stdout.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.run import KEYS, RATIOS

TINY = ["--quick", "--events", "3000", "--rooms", "30", "--dense-rooms", "3", "--partitions", "4",
        "--rates", "500,1000", "--latency-seconds", "4", "--screens", "40", "--fanout-cues", "3"]


def bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
          timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    out_json, chart = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.run(
        [sys.executable, "-m", "livecue.cli", "bench", *args, "--json", str(out_json), "--chart", str(chart),
         "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return proc, out_json, chart


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND", "PNG not complete"
    return w, h


def positive(res: dict[str, Any], key: str) -> float:
    v = res[key]
    assert isinstance(v, (int, float)) and not isinstance(v, bool), f"{key} = {v!r} ({res['reasons'].get(key)})"
    assert v > 0, f"{key} = {v}"
    return float(v)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("bench")
    proc, out_json, chart = bench(tmp, *TINY)
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return proc, json.loads(out_json.read_text()), chart


def test_every_key_is_a_number_of_the_right_sign(tiny_run: tuple[Any, dict[str, Any], Path]) -> None:
    _proc, res, _chart = tiny_run
    for key in (*KEYS, *RATIOS):
        assert key in res, key
    for key in ("ceiling_eps", "worker_eps", "worker_dense_eps", "e2e_p99_ms", "floor_p99_ms", "fanout_p99_ms",
                "rss_mb_1000_rooms", "scale_2w_ratio", "worker_share_of_ceiling", "worker_dense_share_of_ceiling",
                "e2e_over_floor", "ceiling_cpu_us_per_event", "worker_cpu_us_per_event"):
        positive(res, key)
    assert isinstance(res["forced_releases"], int) and res["forced_releases"] >= 0
    assert res["failures"] == []
    # every figure comes from this run's own parts
    d = res["details"]
    assert d["worker"]["complete"] and d["dense"]["complete"] and d["scale"]["complete"]
    assert d["worker"]["progress_metric"] in ("livecue_events_released_total", "livecue_events_consumed_total")
    assert d["many_room_workload"]["events"] == 3000 and d["many_room_workload"]["rooms"] == 30
    assert [r["rate"] for r in d["e2e"]["runs"]] == [500.0, 1000.0]
    assert all(r["samples"] > 0 for r in d["floor"]["runs"])
    # the floor through the worker's own first hop (the six input topics) and the one-topic floor
    assert [r["rate"] for r in d["floor"]["runs"]] == [r["rate"] for r in d["floor"]["one_topic_runs"]] == [500.0, 1000.0]
    assert all(r["samples"] > 0 and r["complete"] for r in d["floor"]["one_topic_runs"] + d["floor"]["runs"])
    assert d["floor"]["first_hop"].startswith("the 6 input topics")
    assert d["fanout"]["screens"] == 40 and d["fanout"]["deliveries"] > 0
    # every screen read with the kernel's receive stamps (Linux), which never come after the read
    assert d["fanout"]["stamps"] == "kernel" and d["fanout"]["screens_stamped"] == 40
    assert d["fanout"]["p99_ms"] <= d["fanout"]["read_p99_ms"] + 0.5
    assert d["rss"]["rooms"] == 30
    # the cores the catch-ups kept busy: the workers' share is part of the host's
    for part in ("worker", "scale"):
        x = d[part]
        assert 0 < x["worker_cores"] and 0 < x["host_busy_cores"] <= x["host_cores"], (part, x)
    assert d["worker"]["start_skew_s"] == 0.0 and d["scale"]["start_skew_s"] >= 0


def test_peers_are_numbers_or_null_with_a_reason(tiny_run: tuple[Any, dict[str, Any], Path]) -> None:
    _proc, res, _chart = tiny_run
    for peer in ("quix", "bytewax"):
        key = f"{peer}_eps"
        if res[key] is None:
            reason = res["reasons"].get(key)
            assert isinstance(reason, str) and len(reason) > 10, f"{key} null without a reason"
            assert res[f"worker_vs_{peer}"] is None
        else:
            positive(res, key)
            assert res[f"worker_vs_{peer}"] == pytest.approx(res["worker_eps"] / res[key], rel=1e-2)
            assert res["details"][peer]["cpu_us_per_event"] > 0
            assert res["details"][peer]["windows"] > 0  # it did the windowed work, not just reading


def test_ratios_follow_from_the_figures(tiny_run: tuple[Any, dict[str, Any], Path]) -> None:
    _proc, res, _chart = tiny_run
    assert res["worker_share_of_ceiling"] == pytest.approx(res["worker_eps"] / res["ceiling_eps"], rel=1e-2)
    reads = res["details"]["ceiling"]["reads_eps"]  # the ceiling is the median of its reads
    assert len(reads) == 3 and all(r > 0 for r in reads)
    assert res["ceiling_eps"] == pytest.approx(sorted(reads)[1], rel=1e-3)
    assert res["e2e_over_floor"] == pytest.approx(res["e2e_p99_ms"] / res["floor_p99_ms"], rel=1e-2)
    assert res["e2e_over_one_topic_floor"] == pytest.approx(
        res["e2e_p99_ms"] / res["floor_one_topic_p99_ms"], rel=1e-2)
    for key, runs in (("floor_p99_ms", "runs"), ("floor_one_topic_p99_ms", "one_topic_runs")):
        assert res[key] == pytest.approx(res["details"]["floor"][runs][-1]["p99_ms"], rel=1e-2)
    assert res["scale_2w_ratio"] == pytest.approx(
        res["details"]["scale"]["eps_2w"] / res["worker_eps"], rel=1e-2)


def test_output_table_progress_and_png(tiny_run: tuple[Any, dict[str, Any], Path]) -> None:
    proc, res, chart = tiny_run
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("$ livecue bench --quick --events 3000"), lines[0]
    assert res["command"] == lines[0][2:]
    for label in ("ceiling: aiokafka + orjson", "worker, many-room", "worker, dense", "peer: Quix Streams",
                  "peer: Bytewax", "event → cue on screen @ 1,000/s", "floor: 2 Kafka hops @ 1,000/s",
                  "floor, 1st hop 1 topic @ 1,000/s",
                  "fan-out to 40 screens", "2 workers / 1 worker", "forced releases"):
        assert any(ln.startswith(label) for ln in lines), f"no table row {label!r}"
    progress = [ln for ln in proc.stderr.splitlines() if ln.startswith("[bench ")]
    for part in ("ceiling", "worker", "dense", "quix", "bytewax", "floor", "e2e", "fanout", "scale"):
        assert any(ln.endswith(f"== {part}") for ln in progress), f"no progress line for {part}"
    assert any("/3,000 events" in ln for ln in progress) or any("produced" in ln for ln in progress)
    assert "[bench " not in proc.stdout  # progress never mixes into the table
    w, h = png_size(chart)
    assert w >= 800 and h >= 300


def test_only_runs_the_selected_parts(tmp_path: Path) -> None:
    proc, out_json, chart = bench(tmp_path, "--only", "ceiling", "--events", "2000", "--rooms", "20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out_json.read_text())
    assert res["parts"] == ["ceiling"]
    positive(res, "ceiling_eps")
    for key in KEYS:
        if key != "ceiling_eps":
            assert res[key] is None and res["reasons"][key], key
    assert "worker" not in res["details"]
    png_size(chart)


def test_unknown_part_and_missing_matplotlib_fail_clearly(tmp_path: Path) -> None:
    proc, out_json, _ = bench(tmp_path, "--only", "ceiling,warp")
    assert proc.returncode == 2 and "unknown part 'warp'" in proc.stderr
    assert not out_json.exists()
    # a matplotlib that cannot be imported: the run stops before measuring, naming the fix
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('matplotlib missing (test)')\n")
    proc, out_json, _ = bench(tmp_path, "--only", "ceiling", env={"PYTHONPATH": str(fake)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "matplotlib is needed for the chart" in proc.stderr and "[bench]" in proc.stderr
    assert not out_json.exists()
    assert "== ceiling" not in proc.stderr


def test_a_peer_that_cannot_run_is_null_with_the_reason(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    (fake / "bytewax").mkdir(parents=True)
    (fake / "bytewax" / "__init__.py").write_text("raise ImportError('bytewax broken on purpose (test)')\n")
    proc, out_json, chart = bench(tmp_path, "--only", "ceiling,bytewax", "--events", "2000", "--rooms", "20",
                                  env={"PYTHONPATH": str(fake)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out_json.read_text())
    assert res["bytewax_eps"] is None and res["worker_vs_bytewax"] is None
    assert "bytewax broken on purpose (test)" in res["reasons"]["bytewax_eps"]
    assert "pip install -e '.[bench]'" in res["reasons"]["bytewax_eps"]
    row = next(ln for ln in proc.stdout.splitlines() if ln.startswith("peer: Bytewax"))
    assert "n/a" in row and "bytewax broken on purpose" in row
    positive(res, "ceiling_eps")
    png_size(chart)
