"""Read the files in ``deploy/`` the way their tools would, without the tools or a cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = DEPLOY / ".env.example"
SECRET_TEMPLATE = K8S / "secret.template.yaml"
RULES = K8S / "prometheus-rules.yaml"
DASHBOARD = DEPLOY / "grafana" / "codex-exports.json"
OPERATIONS = ROOT / "docs" / "operations.md"

REQUIRED_SETTINGS = (
    "EXPORTS_DATABASE_URL",
    "EXPORTS_NATS_URL",
    "EXPORTS_S3_ENDPOINT",
    "EXPORTS_S3_ACCESS_KEY",
    "EXPORTS_S3_SECRET_KEY",
    "EXPORTS_JWT_SECRET",
)
SERVICE_COMMANDS = ("api", "worker", "janitor", "migrate")


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def kustomization() -> dict[str, Any]:
    return yaml_documents(K8S / "kustomization.yaml")[0]


def k8s_resources() -> list[dict[str, Any]]:
    """Every object the kustomization lists, in the kustomization's namespace (what
    ``kubectl kustomize deploy/k8s`` emits, less the common labels and the image rewrite)."""
    kust = kustomization()
    objects: list[dict[str, Any]] = []
    for name in kust["resources"]:
        for doc in yaml_documents(K8S / name):
            if doc["kind"] != "Namespace" and "namespace" in kust:
                doc.setdefault("metadata", {})["namespace"] = kust["namespace"]
            objects.append(doc)
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    pod = workload["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def env_names(container: dict[str, Any], objects: list[dict[str, Any]]) -> set[str]:
    """Variable names a container gets: ``env`` plus every key of its ``envFrom`` sources
    (ConfigMaps from the kustomization, the Secret from its template)."""
    config_maps = by_kind(objects, "ConfigMap")
    secrets = by_kind(yaml_documents(SECRET_TEMPLATE), "Secret")
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            names |= set(config_maps[source["configMapRef"]["name"]]["data"])
        if "secretRef" in source:
            secret = secrets[source["secretRef"]["name"]]
            names |= set(secret.get("stringData", {})) | set(secret.get("data", {}))
    return names


def dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` against ``env``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if name in env and (env[name] or not (operator or "").startswith(":")):
            return env[name]
        if operator and operator.endswith("-"):
            return argument
        raise KeyError(f"compose needs {name}: {argument or 'unset'}")

    return _INTERPOLATION.sub(substitute, value)


def compose() -> dict[str, Any]:
    """compose.yaml with its ``.env`` interpolated from ``.env.example``."""
    return interpolate(yaml_documents(COMPOSE)[0], dotenv(ENV_EXAMPLE))


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}
