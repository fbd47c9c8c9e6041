"""The deployment files (generated from the registry by `totem generate`) are valid: every Kubernetes object
against the official schema of a current Kubernetes (kubernetes-validate, strict: no unknown fields), KEDA's
ScaledObjects by the fields KEDA requires, the kustomize base's resources exist, and the compose file holds
together (every process type of the Procfile, anchors and dependencies resolved, health checks and volumes)
as `docker compose config` would check it (no Docker engine here)."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shared.registry import POOLS
from tests.support import ROOT

K8S_VERSION = "1.33.0"
K8S = ROOT / "deploy" / "k8s"


def _objects() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / "totem.yaml").read_text()) if doc]


@pytest.mark.parametrize("obj", [o for o in _objects() if o["kind"] != "ScaledObject"],
                         ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_every_kubernetes_object_validates_against_the_official_schema(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_one_deployment_per_process_type_with_probes_requests_and_a_disruption_budget() -> None:
    objects = _objects()
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    roles = {"web", "scheduler", "relay", *(pool.name for pool in POOLS)}
    assert set(deployments) == {f"totem-{role}" for role in roles}
    budgets = {o["spec"]["selector"]["matchLabels"]["role"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    assert budgets == roles
    for name, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert "livenessProbe" in container and container["resources"]["requests"]["cpu"], name
    web = deployments["totem-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    [service] = [o for o in objects if o["kind"] == "Service"]
    assert service["spec"]["selector"] == {"app": "totem", "role": "web"}


def test_each_pool_scales_on_its_own_queue_with_keda() -> None:
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in _objects() if o["kind"] == "ScaledObject"}
    assert set(scaled) == {f"totem-{pool.name}" for pool in POOLS}
    for pool in POOLS:
        obj = scaled[f"totem-{pool.name}"]
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        assert obj["spec"]["minReplicaCount"] >= 1 and obj["spec"]["maxReplicaCount"] == pool.max_replicas
        [trigger] = obj["spec"]["triggers"]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == f"totem:{pool.queue}"
        assert int(trigger["metadata"]["listLength"]) > 0


def test_the_kustomize_base_names_only_files_that_exist() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert all((K8S / resource).is_file() for resource in kustomization["resources"])
    assert {image["name"] for image in kustomization["images"]} == {"totem"}


def test_the_compose_file_runs_every_process_type_from_one_image_after_migrating() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # YAML merge keys resolve the anchors
    services = compose["services"]
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                    if line and not line.startswith("#"))
    process_types = set(procfile) - {"release", "web"}
    assert process_types <= set(services), process_types - set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name], name
    declared = set(compose.get("volumes") or {})
    for service in services.values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            assert source.startswith((".", "/")) or source in declared, source
    for secret in ("SYSTEM_TOKEN", "TOKEN_SECRET"):  # required, never defaulted
        assert re.search(rf"{secret}: \$\{{{secret}:\?", (ROOT / "docker-compose.yml").read_text()), secret


def test_the_image_is_built_in_two_stages_and_runs_as_an_unprivileged_user() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", dockerfile, re.M | re.I)
    assert len(stages) == 2 and all("slim" in image for image, _ in stages)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "--from=" in dockerfile  # the runtime stage copies what the build stage made
