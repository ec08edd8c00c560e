"""``livecue broker --kafka``: Apache Kafka itself as the CLI runs it.

- ``--nodes 3`` prints ``kafka://H:P,H:P,H:P`` alone on its first stdout line, the three nodes
  form one cluster, the contract's topics are replicated on all three with
  ``min.insync.replicas`` 2, and SIGTERM stops every java process it started, each with a
  clean shutdown (not merely killed with its parent);
- stopped one node after another, the last after the other two have exited, each node still
  shuts down cleanly (no controlled shutdown waiting for a quorum that has gone);
- SIGKILL of the CLI itself leaves no java behind (``PR_SET_PDEATHSIG``);
- without Maven, the first start fails with one line naming the Maven command to run.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from livecue.kafka_cluster import KafkaCluster
from schemas import ALL_TOPICS

URL_RE = re.compile(r"kafka://(127\.0\.0\.1:\d{2,5})(,127\.0\.0\.1:\d{2,5})*")

pytestmark = pytest.mark.slow


def _livecue() -> list[str]:
    script = Path(sys.executable).with_name("livecue")
    return [str(script)] if script.exists() else [sys.executable, "-m", "livecue.cli"]


def _java_children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid and b"kafka.Kafka" in cmdline:
            out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


class CliKafka:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*_livecue(), "broker", "--kafka", *args, "--log-format", "text", "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        if not ready:
            self.proc.kill()
            pytest.fail("livecue broker --kafka printed nothing on stdout within 120 s")
        self.first_line = self.proc.stdout.readline().decode().rstrip("\n")
        if not URL_RE.fullmatch(self.first_line):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
            pytest.fail(f"first stdout line {self.first_line!r} is not kafka://H:P[,H:P]; stderr: {err[-2000:]!r}")
        self.bootstrap = self.first_line.removeprefix("kafka://")
        self.java = _java_children(self.proc.pid)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        for p in _wait_gone(self.java, 0):  # never leave one behind, even when a test fails
            os.kill(p, signal.SIGKILL)


@pytest.fixture
def cli() -> Iterator[list[CliKafka]]:
    started: list[CliKafka] = []
    yield started
    for c in started:
        c.cleanup()


async def test_three_nodes_one_cluster_replicated_topics_and_sigterm_stops_all(
    cli: list[CliKafka], tmp_path: Path
) -> None:
    t0 = time.monotonic()
    b = CliKafka("--nodes", "3", "--partitions", "2", "--data-dir", str(tmp_path / "kafka"))
    cli.append(b)
    print(f"[kafka] livecue broker --kafka --nodes 3: ready in {time.monotonic() - t0:.1f}s")
    assert len(b.bootstrap.split(",")) == 3
    assert len(b.java) == 3, f"expected three kafka.Kafka children, found {b.java}"
    admin = AIOKafkaAdminClient(bootstrap_servers=b.bootstrap)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        assert sorted(x["port"] for x in cluster["brokers"]) == sorted(int(h.rsplit(":", 1)[1]) for h in b.bootstrap.split(","))
        described = await admin.describe_topics(list(ALL_TOPICS))
        assert {d["topic"]: len(d["partitions"]) for d in described} == {t: 2 for t in ALL_TOPICS}
        for d in described:
            for p in d["partitions"]:
                assert sorted(p["replicas"]) == [1, 2, 3], d
        resp = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "live.chat")])
        entries = {e[0]: e[1] for r in resp for res in r.resources for e in res[4]}
        assert entries["min.insync.replicas"] == "2"
    finally:
        await admin.close()

    t1 = time.monotonic()
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(60) == 0
    print(f"[kafka] SIGTERM to every node gone: {time.monotonic() - t1:.1f}s")
    assert _wait_gone(b.java, 5) == [], "kafka nodes still running after SIGTERM"
    # Each node was shut down, not killed: Kafka marks a clean shutdown in its log dir.
    for n in (1, 2, 3):
        assert (tmp_path / "kafka" / f"node-{n}" / "logs" / ".kafka_cleanshutdown").is_file(), f"node {n} was not stopped cleanly"


def test_nodes_stopped_one_after_another_each_shut_down_cleanly(tmp_path: Path) -> None:
    """The last node of a combined 3-node cluster stops cleanly after the other two have gone.

    With Kafka's controlled shutdown the last broker asks a quorum that has left for approval
    and waits up to 5 minutes (it was killed, without its marker, in CI once with all three
    signalled together); the spacing here makes that certain instead of a race."""
    cluster = KafkaCluster(nodes=3, base_dir=tmp_path / "kafka").start()
    try:
        procs = [n.proc for n in cluster.nodes]
        assert all(p is not None and p.poll() is None for p in procs), "every node runs before the stop"
        for node in cluster.nodes:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGTERM)
            try:
                rc = node.proc.wait(60)  # a hang guard: a clean stop takes seconds, the bug 5 minutes
            except subprocess.TimeoutExpired:
                pytest.fail(f"kafka node {node.node_id} still running 60 s after SIGTERM (the nodes before it had exited)")
            # The JVM exits 128 + SIGTERM once its shutdown hooks (Kafka's shutdown) have run.
            assert rc == 128 + signal.SIGTERM, f"kafka node {node.node_id} exited with {rc}"
        for node in cluster.nodes:
            assert (node.data_dir / ".kafka_cleanshutdown").is_file(), f"node {node.node_id} was not stopped cleanly"
    finally:
        cluster.stop(timeout=5)


def test_sigkill_of_the_cli_leaves_no_kafka_node(cli: list[CliKafka]) -> None:
    b = CliKafka("--no-topics")
    cli.append(b)
    assert len(b.java) == 1 and _alive(b.java[0])
    b.proc.kill()  # no handler runs: only PR_SET_PDEATHSIG can take the node down
    b.proc.wait(10)
    assert _wait_gone(b.java, 10) == [], f"kafka node {b.java} orphaned after its parent was SIGKILLed"


def test_without_maven_the_error_names_the_command(tmp_path: Path) -> None:
    java = shutil.which("java")
    assert java is not None, "java is needed for Apache Kafka (apt-get install openjdk-17-jre-headless)"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "java").symlink_to(java)  # java, but no mvn
    env = {**os.environ, "PATH": str(bindir), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run([*_livecue(), "broker", "--kafka", "--log-format", "text"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "mvn not found" in lines[0] and "dependency:copy-dependencies" in lines[0]
    assert "deploy/kafka/pom.xml" in lines[0]
