"""deploy/k8s: valid against the Kubernetes schemas, one Deployment and ScaledObject per pool,
probes everywhere, and commands the real CLI accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from shared.messaging.names import Pool, queue_name
from workers.cli import app

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _resources() -> list[dict[str, Any]]:
    files = sorted(K8S.glob("*.yaml")) + sorted((K8S / "alternatives").glob("*.yaml"))
    return [doc for path in files if path.name != "kustomization.yaml" for doc in _load(path)]


def _of(kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in _resources() if r["kind"] == kind}


def _container(resource: dict[str, Any]) -> dict[str, Any]:
    [container] = resource["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize(
    "resource",
    [r for r in _resources() if r["kind"] not in KEDA_KINDS],
    ids=lambda r: f"{r['kind']}/{r['metadata']['name']}",
)
def test_resource_matches_the_kubernetes_schema(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_validator_is_live() -> None:
    broken = dict(_of("Deployment")["conveyor-ingress"])
    broken["spec"] = {**broken["spec"], "replicas": "two"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    [generated] = kustomization["secretGenerator"]
    assert generated["name"] == "conveyor-secrets"
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True


def test_each_pool_has_a_deployment_and_a_scaled_object_on_its_queue() -> None:
    deployments, scaled = _of("Deployment"), _of("ScaledObject")
    auth = _of("TriggerAuthentication")
    for pool in Pool:
        name = f"conveyor-worker-{pool.value}"
        args = _container(deployments[name])["args"]
        assert args[:3] == ["worker", "--pool", pool.value]
        spec = scaled[name]["spec"]
        assert scaled[name]["apiVersion"] == "keda.sh/v1alpha1"
        assert spec["scaleTargetRef"]["name"] == name
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        [trigger] = spec["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == queue_name(pool)
        assert trigger["metadata"]["mode"] in {"QueueLength", "MessageRate"}
        assert int(trigger["metadata"]["value"]) > 0
        assert trigger["authenticationRef"]["name"] in auth
    assert set(scaled) == {f"conveyor-worker-{p.value}" for p in Pool}
    [secret_ref] = next(iter(auth.values()))["spec"]["secretTargetRef"]
    assert (secret_ref["parameter"], secret_ref["name"]) == ("host", "conveyor-secrets")


def test_long_running_processes_have_both_probes_requests_and_enough_grace() -> None:
    config = _of("ConfigMap")["conveyor-config"]["data"]
    for name, deployment in _of("Deployment").items():
        container = _container(deployment)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, name
            port = ports[get["port"]]
            if name != "conveyor-ingress":
                assert str(port) == config["CONVEYOR_PROBE_PORT"], name
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert "memory" in container["resources"]["limits"], name
        if container["args"][0] == "worker":
            # Metrics bind the pod IP (the default is loopback, which no scraper reaches).
            assert _flag(container["args"], "--metrics-host") == "$(POD_IP)", name
            env = {e["name"]: e for e in container["env"]}
            assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", name
            grace = float(_flag(container["args"], "--grace-s"))
            pod = deployment["spec"]["template"]["spec"]
            # The supervisor kills at grace + 5 s; Kubernetes must not SIGKILL before that.
            assert pod["terminationGracePeriodSeconds"] >= grace + 10, name


def test_scheduler_runs_two_replicas_and_never_zero_during_a_rollout() -> None:
    scheduler = _of("Deployment")["conveyor-scheduler"]["spec"]
    assert scheduler["replicas"] == 2
    assert scheduler["strategy"]["rollingUpdate"]["maxUnavailable"] == 1


def test_commands_exist_in_the_conveyor_cli() -> None:
    runner = CliRunner()
    for resource in _resources():
        if resource["kind"] not in {"Deployment", "Job"}:
            continue
        args = _container(resource)["args"]
        result = runner.invoke(app, [args[0], "--help"])
        assert result.exit_code == 0, args
        for flag in (a for a in args[1:] if a.startswith("--")):
            assert flag in result.output, f"`conveyor {args[0]}` has no {flag}"
