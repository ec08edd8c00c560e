"""Screen tokens: mint/verify round trip, expiry, forgery, tampering, TTL parsing."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.tokens import TokenError, fingerprint, mint, parse_ttl, verify

SECRET = "s3cret"
NOW = 1_800_000_000.0


def test_round_trip() -> None:
    tok = mint(SECRET, "host", ["room-1", "直播间2"], 3600, "主播A", NOW)
    c = verify(SECRET, tok, NOW + 10)
    assert (c.role, c.rooms, c.by, c.exp) == ("host", ("room-1", "直播间2"), "主播A", int(NOW) + 3600)
    assert not c.can_ack
    assert verify(SECRET, mint(SECRET, "controller", ["r"], 60, "x", NOW), NOW).can_ack


def test_expired_and_not_yet_valid() -> None:
    tok = mint(SECRET, "viewer", ["r"], 60, "x", NOW)
    verify(SECRET, tok, NOW + 59)
    with pytest.raises(TokenError) as e:
        verify(SECRET, tok, NOW + 60)
    assert e.value.reason == "expired"
    with pytest.raises(TokenError) as e:
        verify(SECRET, tok, NOW - 3600)
    assert e.value.reason == "bad_token"


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(TokenError) as e:
        verify(SECRET, mint("other", "controller", ["r"], 60, "x", NOW), NOW)
    assert e.value.reason == "bad_token"
    with pytest.raises(TokenError):
        verify("", mint(SECRET, "controller", ["r"], 60, "x", NOW), NOW)


def test_tampered_payload_is_refused() -> None:
    prefix, body, mac = mint(SECRET, "host", ["r"], 60, "x", NOW).split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for change in ({"role": "controller"}, {"rooms": ["r", "r2"]}, {"exp": claims["exp"] + 10**6}):
        forged = base64.urlsafe_b64encode(orjson.dumps({**claims, **change})).rstrip(b"=").decode()
        with pytest.raises(TokenError) as e:
            verify(SECRET, f"{prefix}.{forged}.{mac}", NOW)
        assert e.value.reason == "bad_token"


@given(st.one_of(st.text(max_size=300), st.binary(max_size=50), st.none(), st.integers()))
def test_verify_never_raises_anything_but_token_error(junk: object) -> None:
    for cand in (junk, f"lc1.{junk}", f"lc1.{junk}.{junk}"):
        with pytest.raises(TokenError):
            verify(SECRET, cand, NOW)


def test_mint_rejects_bad_input() -> None:
    for args in (("", "host", ["r"], 60, "x"), (SECRET, "admin", ["r"], 60, "x"), (SECRET, "host", [], 60, "x"),
                 (SECRET, "host", ["r"], 0, "x"), (SECRET, "host", ["bad\nroom"], 60, "x"),
                 (SECRET, "host", ["r"], 60, "")):
        with pytest.raises(ValueError):
            mint(*args, now=NOW)  # type: ignore[misc]


def test_fingerprint_is_short_stable_and_not_the_token() -> None:
    tok = mint(SECRET, "host", ["r"], 60, "x", NOW)
    fp = fingerprint(tok)
    assert fp == fingerprint(tok) and len(fp) == 12 and fp not in tok
    assert fp != fingerprint(mint(SECRET, "host", ["r"], 60, "x", NOW))  # jti differs


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("45s", 45), ("30m", 1800), ("12h", 43200), ("2d", 172800)])
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "h", "12 hours", "-5m", "99d"])
def test_parse_ttl_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ttl(text)
