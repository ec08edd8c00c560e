"""Settings: one frozen, typed object, parsed once from ``LIVECUE_*`` env vars and CLI flags.

Every setting is declared once in :data:`SETTINGS` with its env var, flag, default and help;
``livecue <command> --help`` and the README table are generated from the same list. A wrong
value raises :class:`~schemas.errors.ConfigError` naming the setting and where it came from.
Nothing here reads the environment at import time.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError

__all__ = [
    "Settings", "Setting", "SETTINGS", "load_settings", "add_setting_flags", "parse_broker_url",
    "settings_env", "settings_from_args", "settings_table",
]


def parse_broker_url(value: str) -> str:
    """Validate ``kafka://host:port[,host:port...]`` and return the aiokafka bootstrap string."""
    m = re.fullmatch(r"kafka://([^/?#]+)/?", value.strip())
    if not m:
        raise ValueError("expected kafka://HOST:PORT[,HOST:PORT...]")
    hosts = m.group(1).split(",")
    for h in hosts:
        hm = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", h)
        if not hm or not 0 < int(hm.group(2)) < 65536:
            raise ValueError(f"bad host:port {h!r}")
    return ",".join(hosts)


def _bool(v: str) -> bool:
    s = v.strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(v: str) -> int:
        try:
            n = int(v.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        if not lo <= n <= hi:
            raise ValueError(f"expected an integer in {lo}..{hi}")
        return n

    return parse


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(v: str) -> float:
        try:
            n = float(v.strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if not lo <= n <= hi:
            raise ValueError(f"expected a number in {lo}..{hi}")
        return n

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(v: str) -> str:
        if v not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return v

    return parse


def _origins(v: str) -> tuple[str, ...]:
    out = tuple(o.strip() for o in v.split(",") if o.strip())
    for o in out:
        if not re.fullmatch(r"https?://[A-Za-z0-9_.\-\[\]:]+", o):
            raise ValueError(f"bad origin {o!r} (expected scheme://host[:port], no path)")
    return out


def _path(v: str) -> Path:
    if not v.strip():
        raise ValueError("expected a path")
    return Path(v)


def _opt_path(v: str) -> Path | None:
    return Path(v) if v.strip() else None


def _str(v: str) -> str:
    return v


def _secret(v: str) -> str:
    if v and len(v.encode("utf-8")) < 32:
        raise ValueError("must be at least 32 bytes (e.g. openssl rand -hex 32)")
    return v


def _ids(v: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in v.split(",") if x.strip())


def _opt_port(v: str) -> int | None:
    return _int_range(0, 65535)(v) if v.strip() else None


@dataclass(frozen=True)
class Setting:
    """Declaration of one setting: field name, env var, parser, default (as text) and help."""

    name: str
    parse: Callable[[str], Any]
    default: str
    help: str
    secret: bool = False

    @property
    def env(self) -> str:
        return "LIVECUE_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("broker", parse_broker_url, "kafka://127.0.0.1:9092", "Kafka bootstrap servers, kafka://HOST:PORT[,HOST:PORT]"),
    Setting("kafka_security_protocol", _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"), "PLAINTEXT", "security protocol of every Kafka client (worker, gateway, topics, simulate, replay, record, report)"),
    Setting("kafka_sasl_mechanism", _choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"), "SCRAM-SHA-512", "SASL mechanism (with SASL_PLAINTEXT / SASL_SSL)"),
    Setting("kafka_username", _str, "", "SASL user name"),
    Setting("kafka_password", _str, "", "SASL password; env only, never a flag", secret=True),
    Setting("kafka_password_file", _opt_path, "", "file holding the SASL password (a mounted secret), instead of LIVECUE_KAFKA_PASSWORD"),
    Setting("kafka_ca_file", _opt_path, "", "PEM file of the CA(s) that signed the brokers' certificates (empty: the system's trust store)"),
    Setting("kafka_cert_file", _opt_path, "", "PEM client certificate (chain), for brokers that require TLS client authentication"),
    Setting("kafka_key_file", _opt_path, "", "PEM private key of the client certificate"),
    Setting("partitions", _int_range(1, 1024), "4", "partitions per contract topic when creating topics"),
    Setting("replication_factor", _int_range(1, 16), "1", "replication factor of the topics the worker creates (its state changelog): 3 on a production cluster, so state survives a broker loss"),
    Setting("app_id", _str, "livecue", "Kafka consumer group / Faust app id of the workers"),
    Setting("data_dir", _path, "./data", "directory for worker state (one subdirectory per worker)"),
    Setting("playbook", _opt_path, "", "playbook TOML file (empty: the shipped default)"),
    Setting("playbook_dir", _opt_path, "", "directory of per-room playbook overrides, ROOM_ID.toml"),
    Setting("worker_id", _str, "", "name of this worker (empty: hostname-pid); picks its data subdirectory"),
    Setting("metrics_port", _int_range(0, 65535), "9464", "port of the worker's /metrics (0: pick a free one)"),
    Setting("metrics_host", _str, "127.0.0.1", "address the worker's /metrics binds to"),
    Setting("web_port", _int_range(0, 65535), "0", "port of Faust's own web server (0: pick a free one)"),
    Setting("web_host", _str, "127.0.0.1", "address Faust's own web server binds to"),
    Setting("fetch_max_wait_ms", _int_range(1, 5000), "20", "longest a fetch waits for data (Faust hard-codes 1500)"),
    Setting("fetch_min_bytes", _int_range(1, 64 * 1024 * 1024), "1", "the broker answers a worker's fetch once this many bytes are ready or fetch_max_wait_ms has passed: larger values mean fewer, larger fetches (less CPU on a busy worker) and add up to fetch_max_wait_ms to a quiet stream's latency, twice (docs/operations.md)"),
    Setting("linger_ms", _int_range(0, 1000), "20", "producer linger: batches sends (1 ms overloads Tansu)"),
    Setting("max_task_idle_ms", _int_range(0, 600000), "60000", "longest the merge stands still for an input topic-partition the broker holds unread records of (a failover, an overloaded broker or worker) before it gives up event-time order"),
    Setting("align_grace_ms", _int_range(0, 60000), "50", "how long after it arrived an event may wait for quiet, caught-up input topics (records produced before it still on their way): above the producers' linger.ms plus a produce request; raise it for exact replays at --speed max"),
    Setting("max_queued_per_partition", _int_range(100, 10_000_000), "2500", "events an input topic-partition may queue in the cross-topic merge before its fetching pauses (resumes at half), and the most records one fetch round hands over; ~0.8 KB each while queued"),
    Setting("max_future_ms", _int_range(1000, 86_400_000), "300000", "an event dated more than this ahead of the worker's wall clock is dead-lettered (a clock gone wrong must not move a room's time)"),
    Setting("max_cached_rooms", _int_range(10, 10_000_000), "10000", "rooms a worker keeps decoded in memory; least recently used ones beyond it are reloaded from the table when they return"),
    Setting("ended_room_retention_s", _float_range(1.0, 30 * 86400.0), "3600", "seconds after a room's last event, once its session ended, before its state is removed from the table (a tombstone)"),
    Setting("commit_interval_s", _float_range(0.05, 60.0), "5.0", "seconds between offset commits / state flushes"),
    Setting("session_timeout_s", _float_range(1.0, 300.0), "6", "consumer group session timeout: how fast a dead worker's partitions move to another (restart to cues ≈ this + rebalance + recovery)"),
    Setting("heartbeat_interval_s", _float_range(0.1, 60.0), "1", "consumer group heartbeat interval"),
    Setting("rebalance_timeout_s", _float_range(1.0, 300.0), "4", "consumer group rebalance timeout (Tansu waits this long before a group forms)"),
    Setting("stats_interval_ms", _int_range(100, 60000), "1000", "event-time interval between room_stats snapshots"),
    Setting("gateway_host", _str, "127.0.0.1", "address the websocket gateway binds to"),
    Setting("gateway_port", _int_range(0, 65535), "8765", "port of the websocket gateway (screens, /metrics, /healthz)"),
    Setting("token_secret", _secret, "", "HMAC secret for screen tokens, at least 32 bytes; env only, never a flag (empty: a random one per process, dev only)", secret=True),
    Setting("token_secret_file", _opt_path, "", "file holding the token secret (a mounted Docker/Kubernetes secret), instead of LIVECUE_TOKEN_SECRET"),
    Setting("revoked_tokens", _ids, "", "token ids (jti) refused by the gateway, comma separated"),
    Setting("revoked_tokens_file", _opt_path, "", "file of revoked token ids (jti), one a line, re-read while running: their open screens close within seconds"),
    Setting("allowed_origins", _origins, "", "exact Origin allow-list for browsers, comma separated (empty: same host as the gateway)"),
    Setting("max_connections", _int_range(1, 1_000_000), "1000", "cap on websocket connections per gateway"),
    Setting("max_connections_per_token", _int_range(1, 10000), "8", "cap on websocket connections per token"),
    Setting("gateway_max_unauthenticated", _int_range(1, 1_000_000), "256", "cap on sockets that have not authenticated yet (the oldest is dropped for a new one)"),
    Setting("gateway_max_unauthenticated_per_address", _int_range(1, 100_000), "16", "cap on not-yet-authenticated sockets per remote address (the oldest is dropped for a new one)"),
    Setting("gateway_auth_timeout_s", _float_range(0.2, 60.0), "3", "seconds a new socket has to authenticate"),
    Setting("gateway_rate_per_s", _float_range(0.1, 10000.0), "10", "messages a second a screen may send (token bucket)"),
    Setting("gateway_burst", _int_range(1, 100_000), "30", "burst of messages a screen may send at once"),
    Setting("gateway_send_queue", _int_range(8, 100_000), "256", "frames queued per screen before it counts as too slow and is cut off"),
    Setting("gateway_backlog_cues", _int_range(1, 100_000), "200", "recent cues kept per room for resume"),
    Setting("gateway_metrics_port", _opt_port, "", "serve the gateway's /metrics on this port of LIVECUE_METRICS_HOST instead of the screen port (empty: the screen port; 0: a free one)"),
    Setting("reports_dir", _path, "./reports", "directory of post-show reviews (复盘): the reporter writes ROOM/SESSION/index.html there; the gateway serves it read-only at /reports/"),
    Setting("log_format", _choice("auto", "json", "text"), "auto", "log format: json when not on a terminal (auto)"),
    Setting("log_level", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", "log level"),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """All settings of a LiveCue process. Build with :func:`load_settings`; never mutate."""

    broker: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password: str = ""
    kafka_password_file: Path | None = None
    kafka_ca_file: Path | None = None
    kafka_cert_file: Path | None = None
    kafka_key_file: Path | None = None
    partitions: int = 4
    replication_factor: int = 1
    app_id: str = "livecue"
    data_dir: Path = Path("./data")
    playbook: Path | None = None
    playbook_dir: Path | None = None
    worker_id: str = ""
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    web_port: int = 0
    web_host: str = "127.0.0.1"
    fetch_max_wait_ms: int = 20
    fetch_min_bytes: int = 1
    linger_ms: int = 20
    max_task_idle_ms: int = 60000
    align_grace_ms: int = 50
    max_queued_per_partition: int = 2500
    max_future_ms: int = 300000
    max_cached_rooms: int = 10000
    ended_room_retention_s: float = 3600.0
    commit_interval_s: float = 5.0
    session_timeout_s: float = 6.0
    heartbeat_interval_s: float = 1.0
    rebalance_timeout_s: float = 4.0
    stats_interval_ms: int = 1000
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8765
    token_secret: str = ""
    token_secret_file: Path | None = None
    revoked_tokens: tuple[str, ...] = ()
    revoked_tokens_file: Path | None = None
    allowed_origins: tuple[str, ...] = ()
    max_connections: int = 1000
    max_connections_per_token: int = 8
    gateway_max_unauthenticated: int = 256
    gateway_max_unauthenticated_per_address: int = 16
    gateway_auth_timeout_s: float = 3.0
    gateway_rate_per_s: float = 10.0
    gateway_burst: int = 30
    gateway_send_queue: int = 256
    gateway_backlog_cues: int = 200
    gateway_metrics_port: int | None = None
    reports_dir: Path = Path("./reports")
    log_format: str = "auto"
    log_level: str = "INFO"

    @property
    def broker_url(self) -> str:
        """The broker as a ``kafka://`` URL (what Faust and the CLI print)."""
        return "kafka://" + self.broker

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (values already typed)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:  # never print secrets
        fields = ", ".join(
            f"{s.name}={'***' if s.secret and getattr(self, s.name) else getattr(self, s.name)!r}"
            for s in SETTINGS
        )
        return f"Settings({fields})"


def add_setting_flags(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Add ``--flag`` options for the named settings (values stay text until :func:`load_settings`)."""
    group = parser.add_argument_group("settings (flag overrides env var)")
    for name in names:
        s = _BY_NAME[name]
        if s.secret:  # a flag shows in the process list: secrets come from env or file only
            continue
        group.add_argument(
            s.flag, dest="setting_" + s.name, metavar=s.name.upper(), default=None,
            help=f"{s.help} [env {s.env}, default {s.default!r}]",
        )


def load_settings(env: Mapping[str, str], flags: Mapping[str, str | None] | None = None) -> Settings:
    """Parse settings from env vars and flag values (flags win). Raises ConfigError naming the setting."""
    values: dict[str, Any] = {}
    flags = flags or {}
    for s in SETTINGS:
        raw, source = s.default, "default"
        if s.env in env:
            raw, source = env[s.env], f"env {s.env}"
        flag_value = flags.get(s.name)
        if flag_value is not None:
            raw, source = flag_value, f"flag {s.flag}"
        try:
            values[s.name] = s.parse(raw)
        except ValueError as exc:
            shown = "***" if s.secret else repr(raw)
            raise ConfigError(f"setting {s.name} ({source}) = {shown}: {exc}") from None
    if values["token_secret_file"] is not None:
        if values["token_secret"]:
            raise ConfigError("settings token_secret and token_secret_file: set one of them, not both")
        try:
            text = values["token_secret_file"].read_text(encoding="utf-8").strip()
            values["token_secret"] = _secret(text) if text else ""
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"setting token_secret_file = {str(values['token_secret_file'])!r}: {exc}") from None
        if not values["token_secret"]:
            raise ConfigError("setting token_secret_file: the file is empty")
    if values["kafka_password_file"] is not None:
        if values["kafka_password"]:
            raise ConfigError("settings kafka_password and kafka_password_file: set one of them, not both")
        try:
            values["kafka_password"] = values["kafka_password_file"].read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"setting kafka_password_file = {str(values['kafka_password_file'])!r}: {exc}") from None
        if not values["kafka_password"]:
            raise ConfigError("setting kafka_password_file: the file is empty")
    if values["kafka_security_protocol"].startswith("SASL_") and not (values["kafka_username"] and values["kafka_password"]):
        raise ConfigError(
            f"setting kafka_security_protocol = {values['kafka_security_protocol']}: needs kafka_username "
            "and a password (LIVECUE_KAFKA_PASSWORD or LIVECUE_KAFKA_PASSWORD_FILE)"
        )
    if (values["kafka_cert_file"] is None) != (values["kafka_key_file"] is None):
        raise ConfigError("settings kafka_cert_file and kafka_key_file: set both or neither")
    settings = Settings(**values)
    if settings.heartbeat_interval_s * 3 > settings.session_timeout_s:
        raise ConfigError(
            "setting heartbeat_interval_s: must be at most a third of session_timeout_s "
            f"({settings.heartbeat_interval_s} vs {settings.session_timeout_s})"
        )
    return settings


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Settings from an argparse namespace built with :func:`add_setting_flags`."""
    flags = {k[len("setting_"):]: v for k, v in vars(args).items() if k.startswith("setting_")}
    return load_settings(env, flags)


def settings_table() -> str:
    """Markdown table of every setting (for the README)."""
    rows = ["| env var | flag | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        flag = "(env only)" if s.secret else f"`{s.flag}`"
        rows.append(f"| `{s.env}` | {flag} | `{s.default}` | {s.help} |")
    return "\n".join(rows)


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``LIVECUE_*`` env vars that reproduce ``settings`` in a child process."""
    env: dict[str, str] = {}
    for s in SETTINGS:
        v = getattr(settings, s.name)
        if s.name == "broker":
            text = settings.broker_url
        elif s.name == "token_secret_file":
            text = ""  # already read into token_secret, which the child gets instead
        elif s.name == "kafka_password_file":
            text = ""  # already read into kafka_password, which the child gets instead
        elif v is None:
            text = ""
        elif isinstance(v, tuple):
            text = ",".join(v)
        else:
            text = str(v)
        env[s.env] = text
    return env
