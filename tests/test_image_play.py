"""The Deployment as `make image-test` plays it (tests/image/kube.py) gives the worker an
environment its own offline check-config accepts. `make image-test` runs the pod for real,
outside `make test`; this keeps its set-up in step with the worker's settings meanwhile."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from feedback_local.stack import LocalStack, QueuePair
from tests.image import kube

CHECK_TIMEOUT_S = 60


def test_the_played_deployment_s_environment_passes_the_worker_s_check_config(
    local_stack: LocalStack, queues: QueuePair, tmp_path: Path
) -> None:
    # Given the environment the played pod gets: its ConfigMap, its own env and its Secret
    deployment = YAML(typ="safe").load(kube.DEPLOYMENT.read_text())
    played = kube.played_copy(deployment, "localhost/cognito-feedback-worker:any", port=9464)
    (container,) = played["spec"]["template"]["spec"]["containers"]
    config_map = container["envFrom"][0]["configMapRef"]["name"]
    env = dict(kube.config_map(local_stack, queues, config_map)["data"])
    for item in container["env"]:
        from_secret = "secretKeyRef" in item.get("valueFrom", {})
        env[item["name"]] = secrets.token_urlsafe(32) if from_secret else item["value"]
    assert kube.secret_refs(container), "the Deployment reads its hash key from a Secret"

    # When the worker checks that configuration offline
    checked = subprocess.run(
        [sys.executable, "-m", "worker", "check-config"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        check=False,
    )

    # Then it accepts it
    assert checked.returncode == 0, checked.stdout + checked.stderr
