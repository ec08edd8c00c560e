"""Secured Kafka connections: :class:`~livecue.config.Settings` into client options.

One place turns the ``kafka_*`` settings (security protocol, SASL mechanism, user, password,
CA file, client certificate and key) into what the clients take:

- :func:`client_kwargs` -- keyword arguments for every aiokafka producer, consumer and admin
  client (``security_protocol``, ``ssl_context``, ``sasl_*``); empty for PLAINTEXT, so a plain
  cluster sees exactly the clients it saw before;
- :func:`faust_credentials` -- the same for the worker, as Faust's ``broker_credentials``;
- :func:`check_connection` -- one authenticated round trip at start-up that turns a wrong
  password or an untrusted certificate into one :class:`~schemas.errors.BrokerError` line,
  instead of a client retrying and logging forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from schemas.errors import BrokerError, ConfigError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from livecue.config import Settings

__all__ = [
    "check_connection", "client_kwargs", "faust_credentials", "is_secured", "preflight", "ssl_context",
    "talks_to_kafka",
]


def is_secured(settings: Settings) -> bool:
    """True unless the clients speak PLAINTEXT."""
    return settings.kafka_security_protocol != "PLAINTEXT"


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL / SASL_SSL (None otherwise). Verifies the broker's certificate and
    host name against ``kafka_ca_file`` (or the system's CAs); presents the client certificate
    when one is configured. Raises :class:`ConfigError` naming the file that cannot be used."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.kafka_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(settings.kafka_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"setting kafka_ca_file = {str(settings.kafka_ca_file)!r}: {exc}") from None
    if settings.kafka_cert_file is not None and settings.kafka_key_file is not None:
        try:
            ctx.load_cert_chain(str(settings.kafka_cert_file), str(settings.kafka_key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"settings kafka_cert_file / kafka_key_file = {str(settings.kafka_cert_file)!r}, "
                f"{str(settings.kafka_key_file)!r}: {exc}"
            ) from None
    return ctx


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments that secure an aiokafka client (nothing for PLAINTEXT)."""
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return {}
    kw: dict[str, Any] = {"security_protocol": proto}
    ctx = ssl_context(settings)
    if ctx is not None:
        kw["ssl_context"] = ctx
    if proto.startswith("SASL_"):
        kw.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_username,
            sasl_plain_password=settings.kafka_password,
        )
    return kw


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for the same settings (None for PLAINTEXT)."""
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    from faust.auth import SASLCredentials, SSLCredentials

    ctx = ssl_context(settings)
    if proto == "SSL":
        assert ctx is not None
        return SSLCredentials(ctx)
    creds = SASLCredentials(
        username=settings.kafka_username, password=settings.kafka_password,
        ssl_context=ctx, mechanism=settings.kafka_sasl_mechanism,
    )
    # Faust derives SASL_SSL from the context; SASL_PLAINTEXT is its default without one.
    return creds


async def check_connection(settings: Settings, timeout: float = 30.0) -> None:
    """Connect to the brokers with the configured security; raise :class:`BrokerError` with one
    line naming the cause. A TLS or authentication failure is final at once (retrying cannot
    fix it); a broker that is not up yet is retried until ``timeout``, as the commands' own
    waits do."""
    from aiokafka.admin import AIOKafkaAdminClient

    kw = client_kwargs(settings)
    who = f"{settings.kafka_security_protocol}"
    if settings.kafka_security_protocol.startswith("SASL_"):
        who += f" {settings.kafka_sasl_mechanism} user {settings.kafka_username!r}"
    deadline = time.monotonic() + timeout
    while True:
        cause: list[BaseException] = []
        with _capture_causes(cause):
            admin = AIOKafkaAdminClient(
                bootstrap_servers=settings.broker, request_timeout_ms=int(timeout * 1000), **kw
            )
            try:
                await asyncio.wait_for(_round_trip(admin), max(1.0, deadline - time.monotonic()))
                return
            except Exception as exc:  # noqa: BLE001 - classified below into one line
                final, why = _explain(exc, cause)
                if final or time.monotonic() >= deadline:
                    raise BrokerError(f"cannot connect to Kafka {settings.broker} ({who}): {why}") from None
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()
        await asyncio.sleep(0.5)


async def _round_trip(admin: Any) -> None:
    await admin.start()
    await admin.list_topics()


@contextlib.contextmanager
def _capture_causes(out: list[BaseException]) -> Iterator[None]:
    """Hold back the clients' own per-attempt error logs during the check and keep the
    exceptions they carry: aiokafka logs the real cause and raises a generic 'Unable to
    bootstrap', and the one error line should name the cause."""

    class _Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info and record.exc_info[1] is not None:
                out.append(record.exc_info[1])
            if isinstance(record.args, tuple):
                out.extend(a for a in record.args if isinstance(a, BaseException))

    grab = _Grab(level=logging.DEBUG)
    lg = logging.getLogger("aiokafka")
    propagate = lg.propagate
    lg.addHandler(grab)
    lg.propagate = False
    try:
        yield
    finally:
        lg.removeHandler(grab)
        lg.propagate = propagate


def _explain(exc: BaseException, logged: list[BaseException]) -> tuple[bool, str]:
    """(whether retrying cannot help, the cause in one phrase)."""
    chain: list[BaseException] = []
    for e in [exc, *logged]:
        while e is not None and e not in chain:
            chain.append(e)
            e = e.__cause__ or e.__context__  # type: ignore[assignment]
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return True, f"TLS: the broker's certificate is not trusted ({e.verify_message}); check kafka_ca_file"
        if isinstance(e, ssl.SSLError):
            return True, f"TLS handshake failed ({e.reason or e}); check the CA, client certificate and security protocol"
    for e in chain:
        name = type(e).__name__
        if "Authentication" in name or "SaslAuth" in name or "IllegalSasl" in name or "UnsupportedSasl" in name:
            return True, f"authentication failed ({name}: {e}); check kafka_username and the password"
    return False, f"{type(exc).__name__}: {exc}"


def talks_to_kafka(command: str, args: Any) -> bool:
    """Whether a ``livecue`` command run with ``args`` connects to the configured brokers."""
    if command in ("worker", "gateway", "topics", "room", "replay", "record", "reporter"):
        return True
    if command == "simulate":
        return not getattr(args, "out", None)
    if command == "report":
        return getattr(args, "file", None) is None
    if command == "demo":
        return bool(getattr(args, "external_broker", False))
    return False


def preflight(command: str, args: Any, settings: Settings) -> None:
    """For a secured cluster, :func:`check_connection` before a command that talks to it starts."""
    if is_secured(settings) and talks_to_kafka(command, args):
        asyncio.run(check_connection(settings))
