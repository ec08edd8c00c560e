"""``livecue token``: prints the token alone on its last line; refuses to sign without a secret."""

from __future__ import annotations

import time

import pytest

from consumers.tokens import verify
from livecue.cli import main


def test_token_command_prints_a_verifiable_token_last(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["token", "--room", "r1", "--room", "直播间2", "--role", "host", "--ttl", "2h", "--by", "主播",
               "--token-secret", "cli-secret"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    claims = verify("cli-secret", out[-1], time.time())
    assert (claims.role, claims.rooms, claims.by) == ("host", ("r1", "直播间2"), "主播")
    assert 7190 <= claims.exp - time.time() <= 7200
    assert all(out[-1] not in line for line in out[:-1]), "the token appears once, alone, last"


def test_token_command_needs_the_secret(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVECUE_TOKEN_SECRET", raising=False)
    assert main(["token", "--room", "r1"]) == 2
    assert "LIVECUE_TOKEN_SECRET" in capsys.readouterr().err
    assert main(["token", "--room", "r1", "--ttl", "forever", "--token-secret", "x"]) == 2
