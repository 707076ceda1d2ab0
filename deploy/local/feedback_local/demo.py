"""`make run`: drain a demo workload through the real worker on the local stack and report.

The workload is what production looks like on a bad day: valid verdicts across pools in three
regions, repeated verdicts for the same events, unknown users and events, a pool without
threat protection, malformed bodies, and an emulator that throttles and fails now and then.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from feedback_local.stack import LocalStack, QueuePair

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
USERS_PER_POOL = 40
EVENTS_PER_USER = 3
QUOTA_PER_REGION = 25.0
# Every failure mode the worker must survive, at rates that show up in a few hundred calls.
FAULTS = {"fault_internal_error": 0.05, "fault_untyped_throttle": 0.02, "latency_s": 0.02}
WORKER_TIMEOUT_S = 300.0
PROGRESS_EVERY_S = 1.0
SEND_BATCH = 10


def demo_workload(valid: int, pools: dict[str, str], rng: random.Random) -> list[tuple[str, str]]:
    """(expected fate, body) pairs: 'applied' or the ErrorCode the DLQ copy should carry."""
    items: list[tuple[str, str]] = []
    regions = list(REGIONS)
    for i in range(valid):
        pool = pools[regions[i % len(regions)]]
        user = f"user-{rng.randrange(USERS_PER_POOL)}"
        event = f"{user}-event-{rng.randrange(EVENTS_PER_USER)}"
        value = rng.choice(["Valid", "Invalid", "valid", "INVALID"])
        body = {"UserPoolId": pool, "Username": user, "EventId": event, "FeedbackValue": value}
        items.append(("applied", json.dumps(body)))
    first = pools[regions[0]]
    for i in range(5):
        body = {
            "UserPoolId": first,
            "Username": f"ghost-{i}",
            "EventId": "e1",
            "FeedbackValue": "Valid",
        }
        items.append(("UserNotFoundException", json.dumps(body)))
        body = {
            "UserPoolId": first,
            "Username": "user-1",
            "EventId": f"nope{i}",
            "FeedbackValue": "Valid",
        }
        items.append(("ResourceNotFoundException", json.dumps(body)))
    lite = pools.get("lite", first)
    for i in range(3):
        body = {
            "UserPoolId": lite,
            "Username": "user-0",
            "EventId": f"lite-{i}",
            "FeedbackValue": "Invalid",
        }
        items.append(("UserPoolAddOnNotEnabledException", json.dumps(body)))
    items += [
        ("MalformedJson", '{"UserPoolId": "us-east-1_x", '),
        ("MissingField", json.dumps({"UserPoolId": first, "Username": "user-1"})),
        (
            "InvalidFieldValue",
            json.dumps(
                {
                    "UserPoolId": first,
                    "Username": "user-1",
                    "EventId": "e",
                    "FeedbackValue": "Maybe",
                }
            ),
        ),
        ("NotAnObject", "[1, 2, 3]"),
    ]
    rng.shuffle(items)
    return items


def seed_pools(stack: LocalStack, rng: random.Random) -> dict[str, str]:
    pools: dict[str, str] = {}
    users = {
        f"user-{u}": [f"user-{u}-event-{e}" for e in range(EVENTS_PER_USER)]
        for u in range(USERS_PER_POOL)
    }
    specs: list[dict[str, Any]] = []
    for region in REGIONS:
        pool = f"{region}_Demo{rng.randrange(10**6):06d}"
        pools[region] = pool
        specs.append({"id": pool, "threat_protection": True, "users": users})
    lite = f"{REGIONS[0]}_Lite{rng.randrange(10**6):06d}"
    specs.append(
        {
            "id": lite,
            "threat_protection": False,
            "users": {"user-0": ["lite-0", "lite-1", "lite-2"]},
        }
    )
    stack.emulator.seed({"pools": specs})
    return {**pools, "lite": lite}


def send_bodies(stack: LocalStack, queues: QueuePair, bodies: list[str]) -> None:
    sqs = stack._make_sqs_client()
    for start in range(0, len(bodies), SEND_BATCH):
        chunk = bodies[start : start + SEND_BATCH]
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
        response = sqs.send_message_batch(QueueUrl=queues.url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"could not enqueue the demo workload: {response['Failed']}")


def dlq_codes(stack: LocalStack, queues: QueuePair) -> Counter[str]:
    sqs = stack._make_sqs_client()
    codes: Counter[str] = Counter()
    seen: set[str] = set()
    while True:
        response = sqs.receive_message(
            QueueUrl=queues.dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
        )
        messages = response.get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return codes
        for message in fresh:
            seen.add(message["MessageId"])
            attribute = message.get("MessageAttributes", {}).get("ErrorCode", {})
            codes[attribute.get("StringValue", "unknown")] += 1


def _progress(stack: LocalStack, total: int, stop: threading.Event) -> None:
    while not stop.wait(PROGRESS_EVERY_S):
        stats = stack.emulator.stats()
        line = (
            f"  calls {stats['calls']:>5}  applied {stats['successes']:>5}/{total}"
            f"  throttled {stats['throttles']:>4}  errors {sum(stats['errors'].values()):>4}"
        )
        print(line, file=sys.stderr, flush=True)


def _worker_log(path: Path) -> tuple[Counter[str], dict[str, Any]]:
    outcomes: Counter[str] = Counter()
    summary: dict[str, Any] = {}
    retries = 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "message.done":
            outcomes[record.get("outcome", "?")] += 1
            retries += max(0, int(record.get("attempts", 1)) - 1)
        elif record.get("event") == "worker.stopped":
            summary = record
    summary["retries"] = retries
    return outcomes, summary


def run_demo(*, messages: int = 300, seed: int = 7) -> int:
    rng = random.Random(seed)
    print("starting the local stack (moto SQS + Cognito emulator)...", file=sys.stderr)
    with LocalStack() as stack, tempfile.TemporaryDirectory() as tmp:
        stack.emulator.configure(quota_per_region=QUOTA_PER_REGION, **FAULTS)
        queues = stack.create_queues(max_receive_count=5)
        pools = seed_pools(stack, rng)
        workload = demo_workload(messages, pools, rng)
        send_bodies(stack, queues, [body for _, body in workload])
        expected = Counter(fate for fate, _ in workload)
        print(f"enqueued {len(workload)} messages across {len(REGIONS)} regions", file=sys.stderr)

        log_path = Path(tmp) / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FEEDBACK_"))}
        env |= stack.env(queues) | {"FEEDBACK_METRICS_PORT": "0", "FEEDBACK_LOG_FORMAT": "json"}
        stop = threading.Event()
        progress = threading.Thread(target=_progress, args=(stack, expected["applied"], stop))
        started = time.monotonic()
        progress.start()
        try:
            with log_path.open("w") as log_file:
                result = subprocess.run(
                    [sys.executable, "-m", "worker", "run", "--until-empty"],
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    timeout=WORKER_TIMEOUT_S,
                    check=False,
                )
        finally:
            stop.set()
            progress.join()
        elapsed = time.monotonic() - started
        outcomes, summary = _worker_log(log_path)
        dead = dlq_codes(stack, queues)
        stats = stack.emulator.stats()

    applied = outcomes.get("applied", 0) + outcomes.get("superseded", 0)
    quota = QUOTA_PER_REGION * len(REGIONS)
    superseded = outcomes.get("superseded", 0)
    errors = dict(stats["errors"])
    rows = [
        ("worker exit code", str(result.returncode)),
        ("messages enqueued", str(len(workload))),
        ("applied", f"{outcomes.get('applied', 0)} (+{superseded} superseded by a newer verdict)"),
        ("dead-lettered", str(sum(dead.values()))),
        *(
            (f"  {code}", f"{n} (expected {expected.get(code, 0)})")
            for code, n in sorted(dead.items())
        ),
        ("retries", f"{summary.get('retries', 0)} (Cognito throttled {stats['throttles']} calls)"),
        ("Cognito errors", ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"),
        ("elapsed", f"{elapsed:.1f} s"),
        (
            "throughput",
            f"{applied / elapsed:.1f} verdicts/s; quota {quota:.0f}/s "
            f"({len(REGIONS)} regions x {QUOTA_PER_REGION:.0f}/s); a run this short is "
            "bound by moto's SQS and the retries' backoff, see make bench for the quota",
        ),
    ]
    print("\n== demo summary ==")
    for label, value in rows:
        print(f"{label:<40} {value}")
    problems = []
    if result.returncode != 0:
        problems.append(f"the worker exited with {result.returncode}")
    if applied != expected["applied"]:
        problems.append(f"{expected['applied']} valid verdicts, {applied} applied")
    for code, count in expected.items():
        if code != "applied" and dead.get(code, 0) != count:
            problems.append(f"{code}: expected {count} dead-lettered, found {dead.get(code, 0)}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    if not problems:
        print("every message ended where it should: nothing lost, nothing wrongly dead-lettered")
    return 0 if not problems else 1
