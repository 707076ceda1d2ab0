"""deploy/kubernetes/deployment.yaml run with ``podman kube play``, its probes checked.

The Deployment is played as written except for what only a local run needs: one replica, the
host's network (the local stack listens on loopback), the image built here, a free metrics
port, and a ConfigMap made from deploy/kubernetes/worker.env whose AWS endpoints, queue URLs,
region and credentials point at the local stack. The Secrets the Deployment reads (the
username hash key) are made as podman secrets with random values, as an operator makes them.

podman 4.3 turns an ``httpGet`` liveness probe into ``curl`` run inside the container, cannot
resolve a named port such as ``metrics`` (it probes port 0), and ignores startup and readiness
probes. The image has no curl, by design. So the played copy's liveness probe runs the image's
own ``feedback-worker healthcheck --liveness`` (the same /healthz), and each probe as written is
also checked from the host on its resolved port, the way a kubelet would.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import time
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from feedback_local.stack import LocalStack, QueuePair
from tests.image.container import http_get
from tests.image.podman import Podman, wait_for
from tests.image.report import Report
from tests.support.messages import verdict

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = ROOT / "deploy" / "kubernetes" / "deployment.yaml"
WORKER_ENV = ROOT / "deploy" / "kubernetes" / "worker.env"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
APPLY_TIMEOUT_S = 60.0
# Values of worker.env that name real AWS resources, replaced by the local stack's.
REGION_KEYS = ("AWS_REGION", "AWS_DEFAULT_REGION")


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def config_map(stack: LocalStack, queues: QueuePair, name: str) -> dict[str, Any]:
    data = env_file(WORKER_ENV)
    local = stack.env(queues)
    data["FEEDBACK_QUEUE_URL"] = local["FEEDBACK_QUEUE_URL"]
    data["FEEDBACK_DLQ_URL"] = local["FEEDBACK_DLQ_URL"]
    for key in REGION_KEYS:  # only those worker.env sets: a missing one must show
        if key in data:
            data[key] = stack.region
    # What IRSA or Pod Identity provides in a cluster, and the local endpoints.
    for key in (
        "AWS_ENDPOINT_URL_SQS",
        "FEEDBACK_COGNITO_ENDPOINTS",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_EC2_METADATA_DISABLED",
    ):
        data[key] = local[key]
    data["FEEDBACK_WAIT_TIME"] = "2"
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def secret_refs(container: dict[str, Any]) -> dict[str, list[str]]:
    """The Secrets the container's env reads, each with the keys it takes from it."""
    refs: dict[str, list[str]] = {}
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs.setdefault(ref["name"], []).append(ref["key"])
    return refs


def create_secrets(podman: Podman, refs: dict[str, list[str]], workdir: Path) -> None:
    """What `kubectl create secret generic --from-literal` gives a cluster (deploy/README.md),
    as podman secrets: podman reads a secretKeyRef from a JSON map of base64-encoded values."""
    for name, keys in refs.items():
        literal = {key: secrets.token_urlsafe(32) for key in keys}  # openssl rand -base64 32
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in literal.items()}
        path = workdir / f"secret-{name}.json"
        path.write_text(json.dumps(encoded))
        podman.run("secret", "rm", name, check=False)
        podman.run("secret", "create", name, str(path))


def played_copy(deployment: dict[str, Any], image: str, port: int) -> dict[str, Any]:
    played = copy.deepcopy(deployment)
    played["spec"]["replicas"] = 1
    pod = played["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    (container,) = pod["containers"]
    container["image"] = image
    container["imagePullPolicy"] = "Never"
    container.pop("ports", None)  # no port mappings on the host's network
    for item in container["env"]:
        if item["name"] == "FEEDBACK_METRICS_PORT":
            item["value"] = str(port)
        if item["name"] == "FEEDBACK_METRICS_BIND":
            item["value"] = "127.0.0.1"
    liveness = container["livenessProbe"]
    container["livenessProbe"] = {
        "exec": {"command": ["feedback-worker", "healthcheck", "--liveness"]},
        **{k: v for k, v in liveness.items() if k != "httpGet"},
    }
    return played


def probe_url(container: dict[str, Any], probe: dict[str, Any], port: int) -> str:
    """The URL a kubelet would GET, with a named port resolved through the container's ports."""
    get = probe["httpGet"]
    named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    resolved = named.get(get["port"], get["port"])
    assert int(resolved) > 0
    # The container port of the Deployment, moved to this run's free port.
    return f"http://127.0.0.1:{port}{get.get('path', '/')}"


def run_kube(
    podman: Podman, image: str, stack: LocalStack, report: Report, *, port: int, workdir: Path
) -> None:
    deployment = YAML(typ="safe").load(DEPLOYMENT.read_text())
    (original,) = deployment["spec"]["template"]["spec"]["containers"]
    name = original["envFrom"][0]["configMapRef"]["name"]
    queues = stack.create_queues(max_receive_count=5)
    kube_file = workdir / "deployment.yaml"
    map_file = workdir / "configmap.yaml"
    YAML(typ="safe").dump(played_copy(deployment, image, port), kube_file)
    YAML(typ="safe").dump(config_map(stack, queues, name), map_file)
    podman.run("kube", "play", "--down", str(kube_file), check=False)
    refs = secret_refs(original)
    create_secrets(podman, refs, workdir)
    started = time.monotonic()
    try:
        podman.run("kube", "play", "--configmap", str(map_file), str(kube_file))
        report.note(
            f"podman kube play {DEPLOYMENT.relative_to(ROOT)} (1 replica, host network, "
            f"ConfigMap from {WORKER_ENV.relative_to(ROOT)} pointed at the local stack)"
        )
        _check_pod(podman, original, stack, queues, report, port, started)
    finally:
        podman.run("kube", "play", "--down", str(kube_file), check=False)
        for secret in refs:
            podman.run("secret", "rm", secret, check=False)
        stack.delete_queues(queues)


def _container_name(podman: Podman) -> str:
    names = podman.run("ps", "--format", "{{.Names}}").stdout.split()
    matches = [
        n for n in names if n.startswith("cognito-feedback-worker-pod") and n.endswith("-worker")
    ]
    return matches[0] if matches else ""


def _check_pod(
    podman: Podman,
    original: dict[str, Any],
    stack: LocalStack,
    queues: QueuePair,
    report: Report,
    port: int,
    started: float,
) -> None:
    for probe_name in PROBES:
        probe = original[probe_name]
        url = probe_url(original, probe, port)
        budget = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
        took = wait_for(lambda u=url: http_get(u)[0] == 200, max(budget, 10))
        report.check(
            f"{probe_name} as written ({probe['httpGet']['path']} on port "
            f"{probe['httpGet']['port']}) passes, checked from the host",
            took is not None,
            f"{time.monotonic() - started:.1f} s after kube play"
            if took is not None
            else http_get(url)[1][:120],
        )
    name = _container_name(podman)
    health = podman.run("healthcheck", "run", name, check=False) if name else None
    report.check(
        "podman's own liveness check (the image's healthcheck command) reports healthy",
        health is not None and health.returncode == 0,
        (health.stdout + health.stderr).strip()[-120:] if health else "no worker container",
    )
    inspect = json.loads(podman.run("inspect", name).stdout)[0] if name else {}
    user = inspect.get("Config", {}).get("User", "")
    readonly = inspect.get("HostConfig", {}).get("ReadonlyRootfs")
    caps = inspect.get("EffectiveCaps") or []
    restarts = inspect.get("RestartCount", -1)
    report.check(
        "the pod runs as uid 10001 with a read-only root and no capabilities",
        user.startswith("10001") and readonly is True and not caps,
        f"user {user}, ReadonlyRootfs {readonly}, capabilities {caps or 'none'}",
    )
    pool = f"{stack.region}_Kube{port}"
    stack.emulator.seed(
        {"pools": [{"id": pool, "threat_protection": True, "users": {"dana": ["ev-1"]}}]}
    )
    sqs = stack._make_sqs_client()
    sqs.send_message(QueueUrl=queues.url, MessageBody=verdict(pool, "dana", "ev-1"))
    applied = wait_for(
        lambda: any(row["writes"] for row in stack.emulator.writes(pool)["events"]),
        APPLY_TIMEOUT_S,
        poll_s=0.5,
    )
    report.check(
        "the pod applies a verdict sent to its queue",
        applied is not None,
        f"{applied:.1f} s" if applied is not None else "",
    )
    detail = f"restarts {restarts}"
    if restarts and name:
        logs = podman.run("logs", "--tail", "3", name, check=False)
        detail += "; its last lines: " + (logs.stdout + logs.stderr).strip()[-600:]
    report.check("the pod's worker never restarted", restarts == 0, detail)
