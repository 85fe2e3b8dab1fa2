"""Alert rules, the Grafana dashboard and docs/operations.md agree with shared/metrics.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.deploy.loading import DASHBOARD, OPERATIONS, RULES, yaml_documents

METRIC_NAME = re.compile(r"\b(exports_[a-z0-9_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# FastStream's middleware metrics (shared.metrics.nats_metrics_middleware).
NATS_PREFIX = "exports_nats_"


def _ours() -> dict[str, str]:
    """Every metric family shared.metrics registers, by name, with its type."""
    families: dict[str, str] = {}
    for family in REGISTRY.collect():
        if family.name.startswith("exports_") and not family.name.startswith(NATS_PREFIX):
            families[family.name] = family.type
    return families


def _known(name: str, families: dict[str, str]) -> bool:
    if name.startswith(NATS_PREFIX):
        return True
    for suffix in ("", "_total", *HISTOGRAM_SUFFIXES):
        base = name.removesuffix(suffix) if suffix else name
        if base in families and (suffix == "" or name.endswith(suffix)):
            return True
    return False


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    (document,) = yaml_documents(RULES)
    assert document["kind"] == "PrometheusRule"
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def test_metric_names_follow_the_convention() -> None:
    families = _ours()
    assert len(families) >= 20
    for name in families:
        assert re.fullmatch(r"exports_[a-z0-9_]+", name), name
    # prometheus_client names counters without their _total suffix.
    for counter in ("exports_created", "exports_deletions", "exports_finished"):
        assert families[counter] == "counter"
    for histogram in (
        "exports_duration_seconds",
        "exports_http_request_duration_seconds",
        "exports_worker_batch_duration_seconds",
    ):
        assert families[histogram] == "histogram"


def test_alert_rules_parse_and_say_what_to_do(rules: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    required = {
        "ExportsFailureRateHigh",
        "ExportsHeartbeatStale",
        "ExportsRunningTooLong",
        "ExportsConsumerLagHigh",
        "ExportsStorageNearCap",
        "ExportsOutboxBacklog",
    }
    assert required <= set(names)
    operations = OPERATIONS.read_text(encoding="utf-8")
    for rule in rules:
        assert rule["expr"].strip(), rule["alert"]
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert f"### {rule['alert']}" in operations, (
            f"docs/operations.md must explain {rule['alert']}"
        )


def test_rules_and_dashboard_use_only_metrics_that_exist(rules: list[dict[str, Any]]) -> None:
    families = _ours()
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    expressions = [rule["expr"] for rule in rules]
    for panel in dashboard["panels"]:
        expressions += [target["expr"] for target in panel.get("targets", [])]
    assert len(expressions) > len(rules)
    for expression in expressions:
        for name in METRIC_NAME.findall(expression):
            assert _known(name, families), f"{name} is not defined in shared/metrics.py"


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "codex-exports"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job"} <= variables
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"


def test_every_metric_is_documented() -> None:
    operations = OPERATIONS.read_text(encoding="utf-8")
    for name, kind in _ours().items():
        shown = f"{name}_total" if kind == "counter" else name
        assert f"`{shown}" in operations, f"docs/operations.md must describe {shown}"


def test_the_metrics_port_is_the_one_deployed() -> None:
    from shared.settings import Settings

    assert Settings().metrics_port == 9100
