"""Who may read /reports/: a token of the review's room (Bearer header) or a link the gateway
signed from one; nobody else, and never a file outside the reports directory."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from consumers.report_access import LINK_TTL_S, answer, sign_link
from consumers.reporter import safe_name
from consumers.tokens import mint

SECRET = "s" * 40
NOW = 0.0  # set per test from the real clock: PyJWT checks times against it


@pytest.fixture(autouse=True)
def _now() -> None:
    global NOW
    NOW = float(int(time.time()))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "reports"
    for room in ("room-1", "room-2", safe_name("房间/3")):
        (r / room / "s1").mkdir(parents=True)
        (r / room / "s1" / "index.html").write_text(f"<p>review of {room}</p>")
        (r / room / "index.html").write_text(f"<p>latest of {room}</p>")
    (tmp_path / "secret.html").write_text("secret")
    os.symlink(tmp_path / "secret.html", r / "room-1" / "link.html")
    return r


def _tok(rooms: list[str], role: str = "controller", ttl: int = 3600, jti: str | None = None) -> str:
    return mint(SECRET, role, rooms, ttl, "lead-1", NOW, jti=jti)


def _get(root: Path, url: str, token: str | None = None, revoked: frozenset[str] = frozenset(),
         now: float | None = None) -> tuple[int, bytes, dict[str, str]]:
    u = urlsplit(url)
    assert u.path.startswith("/reports/")
    status, body, _, extra = answer(root, u.path[len("/reports/"):], u.query,
                                    None if token is None else f"Bearer {token}", SECRET, revoked,
                                    NOW if now is None else now)
    return status, body, dict(extra)


def test_no_token_is_401(root: Path) -> None:
    status, body, headers = _get(root, "/reports/room-1/")
    assert status == 401 and b"latest" not in body and headers["WWW-Authenticate"].startswith("Bearer")
    assert _get(root, "/reports/room-1/s1/index.html")[0] == 401


@pytest.mark.parametrize("auth", ["Basic abc", "Bearer", "Bearer not-a-token", "token"])
def test_malformed_credentials_are_401(root: Path, auth: str) -> None:
    assert answer(root, "room-1/", "", auth, SECRET, frozenset(), NOW)[0] == 401


def test_right_room_is_200_with_the_review_csp(root: Path) -> None:
    for role in ("controller", "host", "viewer"):
        status, body, headers = _get(root, "/reports/room-1/", _tok(["room-1"], role))
        assert (status, body) == (200, b"<p>latest of room-1</p>")
        assert "default-src 'none'" in headers["Content-Security-Policy"]
    # a lead's token over several rooms reads each of them, hashed directory names included
    lead = _tok(["room-2", "房间/3", "room-1"])
    assert _get(root, "/reports/room-2/s1/index.html", lead)[:2] == (200, b"<p>review of room-2</p>")
    assert _get(root, f"/reports/{safe_name('房间/3')}/", lead)[0] == 200


def test_wrong_room_is_403(root: Path) -> None:
    tok = _tok(["room-2"])
    status, body, _ = _get(root, "/reports/room-1/", tok)
    assert status == 403 and b"latest" not in body
    assert _get(root, "/reports/room-1/s1/index.html", tok)[0] == 403
    assert _get(root, "/reports/", tok)[0] == 403


def test_expired_revoked_or_foreign_tokens_are_401(root: Path) -> None:
    tok = _tok(["room-1"], ttl=60, jti="t-1")
    assert _get(root, "/reports/room-1/", tok, now=NOW + 120)[0] == 401
    assert _get(root, "/reports/room-1/", tok, revoked=frozenset({"t-1"}))[0] == 401
    other = mint("o" * 40, "controller", ["room-1"], 3600, "x", NOW)
    assert _get(root, "/reports/room-1/", other)[0] == 401


@pytest.mark.parametrize("rel", [
    "room-1/../room-2/index.html", "room-1/../../secret.html", "room-1/link.html",
    "room-1/%2e%2e/secret.html", "room-1/s1/../../../secret.html", "room-1//s1/index.html",
    "room-1/s1/notes.txt", "room-1\\..\\secret.html",
])
def test_path_traversal_is_refused_even_with_the_rooms_token(root: Path, rel: str) -> None:
    status, body, _ = _get(root, "/reports/" + rel, _tok(["room-1"]))
    assert status in (403, 404) and b"secret" not in body and b"room-2" not in body


@pytest.mark.parametrize("rel", ["../secret.html", "%2e%2e/secret.html", "..%2fsecret.html", ".hidden/"])
def test_paths_outside_any_room_are_refused(root: Path, rel: str) -> None:
    status, body, _ = _get(root, "/reports/" + rel, _tok(["room-1"]))
    assert status in (403, 404) and b"secret" not in body


def test_links_name_only_the_tokens_rooms_with_a_review(root: Path) -> None:
    status, body, _ = _get(root, "/reports/~links", _tok(["room-1", "room-9"], ttl=7200))
    assert status == 200
    got = orjson.loads(body)
    assert set(got["links"]) == {"room-1"}
    assert got["expires_at"] == int(NOW) + LINK_TTL_S
    # a link never outlives its token
    short = orjson.loads(_get(root, "/reports/~links", _tok(["room-1"], ttl=30))[1])
    assert short["expires_at"] == int(NOW) + 30
    assert _get(root, "/reports/~links")[0] == 401


def test_a_signed_link_opens_its_room_only_and_only_for_minutes(root: Path) -> None:
    href = orjson.loads(_get(root, "/reports/~links", _tok(["room-1"]))[1])["links"]["room-1"]
    assert href.startswith("/reports/room-1/?exp=")
    assert _get(root, href)[:2] == (200, b"<p>latest of room-1</p>")  # no token needed
    q = urlsplit(href).query
    assert _get(root, "/reports/room-1/s1/index.html?" + q)[0] == 200
    assert _get(root, "/reports/room-1/../room-2/index.html?" + q)[0] == 404
    assert _get(root, "/reports/room-2/?" + q)[0] == 401  # signed for room-1's directory
    assert _get(root, href, now=NOW + LINK_TTL_S + 1)[0] == 401  # expired
    exp = int(q.split("&")[0].split("=")[1])
    tampered = href.replace(f"exp={exp}", f"exp={exp + 60}")
    assert _get(root, tampered)[0] == 401
    assert _get(root, href[:-2] + ("AA" if not href.endswith("AA") else "BB"))[0] == 401
    assert _get(root, "/reports/room-1/?exp=&sig=")[0] == 401
    # a link dated far ahead (not one the gateway makes) is refused even with a valid MAC
    far = sign_link(SECRET, "room-1", int(NOW) + 30 * 24 * 3600)
    assert _get(root, far)[0] == 401
    # a link signed with another secret
    assert _get(root, sign_link("o" * 40, "room-1", int(NOW) + 60))[0] == 401
