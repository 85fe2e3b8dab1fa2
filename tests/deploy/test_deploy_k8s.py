"""The Kubernetes base in deploy/k8s: schemas, scaling, probes, security, settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from shared.settings import Settings
from tests.deploy.loading import (
    K8S,
    REQUIRED_SETTINGS,
    SECRET_TEMPLATE,
    by_kind,
    containers,
    env_names,
    k8s_resources,
    kustomization,
    yaml_documents,
)

CORE_GROUPS = ("v1", "apps/v1", "batch/v1", "policy/v1")
WORKLOADS = ("codex-exports-api", "codex-exports-worker", "codex-exports-janitor")


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return k8s_resources()


@pytest.fixture(scope="module")
def deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return by_kind(objects, "Deployment")


def test_every_manifest_is_in_the_kustomization_except_the_secret_template() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert SECRET_TEMPLATE.name not in listed, "applying the base must never overwrite real secrets"
    assert listed == on_disk - {SECRET_TEMPLATE.name}


def test_core_kinds_pass_the_kubernetes_schemas(objects: list[dict[str, Any]]) -> None:
    core = [o for o in objects if o["apiVersion"] in CORE_GROUPS]
    core += yaml_documents(SECRET_TEMPLATE)
    version = kubernetes_validate.latest_version()
    for obj in core:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {err.message}")
    kinds = {o["kind"] for o in core}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "Job", "PodDisruptionBudget"} <= kinds


def test_keda_scales_the_worker_deployment_on_every_lanes_consumer_lag(
    objects: list[dict[str, Any]], deployments: dict[str, dict[str, Any]]
) -> None:
    from shared.lanes import LANE_INFO
    from shared.subjects import STREAM

    (scaled,) = by_kind(objects, "ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target["name"] == "codex-exports-worker"
    assert target.get("kind", "Deployment") == "Deployment"
    assert target["name"] in deployments
    assert spec["minReplicaCount"] == 1
    assert spec["maxReplicaCount"] >= spec["minReplicaCount"]
    # One trigger per fairness lane: a backlog of small exports adds pods as a large one does.
    triggers = {t["metadata"]["consumer"]: t for t in spec["triggers"]}
    assert len(triggers) == len(spec["triggers"])
    assert set(triggers) == {info.durable for info in LANE_INFO.values()}
    config = by_kind(objects, "ConfigMap")["codex-exports-config"]["data"]
    settings = Settings(
        **{
            k.removeprefix("EXPORTS_").lower(): v
            for k, v in config.items()
            if "SLOTS" in k or "CONCURRENCY" in k
        }
    )
    for info in LANE_INFO.values():
        trigger = triggers[info.durable]
        assert trigger["type"] == "nats-jetstream"
        meta = trigger["metadata"]
        assert meta["account"] == "$G"
        assert meta["stream"] == STREAM
        assert meta["natsServerMonitoringEndpoint"].endswith(":8222")
        # One pod per <that lane's slots> queued exports: the value the workers run with.
        assert meta["lagThreshold"] == str(info.slots(settings))
    # KEDA owns the replica count; a fixed one would fight it on every apply.
    assert "replicas" not in deployments["codex-exports-worker"]["spec"]


def test_replicas(deployments: dict[str, dict[str, Any]]) -> None:
    assert deployments["codex-exports-api"]["spec"]["replicas"] == 2
    assert deployments["codex-exports-janitor"]["spec"]["replicas"] == 1


@pytest.mark.parametrize("name", WORKLOADS)
def test_each_service_runs_its_command_with_probes_and_resources(
    deployments: dict[str, dict[str, Any]], name: str
) -> None:
    (container,) = containers(deployments[name])
    assert container["args"] == [name.removeprefix("codex-exports-")]
    assert container["image"] == "codex-exports"
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    expected_port = {"codex-exports-api": ("http", 8080)}.get(name, ("metrics", 9100))
    assert port_names == dict([expected_port])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"]["path"] == path
        assert container[probe]["httpGet"]["port"] == expected_port[0]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity.removesuffix(suffix)) * factor
    return float(quantity) / 1024**2


def test_worker_memory_leaves_headroom_over_its_250_mib_budget(
    deployments: dict[str, dict[str, Any]],
) -> None:
    (container,) = containers(deployments["codex-exports-worker"])
    assert _mebibytes(container["resources"]["limits"]["memory"]) >= 400
    assert _mebibytes(container["resources"]["requests"]["memory"]) >= 250


def test_worker_grace_period_lets_it_hand_running_exports_back(
    deployments: dict[str, dict[str, Any]],
) -> None:
    from services.worker.app import create_app
    from tests.deploy.regenerate_docs import doc_settings

    graceful = create_app(doc_settings()).broker.config.graceful_timeout
    pod = deployments["codex-exports-worker"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 2 * graceful


def _workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "Job")]


def test_every_pod_runs_restricted(objects: list[dict[str, Any]]) -> None:
    for workload in _workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{name} needs a writable /tmp"


def test_required_settings_reach_every_container(objects: list[dict[str, Any]]) -> None:
    for workload in _workloads(objects):
        for container in containers(workload):
            missing = set(REQUIRED_SETTINGS) - env_names(container, objects)
            assert not missing, f"{workload['metadata']['name']} lacks {sorted(missing)}"


def test_migrations_run_as_a_job(objects: list[dict[str, Any]]) -> None:
    (job,) = by_kind(objects, "Job").values()
    (container,) = containers(job)
    assert container["args"][0] == "migrate"
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


def _selects(selector: dict[str, str], workload: dict[str, Any]) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def test_disruption_budgets_cover_api_and_worker(
    objects: list[dict[str, Any]], deployments: dict[str, dict[str, Any]]
) -> None:
    budgets = by_kind(objects, "PodDisruptionBudget").values()
    for name in ("codex-exports-api", "codex-exports-worker"):
        covering = [
            b for b in budgets if _selects(b["spec"]["selector"]["matchLabels"], deployments[name])
        ]
        assert len(covering) == 1, name
    for deployment in deployments.values():
        # Each Deployment's selector must match its own pods and no other Deployment's.
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert [d for d in deployments.values() if _selects(selector, d)] == [deployment]


def test_services_reach_named_ports_of_their_pods(
    objects: list[dict[str, Any]], deployments: dict[str, dict[str, Any]]
) -> None:
    services = by_kind(objects, "Service")
    assert "codex-exports-api" in services
    for service in services.values():
        targets = [d for d in deployments.values() if _selects(service["spec"]["selector"], d)]
        assert len(targets) == 1, service["metadata"]["name"]
        ports = {p["name"] for c in containers(targets[0]) for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports


def test_secret_template_holds_only_refused_placeholders() -> None:
    (secret,) = yaml_documents(SECRET_TEMPLATE)
    values = secret["stringData"]
    assert "changeme" in values["EXPORTS_JWT_SECRET"]
    with pytest.raises(ValueError, match="EXPORTS_JWT_SECRET"):
        Settings(
            jwt_secret=values["EXPORTS_JWT_SECRET"], dev_mode=False
        ).require_production_secrets()
    for key, value in values.items():
        assert "changeme" in value, f"{key} must be an obvious placeholder"


# --- The charts' values: NATS (3 servers, JetStream on files) and MinIO (distributed) ---------

HELM = K8S / "helm"
_INSTALL = re.compile(
    r"helm upgrade --install (?P<release>\S+) (?P<chart>\S+) --namespace (?P<namespace>\S+)"
    r" --create-namespace -f (?P<values>\S+)"
)


def _install(path: Path) -> dict[str, str]:
    """The release, chart and namespace of the install command at the top of a values file."""
    (found,) = [m.groupdict() for m in _INSTALL.finditer(path.read_text(encoding="utf-8"))]
    assert found["values"] == str(path.relative_to(K8S.parents[1]))
    return found


def _config(objects: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = by_kind(objects, "ConfigMap")["codex-exports-config"]["data"]
    return data


def test_the_values_files_are_the_only_files_of_helm() -> None:
    assert sorted(p.name for p in HELM.iterdir()) == ["minio-values.yaml", "nats-values.yaml"]


def test_nats_values_make_a_cluster_of_three_with_jetstream_on_files(
    objects: list[dict[str, Any]],
) -> None:
    path = HELM / "nats-values.yaml"
    install = _install(path)
    assert install["chart"] == "nats/nats"
    (values,) = yaml_documents(path)
    config = values["config"]
    assert config["cluster"]["enabled"] is True
    assert config["cluster"]["replicas"] == 3
    jetstream = config["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["enabled"] is True
    assert jetstream["memoryStore"]["enabled"] is False
    assert config["monitor"] == {"enabled": True, "port": 8222}
    # The stream and its consumers have a replica on every server.
    replicas = _config(objects)["EXPORTS_STREAM_REPLICAS"]
    assert replicas == str(config["cluster"]["replicas"])
    assert int(replicas) >= 3
    # Message schedules (the janitor's timers) need NATS 2.12 or later.
    major, minor = (
        int(part) for part in values["container"]["image"]["tag"].split("-")[0].split(".")[:2]
    )
    assert (major, minor) >= (2, 12)


def test_the_services_and_keda_reach_the_nats_release(objects: list[dict[str, Any]]) -> None:
    install = _install(HELM / "nats-values.yaml")
    release, namespace = install["release"], install["namespace"]
    assert _config(objects)["EXPORTS_NATS_URL"] == (
        f"nats://{release}.{namespace}.svc.cluster.local:4222"
    )
    (scaled,) = by_kind(objects, "ScaledObject").values()
    endpoints = {t["metadata"]["natsServerMonitoringEndpoint"] for t in scaled["spec"]["triggers"]}
    # KEDA asks <server name>.<endpoint> for the consumer's leader: the headless Service.
    (values,) = yaml_documents(HELM / "nats-values.yaml")
    port = values["config"]["monitor"]["port"]
    assert endpoints == {f"{release}-headless.{namespace}.svc.cluster.local:{port}"}


def test_minio_values_run_it_distributed_with_the_services_bucket(
    objects: list[dict[str, Any]],
) -> None:
    path = HELM / "minio-values.yaml"
    install = _install(path)
    assert install["chart"] == "minio/minio"
    (values,) = yaml_documents(path)
    assert values["mode"] == "distributed"
    # Erasure coding needs at least 4 drives; one server per node.
    assert values["replicas"] * values["pools"] * values["drivesPerNode"] >= 4
    assert values["replicas"] >= 4
    assert values["persistence"]["enabled"] is True
    assert values["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
    config = _config(objects)
    assert config["EXPORTS_S3_ENDPOINT"] == (
        f"{install['release']}.{install['namespace']}.svc.cluster.local:9000"
    )
    assert config["EXPORTS_S3_BUCKET"] in {b["name"] for b in values["buckets"]}
    # Its root credentials come from a Secret, never from the values.
    assert values["existingSecret"]
    assert "rootPassword" not in values and "rootUser" not in values
    (user,) = values["users"]
    assert "secretKey" not in user and user["existingSecret"]


def test_the_catalog_replica_url_is_a_secret_and_optional() -> None:
    (secret,) = yaml_documents(SECRET_TEMPLATE)
    assert "EXPORTS_CATALOG_DATABASE_URL" in secret["stringData"]
    assert "EXPORTS_CATALOG_DATABASE_URL" not in REQUIRED_SETTINGS
    # Empty (left out of the Secret): the catalog is read on the primary.
    assert Settings(database_url="postgresql://p/codex").catalog_url == "postgresql://p/codex"
