"""The deployment files (generated from the registry by `totem generate`) are valid: every Kubernetes object
against the official schema of a current Kubernetes (kubernetes-validate, strict: no unknown fields), KEDA's
ScaledObjects by the fields KEDA requires, the kustomize base's resources exist, the RabbitMQ overlay (applied here
as kustomize would: its RFC 6902 patches on the base) scales every pool on its own queue, and the compose file holds
together (every process type of the Procfile, anchors and dependencies resolved, health checks and volumes)
as `docker compose config` would check it (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonpatch
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


# What a kustomize patch target may select by (its Selector); anything else is a typo kustomize would refuse.
SELECTOR_FIELDS = {"group", "version", "kind", "name", "namespace", "labelSelector", "annotationSelector"}


def _selects(target: dict[str, str], obj: dict[str, Any]) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    assert set(target) <= SELECTOR_FIELDS and not {"labelSelector", "annotationSelector"} & set(target), target
    wanted = {"group": group, "version": version, "kind": obj["kind"], "name": obj["metadata"]["name"],
              "namespace": obj["metadata"].get("namespace")}
    return all(wanted[field] == value for field, value in target.items())


def _built_overlay(overlay: Path) -> list[dict[str, Any]]:
    """``kustomize build`` of an overlay whose resources are the base and whose patches are RFC 6902: each
    patch applied to the one base object its target selects (a target selecting none is a mistake)."""
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert [(overlay / r).resolve() for r in kustomization["resources"]] == [K8S], "the overlay's base is deploy/k8s"
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "patches"}, "only resources and patches here"
    objects = _objects()
    for entry in kustomization["patches"]:
        selected = [i for i, obj in enumerate(objects) if _selects(entry["target"], obj)]
        assert len(selected) == 1, (entry["target"], len(selected))
        operations = yaml.safe_load(entry["patch"])
        assert isinstance(operations, list), "an RFC 6902 patch is a list of operations"
        objects[selected[0]] = jsonpatch.apply_patch(objects[selected[0]], operations)
    return objects


def test_the_rabbitmq_overlay_scales_each_pool_on_its_own_rabbitmq_queue() -> None:
    base, built = _objects(), _built_overlay(K8S / "rabbitmq")
    assert [o for o in built if o["kind"] != "ScaledObject"] == [o for o in base if o["kind"] != "ScaledObject"]
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in built if o["kind"] == "ScaledObject"}
    deployments = {o["metadata"]["name"]: o for o in built if o["kind"] == "Deployment"}
    assert set(scaled) == {f"totem-{pool.name}" for pool in POOLS}
    for pool in POOLS:
        obj = scaled[f"totem-{pool.name}"]
        assert obj["spec"]["maxReplicaCount"] == pool.max_replicas  # the rest of the base's object is kept
        [trigger] = obj["spec"]["triggers"]
        metadata = trigger["metadata"]
        assert trigger["type"] == "rabbitmq", pool.name
        assert all(isinstance(v, str) for v in metadata.values()), metadata  # KEDA's metadata: map of strings
        # Dramatiq's RabbitMQ queue is named as the queue itself (not its .DQ delay or .XQ dead-letter queue)
        assert metadata["queueName"] == pool.queue
        assert metadata["mode"] == "QueueLength" and float(metadata["value"]) > 0
        assert metadata["protocol"] == "amqp"
        # KEDA needs the server: here from an environment variable of the scaled Deployment's container, which
        # takes BROKER_URL from the secret every process reads
        assert metadata["hostFromEnv"] == "BROKER_URL" and "host" not in metadata
        [container] = deployments[obj["spec"]["scaleTargetRef"]["name"]]["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "totem-secrets"}} in container["envFrom"]
    notes = (K8S / "rabbitmq" / "kustomization.yaml").read_text()
    assert "BROKER_URL=amqp://" in notes and "totem-secrets" in notes


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
