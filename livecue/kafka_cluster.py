"""Apache Kafka itself on loopback, without Docker: jars from Maven Central, KRaft, 1 or 3 nodes.

:func:`kafka_jars` resolves the broker's jars once with Maven from ``deploy/kafka/pom.xml``
(downloads cached in ``~/.m2``, the copied jars in ``~/.cache/livecue/kafka-VERSION``).
:class:`KafkaCluster` formats KRaft storage and starts ``nodes`` combined broker+controller
processes (``java -cp JARS/* kafka.Kafka server.properties``) on free 127.0.0.1 ports, waits
until every node answers, and stops them all (SIGTERM, then SIGKILL). Each node gets
``PR_SET_PDEATHSIG`` = SIGKILL like the Tansu broker, so none outlives a killed parent.

A cluster can also be secured (:class:`ClusterSecurity`): the client listener then speaks
SASL_SSL (or SSL / SASL_PLAINTEXT) with PEM certificates and SCRAM users written into the
storage at format time (``kafka-storage format --add-scram``); brokers talk to each other and
to the controllers over a separate plaintext loopback listener.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from schemas.errors import BrokerError
from schemas.events import ALL_TOPICS

from .broker import die_with_parent, free_ports

__all__ = [
    "KAFKA_VERSION", "POM", "ClusterSecurity", "KafkaCluster", "KafkaNode", "kafka_jars",
    "kafka_tool",
]

log = logging.getLogger(__name__)

#: The Kafka version pinned in deploy/kafka/pom.xml (and docker-compose.yml's image).
KAFKA_VERSION = "4.1.1"
POM = Path(__file__).resolve().parent.parent / "deploy" / "kafka" / "pom.xml"

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.apache.name = org.apache.kafka
logger.apache.level = {level}
"""


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "livecue"


def _mvn_command(pom: Path, out: Path) -> list[str]:
    return [
        "mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
        f"-DoutputDirectory={out}",
    ]


def kafka_jars(pom: Path = POM, cache_dir: Path | None = None, timeout: float = 900.0) -> Path:
    """Directory holding the pinned Kafka broker's jars, resolving them with Maven on first use.

    The directory is keyed by a hash of the pom, so changing the pinned version resolves afresh.
    Concurrent callers (several test processes) wait on a file lock instead of racing Maven.
    Raises :class:`BrokerError` naming the command to run when Java or Maven is missing.
    """
    if not pom.is_file():
        raise BrokerError(f"no {pom}: run from a LiveCue source checkout (deploy/kafka/pom.xml pins the broker)")
    if shutil.which("java") is None:
        raise BrokerError("java not found: Apache Kafka needs Java 17+ (apt-get install openjdk-17-jre-headless)")
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    root = cache_dir or _cache_root()
    target = root / f"kafka-{KAFKA_VERSION}-{digest}"
    if (target / ".complete").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".kafka-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").is_file():
            return target
        if shutil.which("mvn") is None:
            shown = " ".join(_mvn_command(pom, target))
            raise BrokerError(f"mvn not found: install Maven (apt-get install maven) or run: {shown}")
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=root))
        cmd = _mvn_command(pom, tmp)
        log.info("resolving kafka jars", extra={"command": " ".join(cmd)})
        try:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BrokerError(f"maven did not finish within {timeout:.0f}s: {' '.join(cmd)}") from None
        if res.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            tail = (res.stdout + res.stderr).decode(errors="replace").strip().splitlines()[-5:]
            raise BrokerError(f"maven failed ({res.returncode}): {' '.join(cmd)}: " + " | ".join(tail))
        (tmp / ".complete").write_text(KAFKA_VERSION + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    return target


def kafka_tool(
    jars: Path, main_class: str, args: Sequence[str], timeout: float = 120.0
) -> subprocess.CompletedProcess[bytes]:
    """Run one of Kafka's own command-line tools (``kafka.tools.StorageTool``, ...) to completion."""
    cmd = ["java", "-Xmx256m", "-cp", f"{jars}/*", main_class, *args]
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    if res.returncode != 0:
        out = (res.stdout + res.stderr).decode(errors="replace").strip()
        raise BrokerError(f"{main_class} {' '.join(args[:2])} failed ({res.returncode}): {out[-800:]}")
    return res


@dataclass(frozen=True)
class ClusterSecurity:
    """How the client listener is secured. Files are PEM; ``scram_users`` is ``{user: password}``.

    ``protocol`` is the client listener's security protocol (SSL, SASL_PLAINTEXT, SASL_SSL).
    SCRAM users get credentials for both SCRAM-SHA-256 and SCRAM-SHA-512; PLAIN users are the
    same names and passwords. ``client_auth`` is Kafka's ``ssl.client.auth`` (none, requested,
    required).
    """

    protocol: str = "SASL_SSL"
    scram_users: dict[str, str] = field(default_factory=dict)
    ca_file: Path | None = None
    #: one PEM file with the broker's private key (PKCS#8, unencrypted) and certificate chain
    keystore_pem: Path | None = None
    client_auth: str = "none"

    @property
    def ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")


@dataclass
class KafkaNode:
    """One combined broker+controller process of a :class:`KafkaCluster`."""

    node_id: int
    port: int
    controller_port: int
    internal_port: int
    data_dir: Path
    config: Path
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class KafkaCluster:
    """``nodes`` (1 or 3) Apache Kafka KRaft nodes on 127.0.0.1, each broker and controller.

    Use as a context manager or :meth:`start` / :meth:`stop`. ``url`` is
    ``kafka://127.0.0.1:P1[,127.0.0.1:P2,...]``. Data lives under ``base_dir`` (a temporary
    directory by default, removed on stop); :meth:`kill` / :meth:`restart_node` inject faults.
    With 3 nodes topics default to replication 3 and ``min.insync.replicas`` 2.
    """

    def __init__(
        self,
        nodes: int = 1,
        base_dir: Path | None = None,
        security: ClusterSecurity | None = None,
        heap: str = "384m",
        log_level: str = "WARN",
        extra_config: dict[str, str] | None = None,
    ) -> None:
        if nodes not in (1, 3):
            raise BrokerError(f"a local Kafka cluster has 1 or 3 nodes, not {nodes}")
        self.nodes_count = nodes
        self._own_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="livecue-kafka-"))
        self.security = security
        self.heap = heap
        self.log_level = log_level
        self.extra_config = dict(extra_config or {})
        self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.nodes: list[KafkaNode] = []
        self.jars: Path | None = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def internal_bootstrap(self) -> str:
        """The plaintext inter-broker listeners (differs from ``bootstrap`` only when secured)."""
        return ",".join(f"127.0.0.1:{n.internal_port}" for n in self.nodes)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> KafkaCluster:
        """Resolve the jars, format storage, start every node and wait until all answer."""
        self.jars = kafka_jars()
        try:
            self._configure()
            self._format()
            for node in self.nodes:
                self._spawn(node)
            self._wait(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("kafka cluster ready", extra={"bootstrap": self.bootstrap, "nodes": self.nodes_count})
        return self

    def _configure(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "log4j2.properties").write_text(_LOG4J2.format(level=self.log_level))
        flat = free_ports(3 * self.nodes_count)  # distinct: a node's listeners must differ
        ports = [(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) for i in range(self.nodes_count)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_p, c, _q) in enumerate(ports))
        for i, (port, cport, iport) in enumerate(ports):
            node_id = i + 1
            data = self.base_dir / f"node-{node_id}"
            node = KafkaNode(node_id, port, cport, iport, data / "logs", data / "server.properties")
            data.mkdir(parents=True, exist_ok=True)
            node.config.write_text(self._properties(node, voters))
            self.nodes.append(node)

    def _properties(self, node: KafkaNode, voters: str) -> str:
        n = self.nodes_count
        client_proto = self.security.protocol if self.security else "PLAINTEXT"
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": (
                f"CLIENT://127.0.0.1:{node.port},INTERNAL://127.0.0.1:{node.internal_port},"
                f"CONTROLLER://127.0.0.1:{node.controller_port}"
            ),
            "advertised.listeners": f"CLIENT://127.0.0.1:{node.port},INTERNAL://127.0.0.1:{node.internal_port}",
            "listener.security.protocol.map": f"CLIENT:{client_proto},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "INTERNAL",
            "log.dirs": str(node.data_dir),
            "num.partitions": "1",
            "default.replication.factor": str(n),
            "min.insync.replicas": "2" if n == 3 else "1",
            "offsets.topic.replication.factor": str(n),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(n),
            "transaction.state.log.min.isr": "2" if n == 3 else "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": str(n),
            "share.coordinator.state.topic.min.isr": "2" if n == 3 else "1",
            # As docker-compose.yml (the broker default is 3 s): the first rebalance of a new group
            # does not wait for more members.
            "group.initial.rebalance.delay.ms": "0",
            # As docker-compose.yml: topics are created on purpose, a misspelt name fails.
            "auto.create.topics.enable": "false",
            "log.retention.check.interval.ms": "60000",
            "unclean.leader.election.enable": "false",
            # No controlled shutdown: a stopping broker would first ask the controller quorum to
            # move its leaderships and wait up to 5 minutes for the approval. Every SIGTERM this
            # class sends stops the whole cluster (faults are SIGKILL), so there is nowhere to move
            # them, and in combined mode the last node to ask finds the quorum already gone:
            # measured, nodes 1 and 2 stopped and node 3 signalled after them was still waiting
            # 40 s later, then killed without its clean-shutdown marker (once in CI with all three
            # signalled together). Without it each node flushes and marks a clean shutdown alone.
            "controlled.shutdown.enable": "false",
        }
        sec = self.security
        if sec is not None:
            if sec.sasl:
                props["sasl.enabled.mechanisms"] = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
                plain_users = " ".join(f'user_{u}="{p}"' for u, p in sec.scram_users.items())
                props["listener.name.client.plain.sasl.jaas.config"] = (
                    f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
                )
                for mech in ("scram-sha-256", "scram-sha-512"):
                    props[f"listener.name.client.{mech}.sasl.jaas.config"] = (
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                    )
            if sec.ssl:
                if sec.keystore_pem is None or sec.ca_file is None:
                    raise BrokerError("an SSL listener needs keystore_pem and ca_file")
                props.update({
                    "listener.name.client.ssl.keystore.type": "PEM",
                    "listener.name.client.ssl.keystore.location": str(sec.keystore_pem),
                    "listener.name.client.ssl.truststore.type": "PEM",
                    "listener.name.client.ssl.truststore.location": str(sec.ca_file),
                    "listener.name.client.ssl.client.auth": sec.client_auth,
                })
        props.update(self.extra_config)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _format(self) -> None:
        assert self.jars is not None
        extra: list[str] = []
        if self.security is not None and self.security.sasl:
            for user, password in self.security.scram_users.items():
                for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                    extra += ["--add-scram", f"{mech}=[name={user},password={password}]"]
        for node in self.nodes:
            kafka_tool(
                self.jars, "kafka.tools.StorageTool",
                ["format", f"--cluster-id={self.cluster_id}", f"--config={node.config}", "--ignore-formatted", *extra],
            )

    def _spawn(self, node: KafkaNode) -> None:
        assert self.jars is not None
        cmd = [
            "java", f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.base_dir / 'log4j2.properties'}",
            "-cp", f"{self.jars}/*", "kafka.Kafka", str(node.config),
        ]
        if node.log_file is None:
            node.log_file = open(node.config.parent / "server.log", "ab")  # noqa: SIM115
        node.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=node.log_file, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent, start_new_session=True,
        )
        log.info("kafka node starting", extra={"node": node.node_id, "pid": node.proc.pid, "port": node.port})

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._wait_node(node, deadline)
        waiting = _wait_metadata(self.internal_bootstrap, self.nodes_count, deadline)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(waiting)
            return
        # Called from async code: wait on a loop of its own (start() blocks either way).
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, waiting).result()

    def _wait_node(self, node: KafkaNode, deadline: float) -> None:
        import socket

        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise BrokerError(
                    f"kafka node {node.node_id} exited with code {node.proc.returncode}: "
                    + self.log_tail(node)
                )
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", node.internal_port)) == 0:
                    return
            time.sleep(0.1)
        raise BrokerError(f"kafka node {node.node_id} did not listen within the timeout: {self.log_tail(node)}")

    def log_tail(self, node: KafkaNode, lines: int = 8) -> str:
        path = node.config.parent / "server.log"
        try:
            text = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])

    async def create_topics(
        self, partitions: int, topics: Sequence[str] = ALL_TOPICS, timeout: float = 30.0
    ) -> list[str]:
        """Create ``topics`` (replicated on every node) over the internal listener; returns the new ones."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.internal_bootstrap, request_timeout_ms=int(timeout * 1000)
        )
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [t for t in topics if t not in existing]
            if wanted:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([
                        NewTopic(t, num_partitions=partitions, replication_factor=self.nodes_count)
                        for t in wanted
                    ])
            # CreateTopics returns before the partitions have leaders; clients that come at once
            # would see NOT_LEADER_OR_FOLLOWER. Wait for every leader.
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                described = await admin.describe_topics(list(topics))
                if all(not d.get("error_code") and d["partitions"]
                       and all(p["leader"] >= 0 for p in d["partitions"]) for d in described):
                    break
                await asyncio.sleep(0.1)
            return wanted
        finally:
            await admin.close()

    def alive(self) -> bool:
        """True while every node the cluster started is running."""
        return bool(self.nodes) and all(n.alive() for n in self.nodes)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (a fault), leaving its data on disk for :meth:`restart_node`."""
        node = self.nodes[node_id - 1]
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()

    def restart_node(self, node_id: int, timeout: float = 60.0) -> None:
        """Start a stopped node again on the same ports and data."""
        node = self.nodes[node_id - 1]
        if node.alive():
            return
        self._spawn(node)
        self._wait_node(node, time.monotonic() + timeout)

    def stop_nodes(self, timeout: float = 30.0) -> None:
        """Shut every node down (SIGTERM, SIGKILL after ``timeout``), keeping their data on disk
        for :meth:`start_nodes` (a whole-cluster restart)."""
        self._terminate(timeout)

    def start_nodes(self, timeout: float = 90.0) -> None:
        """Start every stopped node again on its ports and data; wait until the cluster answers."""
        for node in self.nodes:
            if not node.alive():
                self._spawn(node)
        self._wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node: SIGTERM to all, then SIGKILL whatever is left after ``timeout``.

        Three nodes stopped together take ~6 s on a quiet host: each node's raft client waits up
        to 5 s (KafkaRaftClient's graceful shutdown) for voters that are already going. A node
        killed has no clean-shutdown marker and recovers its logs on the next start, so the
        default leaves 30 s. The nodes run without controlled shutdown (see :meth:`_properties`),
        so the order and spacing of the signals does not matter: with it, a node whose turn came
        after a majority of the combined nodes had exited waited up to 5 minutes for a quorum
        that was gone."""
        self._terminate(timeout)
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _terminate(self, timeout: float) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("kafka node did not stop in time, killing it", extra={"node": node.node_id, "timeout_s": timeout})
                node.proc.kill()
                node.proc.wait()
            node.proc = None
            if node.log_file is not None:
                node.log_file.close()
                node.log_file = None

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _wait_metadata(bootstrap: str, nodes: int, deadline: float) -> None:
    """Wait until the cluster's metadata lists every broker (the controllers have a quorum)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    last: Any = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            meta = await admin.describe_cluster()
            brokers = meta.get("brokers", [])
            if len(brokers) >= nodes and meta.get("controller_id", -1) != -1:
                return
            last = f"{len(brokers)} of {nodes} brokers registered"
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.2)
    raise BrokerError(f"kafka cluster {bootstrap} not ready in time: {last}")
