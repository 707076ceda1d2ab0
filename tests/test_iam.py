"""The shipped IAM policies, proven by running every command under them.

A moto server of its own enforces IAM (feedback_local.iam_moto): the test makes one role per
shipped policy (worker, operator, producer) with the policy files as they are, attaches
deploy/iam/*.json, creates the queues the files name (cognito-feedback and
cognito-feedback-dlq in eu-west-1, account 123456789012), then turns enforcement on and runs
each command as a real process with each role's assumed-role credentials. Every command a role
is meant for must run without a single access denial; every other must be denied.

What this proves, and what it cannot: moto authorises each SQS, STS and CloudWatch call
against the role's identity-based policies, by action and queue ARN (batch calls as their
single-message actions, as AWS does). It ignores conditions on keys and resource-based
policies (the queue policies of the CloudFormation template), and KMS is not involved. Cognito
is not authorised at all: the emulator only checks signatures. For Cognito the test checks
instead that the worker policy, read by moto's own policy evaluator, allows both Cognito
actions the worker uses (AdminUpdateAuthEventFeedback, AdminListUserAuthEvents) on the pool
the worker called.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from feedback_local.stack import TEST_ACCESS_KEY, TEST_SECRET_KEY, EmulatorControl, LocalStack
from feedback_local.stack_process import MOTO_READY_PREFIX, ServerProcess
from tests.support.worker_process import TEST_WORKER_ENV, WorkerProcess, worker_command

ROOT = Path(__file__).resolve().parents[1]
IAM_DIR = ROOT / "deploy" / "iam"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
QUEUE_NAME = "cognito-feedback"
DLQ_NAME = "cognito-feedback-dlq"
POOL = "eu-west-1_EXAMPLE"  # the pool the worker policy names
POOL_ARN = f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/{POOL}"
HASH_KEY = "iam-test-hash-key-0123456789"
ROLES = {
    "worker": "worker-policy.json",
    "operator": "operator-policy.json",
    "producer": "producer-policy.json",
}
COMMAND_TIMEOUT_S = 60
GIVE_UP_AFTER_S = "2"
DENIAL_MARKERS = ("AccessDenied", "may not call", "is not authorized")
ALLOWED, DENIED = "allowed", "denied"


@dataclass(frozen=True)
class IamStack:
    """The IAM-enforcing moto, its queues, and what the roles need."""

    url: str
    queue_url: str
    dlq_url: str
    credentials: Mapping[str, Mapping[str, str]]  # role -> AWS_* variables
    admin: Any  # an SQS client with full rights, for setting up and looking

    def env(self, role: str, stack: LocalStack) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL_SQS": self.url,
            "AWS_ENDPOINT_URL_STS": self.url,
            "AWS_ENDPOINT_URL_CLOUDWATCH": self.url,
            "FEEDBACK_COGNITO_ENDPOINTS": f"*={stack.cognito_endpoint}",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "FEEDBACK_QUEUE_URL": self.queue_url,
            "FEEDBACK_DLQ_URL": self.dlq_url,
            "FEEDBACK_METRICS_PORT": "0",
            "FEEDBACK_LOG_FORMAT": "json",
            "FEEDBACK_USERNAME_HASH_KEY": HASH_KEY,
            **self.credentials[role],
        }

    def counts(self, url: str) -> tuple[int, int]:
        attributes = self.admin.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    def empty(self, url: str) -> None:
        """Delete every message (PurgeQueue works once a minute only)."""
        while messages := self.admin.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                self.admin.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        assert self.counts(url) == (0, 0), f"messages still hidden in {url}"

    def send(self, url: str, bodies: list[str], code: str | None = None) -> None:
        for body in bodies:
            attributes = {}
            if code is not None:
                attributes = {
                    "ErrorCode": {"DataType": "String", "StringValue": code},
                    "SourceMessageId": {"DataType": "String", "StringValue": str(uuid.uuid4())},
                }
            self.admin.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)


def _client(service: str, url: str, key: str, secret: str, token: str | None = None) -> Any:
    session = botocore.session.Session()
    session.set_config_variable("config_file", os.devnull)
    session.set_config_variable("credentials_file", os.devnull)
    return session.create_client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


def _set_up(url: str) -> IamStack:
    """Roles, policies, queues and credentials, made before enforcement starts."""
    iam = _client("iam", url, TEST_ACCESS_KEY, TEST_SECRET_KEY)
    sts = _client("sts", url, TEST_ACCESS_KEY, TEST_SECRET_KEY)
    sqs = _client("sqs", url, TEST_ACCESS_KEY, TEST_SECRET_KEY)
    dlq_url = sqs.create_queue(QueueName=DLQ_NAME)["QueueUrl"]
    redrive = {
        "deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{DLQ_NAME}",
        "maxReceiveCount": "10",
    }
    queue_url = sqs.create_queue(
        QueueName=QUEUE_NAME, Attributes={"RedrivePolicy": json.dumps(redrive)}
    )["QueueUrl"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    credentials: dict[str, dict[str, str]] = {}
    for role, file_name in ROLES.items():
        arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
            "Arn"
        ]
        policy = iam.create_policy(
            PolicyName=file_name.removesuffix(".json"),
            PolicyDocument=(IAM_DIR / file_name).read_text(),
        )["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=role, PolicyArn=policy)
        assumed = sts.assume_role(RoleArn=arn, RoleSessionName=f"{role}-test")["Credentials"]
        credentials[role] = {
            "AWS_ACCESS_KEY_ID": assumed["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": assumed["SecretAccessKey"],
            "AWS_SESSION_TOKEN": assumed["SessionToken"],
        }
    iam.create_user(UserName="admin")
    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(everything))
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    # Enforcement from the next request on (a form content type would hide the body).
    request = urllib.request.Request(
        f"{url}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    admin = _client("sqs", url, key["AccessKeyId"], key["SecretAccessKey"])
    return IamStack(url, queue_url, dlq_url, credentials, admin)


@pytest.fixture(scope="module")
def iam_stack() -> Iterator[IamStack]:
    server = ServerProcess(
        "moto (IAM enforced)",
        [sys.executable, "-m", "feedback_local.iam_moto"],
        MOTO_READY_PREFIX,
    )
    url = server.start(30)
    try:
        stack = _set_up(url)
        yield stack
        stack.admin.close()
    finally:
        server.stop()


@pytest.fixture
def iam(iam_stack: IamStack, emulator: EmulatorControl) -> IamStack:
    """Empty queues, and the emulator knowing each role's session key (moto's STS issued them;
    the emulator checks signatures only)."""
    for url in (iam_stack.queue_url, iam_stack.dlq_url):
        iam_stack.empty(url)
    sessions = {
        c["AWS_ACCESS_KEY_ID"]: c["AWS_SECRET_ACCESS_KEY"] for c in iam_stack.credentials.values()
    }
    emulator.configure(foreign_session_keys=sessions)
    return iam_stack


# -- running a command -------------------------------------------------------------------------


@dataclass
class Ran:
    code: int
    output: str

    @property
    def denied(self) -> bool:
        return any(marker in self.output for marker in DENIAL_MARKERS)


def cli(env: Mapping[str, str], *argv: str, stdin: str = "") -> Ran:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FEEDBACK_"))}
    result = subprocess.run(
        [sys.executable, "-m", "worker", *argv],
        env=base | dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    return Ran(result.returncode, result.stdout + result.stderr)


def verdict(user: str, event: str = "ev-1") -> str:
    return json.dumps(
        {"UserPoolId": POOL, "Username": user, "EventId": event, "FeedbackValue": "Invalid"}
    )


def _seed_user(emulator: EmulatorControl) -> str:
    user = f"user-{uuid.uuid4().hex[:8]}"
    emulator.seed({"pools": [{"id": POOL, "threat_protection": True, "users": {user: ["ev-1"]}}]})
    return user


def run_until_empty(iam: IamStack, env: Mapping[str, str], emulator: EmulatorControl) -> Ran:
    """One verdict to apply, one for an unknown user to dead-letter; drain."""
    iam.send(iam.queue_url, [verdict(_seed_user(emulator)), verdict("nobody")])
    process = WorkerProcess(
        TEST_WORKER_ENV | dict(env),
        worker_command("--until-empty", "--give-up-after", GIVE_UP_AFTER_S),
    ).start()
    try:
        code = _wait(process)
    finally:
        process.kill()
    ran = Ran(code, process.log_path.read_text())
    if code == 0 and not ran.denied:
        assert iam.counts(iam.queue_url) == (0, 0), ran.output
        assert iam.counts(iam.dlq_url) == (1, 0), ran.output
        assert emulator.writes(POOL)["events"], "the verdict was not applied"
    return ran


def run_then_sigterm(iam: IamStack, env: Mapping[str, str], emulator: EmulatorControl) -> Ran:
    """Slow calls, one at a time; SIGTERM while messages wait: they are released."""
    emulator.configure(latency_s=1.0)
    user = _seed_user(emulator)
    iam.send(iam.queue_url, [verdict(user)] + [verdict(user, f"ev-{n}") for n in range(2, 6)])
    process = WorkerProcess(
        TEST_WORKER_ENV | {**env, "FEEDBACK_CONCURRENCY": "1"},
        worker_command("--until-empty", "--give-up-after", GIVE_UP_AFTER_S),
    ).start()
    try:
        deadline = 20.0
        while not process.events("message.done") and not process.events("worker.gave_up"):
            deadline -= 0.1
            assert deadline > 0, process.log_tail()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        code = _wait(process)
    finally:
        process.kill()
    ran = Ran(code, process.log_path.read_text())
    if code == 0 and not ran.denied:
        assert any(
            record.get("outcome") == "released" for record in process.events("message.done")
        ), ran.output
        assert iam.counts(iam.queue_url)[1] == 0, "a released message is still hidden"
    return ran


def _wait(process: WorkerProcess) -> int:
    return process.wait_blocking(COMMAND_TIMEOUT_S)


def dead_letters(iam: IamStack) -> None:
    iam.send(iam.dlq_url, [verdict("u1"), verdict("u2")], "InternalErrorException")


def with_dead_letters(iam: IamStack, env: Mapping[str, str], *argv: str) -> Ran:
    dead_letters(iam)
    return cli(env, *argv)


def redrive(iam: IamStack, env: Mapping[str, str], *extra: str) -> Ran:
    dead_letters(iam)
    ran = cli(env, "dlq", "redrive", "--yes", *extra)
    if ran.code == 0 and not ran.denied:
        assert iam.counts(iam.queue_url) == (2, 0), ran.output
        assert iam.counts(iam.dlq_url) == (0, 0), ran.output
    return ran


def inspect_then_redrive(iam: IamStack, env: Mapping[str, str]) -> Ran:
    dead_letters(iam)
    inspected = cli(env, "dlq", "inspect")
    ran = cli(env, "dlq", "redrive", "--yes")
    both = Ran(max(inspected.code, ran.code), inspected.output + ran.output)
    if both.code == 0 and not both.denied:
        # Everything inspect read was given back, so the redrive moved it all.
        assert iam.counts(iam.queue_url) == (2, 0), both.output
    return both


Command = Callable[[IamStack, Mapping[str, str], EmulatorControl], Ran]
COMMANDS: dict[str, Command] = {
    "run --until-empty": run_until_empty,
    "run, SIGTERM while messages wait": run_then_sigterm,
    "check-config --aws": lambda iam, env, _: cli(env, "check-config", "--aws"),
    "enqueue": lambda iam, env, _: cli(
        env, "enqueue", "--pool", POOL, "--user", "u", "--event", "ev-1", "--value", "Valid"
    ),
    "status": lambda iam, env, _: with_dead_letters(iam, env, "status"),
    "dlq inspect": lambda iam, env, _: with_dead_letters(iam, env, "dlq", "inspect"),
    "dlq redrive --dry-run": lambda iam, env, _: with_dead_letters(
        iam, env, "dlq", "redrive", "--dry-run"
    ),
    "dlq redrive (StartMessageMoveTask)": lambda iam, env, _: redrive(iam, env),
    "dlq redrive --client-side": lambda iam, env, _: redrive(iam, env, "--client-side"),
    "dlq inspect, then dlq redrive": lambda iam, env, _: inspect_then_redrive(iam, env),
}
# command -> the roles meant to run it; every other role must be denied.
MEANT_FOR = {
    "run --until-empty": {"worker"},
    "run, SIGTERM while messages wait": {"worker"},
    "check-config --aws": {"worker", "operator"},
    "enqueue": {"producer", "operator"},  # operators send verdicts back when they redrive
    "status": {"operator"},
    "dlq inspect": {"operator"},
    "dlq redrive --dry-run": {"operator"},
    "dlq redrive (StartMessageMoveTask)": {"operator"},
    "dlq redrive --client-side": {"operator"},
    "dlq inspect, then dlq redrive": {"operator"},
}


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_runs_under_exactly_the_roles_meant_for_it(
    iam: IamStack, local_stack: LocalStack, emulator: EmulatorControl, command: str, role: str
) -> None:
    ran = COMMANDS[command](iam, iam.env(role, local_stack), emulator)
    if role in MEANT_FOR[command]:
        assert not ran.denied, f"{command} as {role} was denied:\n{ran.output[-3000:]}"
        assert ran.code == 0, f"{command} as {role} failed:\n{ran.output[-3000:]}"
    else:
        assert ran.denied, f"{command} as {role} was not denied:\n{ran.output[-3000:]}"


def test_every_command_and_role_is_in_the_table() -> None:
    assert MEANT_FOR.keys() == COMMANDS.keys()
    assert all(roles <= ROLES.keys() for roles in MEANT_FOR.values())


@pytest.mark.parametrize(
    "action", ["cognito-idp:AdminUpdateAuthEventFeedback", "cognito-idp:AdminListUserAuthEvents"]
)
def test_the_worker_policy_allows_the_cognito_actions_on_its_pool_and_no_other(
    action: str,
) -> None:
    from moto.iam.access_control import IAMPolicy, PermissionResult

    policy = IAMPolicy((IAM_DIR / "worker-policy.json").read_text())
    assert policy.is_action_permitted(action, POOL_ARN) == PermissionResult.PERMITTED
    other = POOL_ARN.replace(POOL, "eu-west-1_Other")
    assert policy.is_action_permitted(action, other) != PermissionResult.PERMITTED
    assert policy.is_action_permitted("cognito-idp:AdminDeleteUser", POOL_ARN) != (
        PermissionResult.PERMITTED
    )
