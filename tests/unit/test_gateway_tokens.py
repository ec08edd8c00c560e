"""Screen tokens (JWT HS256 via PyJWT): round trip, exp/nbf/iat/jti checked by the library,
forgery, tampering, algorithm confusion, secret length, TTL parsing."""

from __future__ import annotations

import base64
import time

import jwt
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.tokens import LEEWAY_S, TokenError, check_secret, fingerprint, mint, parse_ttl, verify

SECRET = "s3cret-" + "k" * 32
OTHER = "other-" + "k" * 32


def now() -> float:
    return time.time()


def _claims(tok: str) -> dict[str, object]:
    body = tok.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))  # type: ignore[no-any-return]


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()


def test_round_trip_is_a_standard_jwt() -> None:
    t = now()
    tok = mint(SECRET, "host", ["room-1", "直播间2"], 3600, "主播A", t, jti="abc-1")
    c = verify(SECRET, tok, t + 10)
    assert (c.role, c.rooms, c.by, c.exp, c.jti) == ("host", ("room-1", "直播间2"), "主播A", int(t) + 3600, "abc-1")
    assert not c.can_ack
    assert verify(SECRET, mint(SECRET, "controller", ["r"], 60, "x", t), t).can_ack
    # Any JWT library reads it: HS256 with the registered claims.
    p = jwt.decode(tok, SECRET, algorithms=["HS256"], audience="livecue-screen")
    assert {"iat", "nbf", "exp", "jti"} <= set(p) and p["nbf"] == p["iat"] == int(t)


def test_expired_not_yet_valid_and_the_callers_clock() -> None:
    t = now()
    with pytest.raises(TokenError) as e:
        verify(SECRET, mint(SECRET, "viewer", ["r"], 60, "x", t - 120), t)
    assert e.value.reason == "expired"
    within_leeway = mint(SECRET, "viewer", ["r"], 60, "x", t - 60 - LEEWAY_S + 2)
    verify(SECRET, within_leeway)  # the library allows a little skew ...
    with pytest.raises(TokenError) as e:  # ... the gateway's own clock says exp has passed
        verify(SECRET, within_leeway, t)
    assert e.value.reason == "expired"
    with pytest.raises(TokenError) as e:  # nbf/iat in the future
        verify(SECRET, mint(SECRET, "viewer", ["r"], 60, "x", t + 3600), t)
    assert e.value.reason == "bad_token"


def test_wrong_or_short_secret_is_refused() -> None:
    t = now()
    with pytest.raises(TokenError) as e:
        verify(SECRET, mint(OTHER, "controller", ["r"], 60, "x", t), t)
    assert e.value.reason == "bad_token"
    with pytest.raises(TokenError):
        verify("", mint(SECRET, "controller", ["r"], 60, "x", t), t)
    with pytest.raises(TokenError):
        verify("short", mint(SECRET, "controller", ["r"], 60, "x", t), t)
    for short in ("", "x" * 31, "密" * 10):  # 30 bytes in UTF-8
        with pytest.raises(ValueError):
            check_secret(short)
        with pytest.raises(ValueError):
            mint(short, "host", ["r"], 60, "x", t)
    check_secret("密" * 11)  # 33 bytes


def test_tampered_payload_and_algorithm_confusion_are_refused() -> None:
    t = now()
    head, body, sig = mint(SECRET, "host", ["r"], 60, "x", t).split(".")
    claims = _claims(f"{head}.{body}.{sig}")
    for change in ({"role": "controller"}, {"rooms": ["r", "r2"]}, {"exp": int(t) + 10**6}, {"jti": "other"}):
        with pytest.raises(TokenError) as e:
            verify(SECRET, f"{head}.{_b64({**claims, **change})}.{sig}", t)
        assert e.value.reason == "bad_token"
    for alg in ("none", "HS512", "RS256"):
        forged = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{body}."
        with pytest.raises(TokenError):
            verify(SECRET, forged, t)
        with pytest.raises(TokenError):
            verify(SECRET, forged + sig, t)
    # Signed right, but a claim the gateway needs is missing or malformed.
    for drop in ("exp", "iat", "nbf", "jti", "aud"):
        c = {k: v for k, v in claims.items() if k != drop}
        with pytest.raises(TokenError):
            verify(SECRET, jwt.encode(c, SECRET, algorithm="HS256"), t)
    for bad in ({"rooms": "r"}, {"role": "admin"}, {"jti": "x" * 65}, {"by": ""}, {"rooms": []}):
        with pytest.raises(TokenError):
            verify(SECRET, jwt.encode({**claims, **bad}, SECRET, algorithm="HS256"), t)


def test_every_spelling_of_one_token_carries_the_same_id() -> None:
    """Caps are keyed on the verified jti, so a re-spelt token (unused bits in the last
    base64url character of the signature) counts as the same token."""
    t = now()
    tok = mint(SECRET, "viewer", ["r"], 600, "x", t, jti="the-one")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    accepted = set()
    for ch in alphabet:
        spelt = tok[:-1] + ch
        try:
            accepted.add((spelt, verify(SECRET, spelt, t).jti))
        except TokenError:
            pass
    assert len({s for s, _ in accepted}) >= 1
    assert {j for _, j in accepted} == {"the-one"}


@given(st.one_of(st.text(max_size=300), st.binary(max_size=50), st.none(), st.integers()))
def test_verify_never_raises_anything_but_token_error(junk: object) -> None:
    t = now()
    for cand in (junk, f"{junk}.{junk}", f"{junk}.{junk}.{junk}", f"eyJhbGciOiJIUzI1NiJ9.{junk}.{junk}"):
        with pytest.raises(TokenError):
            verify(SECRET, cand, t)


def test_mint_rejects_bad_input() -> None:
    for args in (("", "host", ["r"], 60, "x"), (SECRET, "admin", ["r"], 60, "x"), (SECRET, "host", [], 60, "x"),
                 (SECRET, "host", ["r"], 0, "x"), (SECRET, "host", ["bad\nroom"], 60, "x"),
                 (SECRET, "host", ["r"], 60, ""), (SECRET, "host", [f"r{i}" for i in range(65)], 60, "x")):
        with pytest.raises(ValueError):
            mint(*args, now=now())  # type: ignore[misc]
    with pytest.raises(ValueError):
        mint(SECRET, "host", ["r"], 60, "x", now(), jti="has space")
    assert len(verify(SECRET, mint(SECRET, "controller", [f"r{i}" for i in range(64)], 60, "x", now())).rooms) == 64


def test_fingerprint_is_short_stable_and_not_the_token() -> None:
    tok = mint(SECRET, "host", ["r"], 60, "x", now())
    fp = fingerprint(tok)
    assert fp == fingerprint(tok) and len(fp) == 12 and fp not in tok
    assert fp != fingerprint(mint(SECRET, "host", ["r"], 60, "x", now()))  # jti differs


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("45s", 45), ("30m", 1800), ("12h", 43200), ("2d", 172800)])
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "h", "12 hours", "-5m", "99d"])
def test_parse_ttl_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ttl(text)
