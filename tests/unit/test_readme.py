"""The README documents every setting, and opens with the two commands CI and users rely on."""

from __future__ import annotations

from pathlib import Path

from livecue.config import SETTINGS

ROOT = Path(__file__).resolve().parents[2]


def test_readme_lists_every_setting_with_its_env_var_and_default() -> None:
    text = (ROOT / "README.md").read_text()
    for s in SETTINGS:
        assert f"`{s.env}`" in text, f"{s.env} missing from README"
        flag = "(env only)" if s.secret else f"`{s.flag}`"  # secrets never get a flag
        assert f"| `{s.env}` | {flag} | `{s.default}` |" in text, f"{s.env}: README row is stale"


def test_readme_opens_with_demo_and_test_commands_and_ci_runs_the_test_command() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```sh", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block and "make test" in first_block
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
