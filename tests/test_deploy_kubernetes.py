"""deploy/kubernetes: two replicas on one PostgreSQL state from a Secret, probes on /healthz, a
stop grace that lets the calls in flight finish, and a config that loads as the pods load it."""

from __future__ import annotations

from pathlib import Path

import yaml

from connector.config import load_settings

FOLDER = Path(__file__).parent.parent / "deploy" / "kubernetes"


def _load(name: str) -> dict:
    return yaml.safe_load((FOLDER / name).read_text())


def test_two_replicas_share_the_state_url_from_a_secret_with_probes_on_healthz():
    deployment = _load("deployment.yaml")
    assert deployment["kind"] == "Deployment" and deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 70 and pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name, key in (("CONNECTOR_STATE__URL", "state-url"), ("CONNECTOR_STATE__PASSWORD", "state-password"), ("CONNECTOR_JOBYLON__APP_KEY", "app-key")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "jobylon-connector", "key": key}, name
    port = int(env["CONNECTOR_OBSERVABILITY__METRICS_PORT"]["value"])
    assert container["ports"][0]["containerPort"] == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    assert container["args"][-1] == "run"


def test_the_config_map_loads_with_the_secret_values_and_holds_none_itself(tmp_path, monkeypatch):
    config_map = _load("configmap.yaml")
    text = config_map["data"]["config.toml"]
    secret = _load("secret.example.yaml")["stringData"]
    assert secret["state-password"] not in text
    path = tmp_path / "config.toml"
    path.write_text(text)
    monkeypatch.setenv("CONNECTOR_STATE__URL", secret["state-url"])
    monkeypatch.setenv("CONNECTOR_STATE__PASSWORD", "pw-from-the-secret")
    monkeypatch.setenv("CONNECTOR_JOBYLON__APP_KEY", "key-from-the-secret-0123")
    settings = load_settings(str(path))
    assert settings.state.url is not None and settings.state.url.get_secret_value() == secret["state-url"]
    assert settings.jobylon.app_key.get_secret_value() == "key-from-the-secret-0123"
    assert "pw-from-the-secret" in settings.secrets() and secret["state-url"] in settings.secrets()
