"""Repeated third-party log lines (a broker gone away) are throttled, with a count."""

from __future__ import annotations

import io
import logging

from livecue.logs import RepeatThrottle, TextFormatter, configure_logging


def test_same_message_passes_once_per_window_and_reports_how_many_were_held() -> None:
    now = [0.0]
    f = RepeatThrottle(window_s=5.0, clock=lambda: now[0])
    rec = lambda: logging.LogRecord("aiokafka", logging.ERROR, "x", 1, "Unable connect to %s", ("n1",), None)  # noqa: E731
    assert f.filter(rec())
    assert not any(f.filter(rec()) for _ in range(1000))
    now[0] = 5.0
    r = rec()
    assert f.filter(r) and r.repeated == 1000
    other = logging.LogRecord("aiokafka", logging.ERROR, "x", 1, "another problem", (), None)
    assert f.filter(other)


def test_configured_logging_throttles_kafka_clients_not_livecue(capsys: object) -> None:
    configure_logging("text", "INFO")
    for _ in range(500):
        logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s", 1)
        logging.getLogger("livecue.worker").warning("our own line")
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert err.count("Unable connect") == 1
    assert err.count("our own line") == 500
