"""What operators watch: the alerting rules (unit-tested with promtool), the PrometheusRule and
ServiceMonitor, the Grafana dashboard, the build-info and region-outage metrics, and the
CloudWatch metrics the worker logs (the embedded metric format)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from ruamel.yaml import YAML

from feedback_local.stack import LocalStack, QueuePair
from tests.support.worker_process import local_worker
from worker import __version__, emf, metrics
from worker.outcome import Kind, Outcome
from worker.region_health import DOWN_AFTER_FAILURES, RegionHealth

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules.test.yaml"
MONITORING = ROOT / "deploy" / "kubernetes" / "monitoring"
METRICS_SERVICE = ROOT / "deploy" / "kubernetes" / "service.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
# Where `make promtool` puts the promtool of Debian's prometheus package.
LOCAL_PROMTOOL = ROOT / ".venv" / "tools" / "promtool"
JOB = "cognito-feedback-worker"
PROMETHEUS_OWN = frozenset({"up"})
TOOL_TIMEOUT_S = 60
RUN_TIMEOUT_S = 60


def _yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def _promtool() -> str:
    found = shutil.which("promtool") or (str(LOCAL_PROMTOOL) if LOCAL_PROMTOOL.exists() else None)
    if found is None:
        pytest.skip(
            "promtool is not installed: `make promtool` takes it from Debian's prometheus "
            "package (apt-get download), or install that package"
        )
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False, cwd=ROOT
    )


def _rule_exprs() -> list[str]:
    return [rule["expr"] for group in _yaml(RULES)["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def _exported_names() -> set[str]:
    """Every series name the worker's registry can export, with the suffixes of each type."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names: set[str] = set()
    for family in prometheus_client.REGISTRY.collect():
        for suffix in suffixes.get(family.type, ()):
            names.add(family.name + suffix)
    return names


# -- the rules ---------------------------------------------------------------------------------


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = _promtool()

    checked = _run(promtool, "check", "rules", str(RULES))
    tested = _run(promtool, "test", "rules", str(RULES_TEST))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test_that_sees_it_fire() -> None:
    alerts = {rule["alert"] for group in _yaml(RULES)["groups"] for rule in group["rules"]}
    fired = {
        case["alertname"]
        for test in _yaml(RULES_TEST)["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert alerts == fired
    assert alerts >= {
        "FeedbackWorkerDown",
        "FeedbackWorkerDeadLettersGrowing",
        "FeedbackWorkerBacklogOld",
        "FeedbackWorkerThrottled",
        "FeedbackWorkerPaused",
        "FeedbackWorkerRegionOutage",
    }


def test_the_dashboards_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = _promtool()
    recording = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{n}", "expr": expr}
                    for n, expr in enumerate(_dashboard_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(json.dumps(recording))

    checked = _run(promtool, "check", "rules", str(path))

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rules_and_dashboard_use_only_metrics_the_worker_exports_of_its_job() -> None:
    exported = _exported_names() | PROMETHEUS_OWN
    for expr in _rule_exprs() + _dashboard_exprs():
        used = set(re.findall(r"\b(feedback_worker_[a-z_]+|up)\b(?=\{)", expr))
        assert used, expr
        assert used <= exported, f"{sorted(used - exported)} in {expr}"
        for selector in re.findall(r"\{([^}]*)\}", expr):
            if not selector.startswith("le="):
                assert f'job="{JOB}"' in selector, expr


def test_the_prometheusrule_holds_exactly_the_rules_file() -> None:
    rule = _yaml(MONITORING / "prometheusrule.yaml")
    assert rule["kind"] == "PrometheusRule"
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == _yaml(RULES)["groups"]


def test_the_servicemonitor_scrapes_the_metrics_service_as_the_job_the_rules_name() -> None:
    monitor = _yaml(MONITORING / "servicemonitor.yaml")
    service = _yaml(METRICS_SERVICE)
    (endpoint,) = monitor["spec"]["endpoints"]

    assert monitor["kind"] == "ServiceMonitor"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert {"action": "replace", "targetLabel": "job", "replacement": JOB} in endpoint[
        "relabelings"
    ]
    kustomization = _yaml(MONITORING / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == ["prometheusrule.yaml", "servicemonitor.yaml"]


# -- the dashboard -------------------------------------------------------------------------


def test_the_dashboard_is_grafana_json_over_a_chosen_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]

    assert dashboard["uid"] == JOB
    assert isinstance(dashboard["schemaVersion"], int)
    assert [v["type"] for v in dashboard["templating"]["list"]] == ["datasource"]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()


def test_the_dashboard_shows_the_quota_the_backlog_the_failures_and_the_state() -> None:
    used = " ".join(_dashboard_exprs())
    for name in (
        "feedback_worker_messages_applied_total",
        "feedback_worker_throttles_total",
        "feedback_worker_allowed_rate",
        "feedback_worker_message_age_at_apply_seconds_bucket",
        "feedback_worker_messages_dead_lettered_total",
        "feedback_worker_paused",
        "feedback_worker_region_down",
        "feedback_worker_build_info",
    ):
        assert name in used, name


# -- metrics of the worker -------------------------------------------------------------------


def test_build_info_says_which_version_runs() -> None:
    exposition = prometheus_client.generate_latest().decode()
    match = re.search(r"^feedback_worker_build_info\{([^}]*)\} 1\.0$", exposition, re.MULTILINE)
    assert match, "feedback_worker_build_info is not exported"
    assert f'version="{__version__}"' in match.group(1)
    assert 'python="3.' in match.group(1)


def test_region_down_follows_a_regions_outage_and_recovery() -> None:
    health = RegionHealth("ap-south-2")
    failure = Outcome(Kind.TRANSIENT, "InternalErrorException")

    for i in range(DOWN_AFTER_FAILURES):
        health.record(failure, f"message-{i}")
    down = metrics.REGION_DOWN.labels("ap-south-2")._value.get()
    health.record(Outcome(Kind.SUCCESS), "message-0")

    assert down == 1
    assert metrics.REGION_DOWN.labels("ap-south-2")._value.get() == 0


# -- CloudWatch metrics in the logs (ECS) -----------------------------------------------------


def _assert_valid_emf(document: dict[str, Any]) -> None:
    """The embedded metric format's rules: _aws with a millisecond Timestamp and directives
    whose every dimension and metric is a member of the root."""
    directive = document["_aws"]
    assert isinstance(directive["Timestamp"], int)
    assert directive["Timestamp"] > 1_600_000_000_000
    for metric_set in directive["CloudWatchMetrics"]:
        assert metric_set["Namespace"] == emf.NAMESPACE
        for dimension_set in metric_set["Dimensions"]:
            for dimension in dimension_set:
                assert isinstance(document[dimension], str)
        for metric in metric_set["Metrics"]:
            assert isinstance(document[metric["Name"]], int | float)
            assert metric["Unit"] == "Count"


async def test_a_worker_logs_its_state_as_cloudwatch_metrics(
    local_stack: LocalStack, queues: QueuePair
) -> None:
    process = local_worker(local_stack, queues, "--until-empty").start()
    try:
        assert await process.wait(RUN_TIMEOUT_S) == 0, process.log_tail()
    finally:
        process.kill()
    [line] = process.events("worker.metrics")[:1]
    _assert_valid_emf(line)
    assert line[emf.DIMENSION] == queues.url.rsplit("/", 1)[1]
    assert line["Paused"] == 0
    assert line["Ready"] == 1
