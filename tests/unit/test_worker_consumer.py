"""The worker's fetch settings reach the aiokafka consumer Faust builds for it.

Faust builds the consumer itself (``fetch_max_wait_ms=1500`` hard-coded, no ``fetch_min_bytes``);
stream/faust_batch.py sets both from the worker's settings before the consumer starts, which is
when aiokafka's Fetcher reads them (the canary test holds aiokafka to that).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from livecue.config import load_settings
from schemas.errors import ConfigError
from stream.app import create_app


async def _fetch_settings(tmp_path: Path, env: dict[str, str]) -> tuple[int, int]:
    """(fetch_max_wait_ms, fetch_min_bytes) of the consumer Faust builds for a worker (not started)."""
    w = create_app(load_settings({"LIVECUE_DATA_DIR": str(tmp_path), **env}))
    c = w.app.consumer._thread._create_worker_consumer(w.app.transport)
    try:
        return c._fetch_max_wait_ms, c._fetch_min_bytes
    finally:
        await c.stop()


async def test_the_fetch_settings_reach_the_consumer(tmp_path: Path) -> None:
    env = {"LIVECUE_FETCH_MAX_WAIT_MS": "7", "LIVECUE_FETCH_MIN_BYTES": "65536"}
    assert await _fetch_settings(tmp_path, env) == (7, 65536)


async def test_by_default_a_fetch_returns_as_soon_as_data_is_there(tmp_path: Path) -> None:
    assert await _fetch_settings(tmp_path, {}) == (20, 1)


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_bad_fetch_min_bytes_fails_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match="fetch_min_bytes .*LIVECUE_FETCH_MIN_BYTES"):
        load_settings({"LIVECUE_FETCH_MIN_BYTES": value})
