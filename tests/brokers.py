"""The brokers the integration tier runs on, and what differs between them (importable by every
test tier: tests/ is on sys.path). The ``any_broker`` fixture in conftest.py hands these out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from livecue.config import Settings, load_settings

__all__ = ["TRAITS", "BrokerTraits", "BrokerUnderTest"]


@dataclass(frozen=True)
class BrokerTraits:
    """Everything the tests must know about how a broker differs, in one place (and measured in
    docs/operations.md). Test bodies read these; they never branch on the broker's name."""

    # Settings a worker/gateway needs on this broker. Tansu forms a consumer group only after the
    # rebalance timeout has passed, so tests lower it (3 s) with session/heartbeat to match; Kafka
    # forms one at once (group.initial.rebalance.delay.ms = 0) and keeps the worker's defaults.
    settings_env: dict[str, str] = field(default_factory=dict)
    # Measured, for the record (the worker's 20 ms fetch wait covers both; nothing to set):
    # start to partitions assigned, and whether a waiting fetch wakes when a record arrives.
    group_join_s: float = 0.0
    fetch_wakes_on_produce: bool = True
    # Both report the worker's changelog as cleanup.policy=compact; only Kafka compacts it (Tansu
    # keeps every write, so a restore there reads them all; measured in docs/operations.md).
    compacts_changelog: bool = True


TRAITS = {
    "tansu": BrokerTraits(
        settings_env={"LIVECUE_REBALANCE_TIMEOUT_S": "3", "LIVECUE_SESSION_TIMEOUT_S": "6"},
        group_join_s=4.7, fetch_wakes_on_produce=False, compacts_changelog=False),
    "kafka": BrokerTraits(group_join_s=2.2),
}


@dataclass(frozen=True)
class BrokerUnderTest:
    """One of the session's brokers, as a parametrized test sees it."""

    name: str
    bootstrap: str
    url: str
    traits: BrokerTraits

    def settings(self, tmp_path: Path, uid: str, **env: str) -> Settings:
        """Worker/gateway settings on this broker: own group and data dir, fast commits."""
        base = {
            "LIVECUE_BROKER": self.url,
            "LIVECUE_APP_ID": f"livecue-{self.name}-{uid}",
            "LIVECUE_DATA_DIR": str(tmp_path / "data"),
            "LIVECUE_METRICS_PORT": "0",
            "LIVECUE_GATEWAY_PORT": "0",
            "LIVECUE_HEARTBEAT_INTERVAL_S": "0.5",
            "LIVECUE_COMMIT_INTERVAL_S": "0.2",
            "LIVECUE_TOKEN_SECRET": "test-secret-" + uid * 4,  # >= 32 bytes, as the setting requires
            "LIVECUE_LOG_FORMAT": "text",
            **self.traits.settings_env,
            **env,
        }
        return load_settings(base)
