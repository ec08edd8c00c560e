"""docker-compose.yml as rendered by ``docker-compose config``: the ops tools are not exposed
to the world nor writable by default, Grafana needs a password from the environment, and the
gateway's secret comes from the environment. docker-compose must be installed (CI installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
ENV = {"LIVECUE_TOKEN_SECRET": "t" * 64, "GRAFANA_ADMIN_PASSWORD": "a-password-from-env"}


def _config(**env: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is not installed (apt-get install docker-compose)"
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("LIVECUE_", "GRAFANA_", "OPS_"))}
    return subprocess.run([tool, "-f", str(COMPOSE), "config"], env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def _service(rendered: str, name: str) -> str:
    m = re.search(rf"^  {re.escape(name)}:\n((?:    .*\n|\s*\n)+)", rendered, re.M)
    assert m, f"no service {name} in the rendered config"
    return m.group(1)


def test_ops_tools_bind_to_loopback_and_the_gateway_to_every_interface() -> None:
    r = _config(**ENV)
    assert r.returncode == 0, r.stderr
    for name, port in (("prometheus", 9090), ("grafana", 3000), ("kafka-ui", 8080)):
        block = _service(r.stdout, name)
        m = re.search(r"^    ports:\n((?:    - .*\n)+)", block, re.M)
        assert m, f"{name} publishes no port"
        published = re.findall(r"^    - (\S+)$", m.group(1), re.M)
        assert published and all(p.startswith("127.0.0.1:") for p in published), (name, published)
        assert f"127.0.0.1:{port}:{port}" in block
    gateway = _service(r.stdout, "gateway")
    assert "published: 8765" in gateway, "screens reach the gateway from the network"
    # An operator can open the ops tools on purpose.
    r = _config(**ENV, OPS_BIND="0.0.0.0")
    assert r.returncode == 0 and "0.0.0.0:3000:3000" in _service(r.stdout, "grafana")


def test_prometheus_has_no_lifecycle_api_and_kafka_ui_is_read_only() -> None:
    r = _config(**ENV)
    assert r.returncode == 0, r.stderr
    assert "--web.enable-lifecycle" not in _service(r.stdout, "prometheus")
    assert re.search(r'KAFKA_CLUSTERS_0_READONLY: "true"', _service(r.stdout, "kafka-ui"))


@pytest.mark.parametrize("missing", ["GRAFANA_ADMIN_PASSWORD", "LIVECUE_TOKEN_SECRET"])
def test_secrets_are_required_from_the_environment(missing: str) -> None:
    r = _config(**{k: v for k, v in ENV.items() if k != missing})
    assert r.returncode != 0 and missing in r.stderr, r.stderr
    rendered = _config(**ENV).stdout
    grafana = _service(rendered, "grafana")
    assert "GF_SECURITY_ADMIN_PASSWORD: a-password-from-env" in grafana
    assert 'GF_AUTH_ANONYMOUS_ENABLED: "false"' in grafana
    assert "admin/admin" not in COMPOSE.read_text() and ":-admin}" not in COMPOSE.read_text()
    assert "--token-secret" not in COMPOSE.read_text(), "a flag would show the secret in ps"
