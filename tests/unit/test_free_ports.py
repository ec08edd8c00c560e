"""free_ports: a Kafka node's listeners need distinct ports; one at a time, the kernel can hand
out the same free port twice (a CI run failed on it: CLIENT and CONTROLLER on one port)."""

from __future__ import annotations

import socket

from livecue.broker import free_ports


def test_ports_are_distinct_and_free() -> None:
    for _ in range(20):
        ports = free_ports(30)
        assert len(set(ports)) == 30
    with socket.socket() as s:  # and really free: bindable
        s.bind(("127.0.0.1", ports[0]))
