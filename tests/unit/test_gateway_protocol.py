"""Client message validation, the host view of a cue, the origin check and the rate limiter."""

from __future__ import annotations

import json
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.origins import allowed_origins, origin_matches_host, origin_ok, own_origins
from consumers.protocol import Action, Auth, ProtocolError, Resume, host_view, parse_client
from consumers.ratelimit import LogThrottle, TokenBucket


def test_valid_messages() -> None:
    assert parse_client('{"type":"auth","token":"t"}') == Auth("t", None)
    assert parse_client('{"type":"auth","token":"t","rooms":["a","a","b"]}') == Auth("t", ("a", "b"))
    assert parse_client('{"type":"done","cue_id":"c","room_id":"r","extra":1}') == Action("done", "c", "r")
    assert parse_client('{"type":"resume","rooms":{"r":-1,"s":42}}') == Resume({"r": -1, "s": 42})


@pytest.mark.parametrize(("raw", "code"), [
    (b'{"type":"auth","token":"t"}', "bad_message"),
    ("{", "bad_message"), ("[]", "bad_message"), ('"auth"', "bad_message"), ("{}", "bad_message"),
    ('{"type":"hello"}', "unknown_type"), ('{"type":"auth"}', "bad_message"),
    ('{"type":"auth","token":""}', "bad_message"), ('{"type":"auth","token":"t","rooms":[]}', "bad_message"),
    ('{"type":"ack","cue_id":"c"}', "bad_message"), ('{"type":"ack","cue_id":1,"room_id":"r"}', "bad_message"),
    ('{"type":"ack","cue_id":"' + "x" * 200 + '","room_id":"r"}', "bad_message"),
    ('{"type":"resume","rooms":[]}', "bad_message"), ('{"type":"resume","rooms":{"r":1.5}}', "bad_message"),
    ('{"type":"resume","rooms":{"r":true}}', "bad_message"), ('{"type":"resume","rooms":{"r":-2}}', "bad_message"),
])
def test_invalid_messages(raw: str | bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_client(raw)
    assert e.value.code == code


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                                  ["type", "token", "rooms", "cue_id", "room_id", "x"]), c, max_size=4),
                              max_leaves=12).map(json.dumps)))
def test_parse_client_raises_only_protocol_error(raw: str | bytes) -> None:
    try:
        parse_client(raw)
    except ProtocolError:
        pass


def test_host_view_keeps_headline_drops_evidence() -> None:
    cue = {"type": "cue", "seq": 7, "cue_id": "c", "room_id": "r", "kind": "push_stock", "severity": "warn",
           "headline": "上库存", "detail": "secret figures", "evidence": {"x": 1}, "ts": 1, "emitted_at": 2,
           "texts": {"zh": {"headline": "上库存", "detail": "d"}, "en": {"headline": "Push", "detail": "d"}, "bad": 3}}
    v = host_view(cue)
    assert v["headline"] == "上库存" and v["seq"] == 7 and v["severity"] == "warn"
    assert "evidence" not in v and "detail" not in v
    assert v["texts"] == {"zh": {"headline": "上库存"}, "en": {"headline": "Push"}}


def test_origins() -> None:
    assert own_origins("127.0.0.1", 8765) == {"http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"}
    assert own_origins("10.0.0.5", 80) == {"http://10.0.0.5:80"}
    allowed = allowed_origins((), "127.0.0.1", 8765)
    assert origin_ok(None, allowed), "a tool without Origin still has to authenticate"
    assert origin_ok("http://localhost:8765", allowed)
    for bad in ("http://evil.example", "null", "http://localhost:8766", "https://localhost:8765",
                "http://localhost:8765.evil.example", ""):
        assert not origin_ok(bad, allowed)
    configured = allowed_origins(("https://ops.example.com",), "127.0.0.1", 8765)
    assert origin_ok("https://ops.example.com", configured)
    assert not origin_ok("http://127.0.0.1:8765", configured), "the setting replaces the default"


def test_origin_matching_the_host_header() -> None:
    """The default for a gateway bound to 0.0.0.0 or behind a proxy that keeps Host."""
    for origin, host in (("http://192.168.1.20:8765", "192.168.1.20:8765"), ("https://cues.example.com", "cues.example.com"),
                         ("https://cues.example.com", "cues.example.com:443"), ("http://Cues.Example.com", "cues.example.com"),
                         ("https://[2001:db8::1]:8443", "[2001:db8::1]:8443"), ("http://h:80", "h")):
        assert origin_matches_host(origin, host), (origin, host)
    for origin, host in (("https://evil.example", "cues.example.com"), ("https://cues.example.com", "cues.example.com:8443"),
                         ("http://cues.example.com", "cues.example.com:443"), ("https://cues.example.com.evil.example", "cues.example.com"),
                         ("null", "cues.example.com"), (None, "h"), ("http://h", None), ("http://h/path", "h"),
                         ("ftp://h", "h"), ("http://u@h", "h"), ("http://h:99999", "h:99999"), ("http://h:", "h"),
                         ("http://h", "h evil"), ("http://h", "h:1:2"), ("http://" + "h" * 400, "h" * 400)):
        assert not origin_matches_host(origin, host), (origin, host)


@given(st.one_of(st.none(), st.text(max_size=80)), st.one_of(st.none(), st.text(max_size=80)))
def test_origin_matches_host_never_raises(origin: str | None, host: str | None) -> None:
    assert origin_matches_host(origin, host) in (True, False)


def test_log_throttle_bounds_lines_per_key_and_counts_the_rest() -> None:
    th = LogThrottle(interval_s=10.0, burst=2)
    assert [th.allow("bad_origin", 0.0) for _ in range(5)] == [0, 0, None, None, None]
    assert th.allow("auth_timeout", 1.0) == 0, "keys are independent"
    assert th.allow("bad_origin", 9.9) is None
    assert th.allow("bad_origin", 10.0) == 4, "the next line says how many were dropped"
    assert th.allow("bad_origin", 10.1) == 0
    assert th.allow("bad_origin", 10.2) is None


def test_token_bucket() -> None:
    b = TokenBucket(rate=2, burst=3, now=0.0)
    assert [b.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.allow(0.5) and not b.allow(0.5)
    assert [b.allow(10.0) for _ in range(4)] == [True, True, True, False], "refill is capped at burst"
    assert not b.allow(5.0), "a clock going backwards refills nothing"
    with pytest.raises(ValueError):
        TokenBucket(0, 1, 0.0)
