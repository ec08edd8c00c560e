"""The operations files are valid and name only real settings and metrics.

- Prometheus config, alert rules and their unit tests pass ``promtool``.
- ``docker-compose.yml`` passes ``docker-compose config`` and refuses to start without a token
  secret; every ``LIVECUE_*`` variable it (or the Dockerfile) names is a real setting.
- Every metric the alerts and the Grafana dashboard query is in the metrics contract below, and
  every PromQL expression of the dashboard parses.
- Every alert has a promtool test and a section in docs/operations.md.

Missing tools fail (never skip) with the Debian package that provides them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from livecue.config import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
COMPOSE = ROOT / "docker-compose.yml"
DOCS = ROOT / "docs" / "operations.md"

#: The metrics contract: name -> (type, labels). Workers and gateways expose exactly these.
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    # worker
    "livecue_events_consumed_total": ("counter", ("topic", "type")),
    "livecue_decode_failures_total": ("counter", ("topic", "reason")),
    "livecue_deadletters_total": ("counter", ("topic", "reason")),
    "livecue_cues_total": ("counter", ("kind",)),
    "livecue_room_stats_total": ("counter", ()),
    "livecue_batch_size": ("histogram", ()),
    "livecue_processing_latency_seconds": ("histogram", ()),
    "livecue_event_time_lag_seconds": ("histogram", ()),
    "livecue_active_rooms": ("gauge", ()),
    "livecue_state_cache_bytes": ("gauge", ()),
    "livecue_consumer_lag": ("gauge", ("topic", "partition")),
    "livecue_seconds_since_last_commit": ("gauge", ()),
    "livecue_aligner_pending": ("gauge", ()),
    "livecue_aligner_pending_peak": ("gauge", ()),
    "livecue_aligner_forced_total": ("counter", ("topic",)),
    "livecue_events_released_total": ("counter", ()),
    "livecue_send_failures_total": ("counter", ("kind",)),
    "livecue_paused_partitions": ("gauge", ()),
    "livecue_partition_pauses_total": ("counter", ()),
    "livecue_rooms": ("gauge", ("state",)),
    "livecue_rooms_evicted": ("gauge", ("reason",)),
    "livecue_build_info": ("gauge", ("version", "component", "python")),
    # gateway
    "livecue_gateway_connections": ("gauge", ("role",)),
    "livecue_gateway_messages_sent_total": ("counter", ("type",)),
    "livecue_gateway_slow_clients_total": ("counter", ()),
    "livecue_gateway_stats_skipped_total": ("counter", ()),
    "livecue_gateway_send_queue_depth": ("histogram", ()),
    "livecue_gateway_refused_total": ("counter", ("reason",)),
    "livecue_gateway_acks_total": ("counter", ("action",)),
    "livecue_gateway_cue_delivery_latency_seconds": ("histogram", ()),
    "livecue_gateway_records_consumed_total": ("counter", ("topic",)),
    "livecue_gateway_bad_records_total": ("counter", ("topic",)),
}
TARGET_LABELS = {"instance", "job"}
JOBS = {"livecue-worker", "livecue-gateway"}
METRIC_RE = re.compile(r"\blivecue_[a-z0-9_]+\b")

ALERTS_TEXT = (PROM / "alerts.yml").read_text()
ALERT_NAMES = re.findall(r"^\s*- alert:\s*(\S+)\s*$", ALERTS_TEXT, re.M)
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install {package}")
    return path


def _run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def _known(metric: str) -> bool:
    if metric in METRICS:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        base = metric.removesuffix(suffix)
        if base != metric and METRICS.get(base, ("",))[0] == "histogram":
            return True
    return False


# --- promtool ----------------------------------------------------------------------------------


def test_promtool_check_config() -> None:
    r = _run([_tool("promtool", "prometheus"), "check", "config", str(PROM / "prometheus.yml")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_promtool_check_rules() -> None:
    r = _run([_tool("promtool", "prometheus"), "check", "rules", str(PROM / "alerts.yml")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in r.stdout


def test_promtool_test_rules() -> None:
    r = _run([_tool("promtool", "prometheus"), "test", "rules", str(PROM / "alerts_test.yml")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_prometheus_scrapes_workers_and_gateways_on_their_ports() -> None:
    text = (PROM / "prometheus.yml").read_text()
    defaults = {s.name: s.default for s in SETTINGS}
    for job, port in (("livecue-worker", defaults["metrics_port"]), ("livecue-gateway", defaults["gateway_port"])):
        block = text.split(f"job_name: {job}", 1)[1].split("job_name:", 1)[0]
        assert re.search(rf"^\s*port:\s*{port}\s*$", block, re.M), f"{job} should be scraped on port {port}"
        assert "metrics_path: /metrics" in block
    assert re.search(r"^\s*- alerts\.yml\s*$", text, re.M)


def test_every_alert_has_severity_for_and_annotations() -> None:
    assert len(ALERT_NAMES) >= 6 and len(set(ALERT_NAMES)) == len(ALERT_NAMES)
    blocks = re.split(r"^\s*- alert:", ALERTS_TEXT, flags=re.M)[1:]
    for name, block in zip(ALERT_NAMES, blocks):
        assert re.search(r"^\s+for:\s*\d+[smh]\s*$", block, re.M), f"{name}: no for:"
        assert re.search(r"^\s+severity:\s*(critical|warning)\s*$", block, re.M), f"{name}: no severity"
        for key in ("summary", "description", "runbook"):
            assert re.search(rf"^\s+{key}:\s*\S", block, re.M), f"{name}: no {key} annotation"


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    tests = (PROM / "alerts_test.yml").read_text()
    for name in ALERT_NAMES:
        cases = re.findall(rf"alertname:\s*{name}\s*\n\s*exp_alerts:\s*(\[\])?", tests)
        assert any(c == "" for c in cases), f"{name} has no firing test case"
        assert any(c == "[]" for c in cases), f"{name} has no not-firing test case"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_a_runbook_section(name: str) -> None:
    docs = DOCS.read_text()
    assert re.search(rf"^#+ .*\b{name}\b", docs, re.M), f"docs/operations.md has no heading for {name}"
    anchor = name.lower()
    assert f"docs/operations.md#{anchor}" in ALERTS_TEXT


# --- metric names ------------------------------------------------------------------------------


def test_alerts_name_only_contract_metrics() -> None:
    used = set(METRIC_RE.findall(ALERTS_TEXT))
    assert used, "no livecue metric found in alerts.yml"
    unknown = sorted(m for m in used if not _known(m))
    assert not unknown, f"alerts.yml names metrics outside the contract: {unknown}"
    assert set(re.findall(r'job=~?"([^"]+)"', ALERTS_TEXT)) <= JOBS | {"livecue-worker|livecue-gateway"}


def _dashboard_exprs() -> list[str]:
    exprs = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            exprs += [t["expr"] for t in panel.get("targets", [])]
    return exprs


def test_dashboards_name_only_contract_metrics_and_labels() -> None:
    assert DASHBOARDS, "no dashboard JSON in deploy/grafana/dashboards"
    exprs = _dashboard_exprs()
    used = {m for e in exprs for m in METRIC_RE.findall(e)}
    unknown = sorted(m for m in used if not _known(m))
    assert not unknown, f"dashboards name metrics outside the contract: {unknown}"
    labels = {label for _, ls in METRICS.values() for label in ls} | TARGET_LABELS | {"le"}
    for e in exprs:
        for group in re.findall(r"\bby \(([^)]*)\)", e):
            assert {g.strip() for g in group.split(",")} <= labels, f"unknown label in {e!r}"


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    # promtool parses PromQL in rule files: wrap every dashboard query in a recording rule.
    exprs = _dashboard_exprs()
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "1m").replace("$__interval", "1m")
        lines += [f"      - record: dashboard:expr{i}", f"        expr: {json.dumps(e)}"]
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    r = _run([_tool("promtool", "prometheus"), "check", "rules", str(rules)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in r.stdout


def test_dashboard_covers_what_ops_watches() -> None:
    titles = " | ".join(
        p["title"].lower() for path in DASHBOARDS for p in json.loads(path.read_text())["panels"]
    )
    for words in ("throughput", "lag", "latency", "dead letters by reason", "cues by kind", "screens connected", "slow-client"):
        assert words in titles, f"no dashboard panel about {words!r}"
    exprs = " ".join(_dashboard_exprs())
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs


def test_dashboard_uses_the_provisioned_datasource() -> None:
    ds = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    uid = re.search(r"^\s*uid:\s*(\S+)\s*$", ds, re.M)
    assert uid and "url: http://prometheus:9090" in ds
    provider = (GRAFANA / "provisioning" / "dashboards" / "livecue.yml").read_text()
    assert "path: /var/lib/grafana/dashboards" in provider
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        var = next(v for v in dash["templating"]["list"] if v["type"] == "datasource")
        assert var["current"]["value"] == uid.group(1)
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids))
        for p in dash["panels"]:
            if p["type"] != "row":
                assert p["datasource"]["uid"] == "${" + var["name"] + "}", p["title"]


def test_docs_explain_every_metric() -> None:
    docs = DOCS.read_text()
    missing = [m for m in METRICS if f"`{m}" not in docs]
    assert not missing, f"docs/operations.md does not explain {missing}"


# --- docker-compose ------------------------------------------------------------------------------


def _compose_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECUE_")}
    env["GRAFANA_ADMIN_PASSWORD"] = "test-grafana-password"  # required by docker-compose.yml
    env.update(extra)
    return env


def test_docker_compose_config_is_valid() -> None:
    tool = _tool("docker-compose", "docker-compose")
    r = _run([tool, "-f", str(COMPOSE), "config", "-q"], env=_compose_env(LIVECUE_TOKEN_SECRET="test-secret"))
    assert r.returncode == 0, r.stdout + r.stderr
    services = _run([tool, "-f", str(COMPOSE), "config", "--services"], env=_compose_env(LIVECUE_TOKEN_SECRET="t"))
    assert set(services.stdout.split()) == {"kafka", "topic-init", "worker", "gateway", "prometheus", "grafana", "kafka-ui"}


def test_docker_compose_requires_the_token_secret() -> None:
    r = _run([_tool("docker-compose", "docker-compose"), "-f", str(COMPOSE), "config", "-q"], env=_compose_env())
    assert r.returncode != 0
    assert "LIVECUE_TOKEN_SECRET" in r.stderr


def _service_block(name: str) -> str:
    text = COMPOSE.read_text()
    m = re.search(rf"^  {re.escape(name)}:\n((?:    .*\n|\s*\n)+)", text, re.M)
    assert m, f"no service {name} in docker-compose.yml"
    return m.group(1)


def test_worker_service_is_scalable() -> None:
    worker = _service_block("worker")
    assert "ports:" not in worker and "container_name" not in worker
    assert "LIVECUE_METRICS_HOST: 0.0.0.0" in worker
    assert "condition: service_healthy" in worker
    assert "LIVECUE_TOKEN_SECRET: ${LIVECUE_TOKEN_SECRET:?" in _service_block("gateway")
    assert "LIVECUE_GATEWAY_HOST: 0.0.0.0" in _service_block("gateway")
    assert "kafka-topics.sh" in _service_block("kafka")


@pytest.mark.parametrize("path", [COMPOSE, ROOT / "deploy" / "Dockerfile"], ids=lambda p: p.name)
def test_every_livecue_env_var_is_a_real_setting(path: Path) -> None:
    real = {s.env for s in SETTINGS}
    named = set(re.findall(r"\bLIVECUE_[A-Z0-9_]+\b", path.read_text()))
    assert named, f"{path.name} names no LIVECUE_* variable"
    unknown = sorted(named - real)
    assert not unknown, f"{path.name} names env vars that livecue.config.SETTINGS does not have: {unknown}"


def test_dockerfile_is_slim_non_root_and_runs_livecue() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert "pip install ." in text
    assert re.search(r'^ENTRYPOINT \["livecue"\]', text, re.M)
