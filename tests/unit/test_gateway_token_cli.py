"""``livecue token``: prints the token alone on its last line; the secret comes from the
environment or a file (never a flag) and must be at least 32 bytes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from consumers.tokens import verify
from livecue.cli import main

SECRET = "cli-secret-" + "x" * 32


def test_token_command_prints_a_verifiable_token_last(capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVECUE_TOKEN_SECRET", SECRET)
    monkeypatch.delenv("LIVECUE_TOKEN_SECRET_FILE", raising=False)
    rc = main(["token", "--room", "r1", "--room", "直播间2", "--role", "host", "--ttl", "2h", "--by", "主播"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    claims = verify(SECRET, out[-1], time.time())
    assert (claims.role, claims.rooms, claims.by) == ("host", ("r1", "直播间2"), "主播")
    assert 7190 <= claims.exp - time.time() <= 7200
    assert all(out[-1] not in line for line in out[:-1]), "the token appears once, alone, last"
    assert f"jti={claims.jti}" in out[0], "the header names the id to revoke it by"


def test_the_secret_can_come_from_a_file(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_text(SECRET + "\n")
    monkeypatch.delenv("LIVECUE_TOKEN_SECRET", raising=False)
    monkeypatch.setenv("LIVECUE_TOKEN_SECRET_FILE", str(f))
    assert main(["token", "--room", "r1"]) == 0
    assert verify(SECRET, capsys.readouterr().out.strip().splitlines()[-1], time.time()).rooms == ("r1",)
    monkeypatch.setenv("LIVECUE_TOKEN_SECRET", SECRET)  # both: ambiguous, refused
    assert main(["token", "--room", "r1"]) == 2
    assert "not both" in capsys.readouterr().err


def test_token_command_needs_a_long_secret_from_env_never_a_flag(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVECUE_TOKEN_SECRET", raising=False)
    monkeypatch.delenv("LIVECUE_TOKEN_SECRET_FILE", raising=False)
    assert main(["token", "--room", "r1"]) == 2
    assert "LIVECUE_TOKEN_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("LIVECUE_TOKEN_SECRET", "x" * 31)
    assert main(["token", "--room", "r1"]) == 2
    err = capsys.readouterr().err
    assert "at least 32 bytes" in err and "x" * 31 not in err, "the short secret is not echoed"
    for command in ("token", "gateway", "demo"):
        with pytest.raises(SystemExit) as e:  # argparse: unrecognized argument
            main([command, "--room", "r1", "--token-secret", SECRET] if command == "token"
                 else [command, "--token-secret", SECRET])
        assert e.value.code == 2
    help_text = subprocess.run([sys.executable, "-m", "livecue.cli", "gateway", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--token-secret " not in help_text and "--token-secret-file" in help_text
