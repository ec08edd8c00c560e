"""The reports directory as the gateway serves it: only plain names, only .html/.png, never a
file outside the directory (``..``, absolute paths, symlinks, encoded slashes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consumers.reporter import report_dir, safe_name, serve_report
from consumers.wall import wall_config
from livecue.config import load_settings


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "reports"
    (r / "room-1" / "s1").mkdir(parents=True)
    (r / "room-1" / "s1" / "index.html").write_text("<p>review</p>")
    (r / "room-1" / "s1" / "gmv.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (r / "room-1" / "index.html").write_text("<p>latest</p>")
    (r / "room-1" / "s1" / "notes.txt").write_text("x")
    (tmp_path / "secret.html").write_text("secret")
    os.symlink(tmp_path / "secret.html", r / "room-1" / "link.html")
    return r


def test_serves_reviews(root: Path) -> None:
    assert serve_report(root, "room-1/s1/index.html") == (200, b"<p>review</p>", "text/html; charset=utf-8")
    assert serve_report(root, "room-1/s1/")[1] == b"<p>review</p>"
    assert serve_report(root, "room-1/")[1] == b"<p>latest</p>"
    assert serve_report(root, "room-1/s1/gmv.png")[2] == "image/png"


@pytest.mark.parametrize("rel", [
    "../secret.html", "room-1/../../secret.html", "room-1/link.html", "/etc/passwd",
    "room-1/s1/notes.txt", "room-1/%2e%2e/secret.html", "..%2fsecret.html", ".hidden.html",
    "room-1//s1/index.html", "a/b/c/d.html", "room-1/nothere.html", "room-1\\..\\secret.html",
])
def test_refuses_everything_else(root: Path, rel: str) -> None:
    status, body, _ = serve_report(root, rel)
    assert status == 404 and b"secret" not in body


def test_missing_directory_is_404(tmp_path: Path) -> None:
    assert serve_report(tmp_path / "none", "room-1/")[0] == 404


def test_safe_names() -> None:
    assert safe_name("room-1") == "room-1"
    for bad in ("..", ".", "a/b", "房间1", "x" * 200, ".hidden"):
        n = safe_name(bad)
        assert n.startswith("h-") and "/" not in n and n != safe_name(bad + "x")
    assert report_dir(Path("/r"), "a/b", "s") == Path("/r") / safe_name("a/b") / "s"


def test_wall_escalation_from_playbooks(tmp_path: Path) -> None:
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    (rooms / "fast.toml").write_text("[wall]\nescalate_after_s = 5\n")
    s = load_settings({"LIVECUE_PLAYBOOK_DIR": str(rooms)})
    assert wall_config(s, ["fast", "other"]) == {"escalate_after_s": {"fast": 5.0, "other": 30.0}}
