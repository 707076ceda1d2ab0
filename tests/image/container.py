"""The image as a container: host network, read-only root, no capabilities, against the local
stack on this host. Health, the healthcheck command, the user, the filesystem, a drained demo
workload, a clean stop on SIGTERM, and the spans it exported."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from feedback_local.demo import dlq_codes
from feedback_local.stack import LocalStack, QueuePair
from tests.image.podman import Podman, wait_for
from tests.image.report import Report
from tests.image.workload import APPLIED, Sent, producer_spans, send_demo_workload
from tests.support.otlp import Collector
from worker.record import Settlement

RUNTIME_UID = "10001"
START_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 300.0
STOP_GRACE_S = 45
SPAN_FLUSH_S = 0.5
CALL_SPAN = "CognitoIdentityProvider/AdminUpdateAuthEventFeedback"
# Written from inside the container: each must fail because the root filesystem is read-only.
WRITE_PROBE = (
    "import errno, sys\n"
    "for path in ('/opt/venv/probe', '/etc/probe', '/probe'):\n"
    "    try:\n"
    "        open(path, 'w').close()\n"
    "    except OSError as exc:\n"
    "        print(path, errno.errorcode[exc.errno])\n"
    "    else:\n"
    "        print(path, 'WRITTEN')\n"
)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return 0, ""


def worker_env(
    stack: LocalStack, queues: QueuePair, port: int, collector: Collector
) -> dict[str, str]:
    return {
        **stack.env(queues),
        "FEEDBACK_METRICS_PORT": str(port),
        "FEEDBACK_METRICS_BIND": "127.0.0.1",
        "FEEDBACK_WAIT_TIME": "2",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "500",
    }


def log_records(podman: Podman, name: str) -> list[dict[str, Any]]:
    logs = podman.run("logs", name, check=False)
    out = logs.stdout + logs.stderr  # the worker logs to stderr
    records = []
    for line in out.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def run_container(
    podman: Podman,
    image: str,
    stack: LocalStack,
    collector: Collector,
    report: Report,
    *,
    port: int,
    messages: int,
) -> None:
    name = f"cognito-feedback-image-test-{port}"
    queues = stack.create_queues(max_receive_count=5)
    env = worker_env(stack, queues, port, collector)
    podman.remove_container(name)
    argv = ["run", "--detach", "--name", name, "--network", "host", "--read-only"]
    argv += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    started = time.monotonic()
    podman.run(*argv, image, "run")
    try:
        _check_running(podman, name, port, started, report)
        _check_drain(podman, name, stack, queues, collector, report, messages)
    finally:
        podman.remove_container(name)
        stack.delete_queues(queues)


def _check_running(podman: Podman, name: str, port: int, started: float, report: Report) -> None:
    base = f"http://127.0.0.1:{port}"
    first: dict[str, float] = {}

    def both_up() -> bool:
        for path in ("/healthz", "/readyz"):
            if path not in first and http_get(base + path)[0] == 200:
                first[path] = time.monotonic() - started
        return len(first) == 2

    wait_for(both_up, START_TIMEOUT_S, poll_s=0.02)
    for path in ("/healthz", "/readyz"):
        status, body = http_get(base + path)
        report.check(f"{path} answers 200", status == 200, body[:120])
        if path in first:
            report.fact(f"start-up: podman run to {path} 200", f"{first[path]:.2f} s")

    for args, label in (([], "readiness"), (["--liveness"], "liveness")):
        result = podman.run("exec", name, "feedback-worker", "healthcheck", *args, check=False)
        report.check(
            f"`feedback-worker healthcheck {' '.join(args)}`".replace(" `", "`")
            + f" inside the container ({label})",
            result.returncode == 0,
            (result.stdout + result.stderr).strip()[:120],
        )
    result = podman.run("healthcheck", "run", name, check=False)
    report.check(
        "the image's HEALTHCHECK (podman healthcheck run)",
        result.returncode == 0,
        (result.stdout + result.stderr).strip()[-120:] or "healthy",
    )

    ids = podman.run(
        "exec", name, "python", "-c", "import os; print(os.getuid(), os.getgid())", check=False
    ).stdout.split()
    report.check(
        "the worker runs as a non-root user", ids == [RUNTIME_UID, RUNTIME_UID], f"uid gid {ids}"
    )
    top = podman.run("top", name, "user", "huser", "args", check=False).stdout.strip()
    report.note("podman top: " + " | ".join(top.splitlines()[1:3]))
    readonly = podman.run(
        "inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name
    ).stdout.strip()
    writes = podman.run("exec", name, "python", "-c", WRITE_PROBE, check=False).stdout.split("\n")
    refused = [line for line in writes if line.endswith("EROFS")]
    report.check(
        "the root filesystem is read-only",
        readonly == "true" and len(refused) == 3,
        f"ReadonlyRootfs={readonly}; " + "; ".join(line for line in writes if line),
    )


def _check_drain(
    podman: Podman,
    name: str,
    stack: LocalStack,
    queues: QueuePair,
    collector: Collector,
    report: Report,
    messages: int,
) -> None:
    spans = producer_spans()
    sent = send_demo_workload(stack, queues, spans, messages)
    report.note(
        f"enqueued the demo workload: {sent.total} messages ({sent.traced} through the producer "
        f"library with a traceparent each, {sent.raw} malformed bodies sent raw), with the "
        "emulator injecting throttles, 5xx and latency"
    )
    expected_dead = sent.dead_letters
    drained = time.monotonic()

    dead: Counter[str] = Counter()

    def settled() -> bool:
        # Each read of the DLQ hides what it read for a minute: count as the copies arrive.
        dead.update(dlq_codes(stack, queues))
        return len(_final_lines(log_records(podman, name))) >= sent.total and dead == expected_dead

    took = wait_for(settled, DRAIN_TIMEOUT_S, poll_s=1.0)
    report.check(
        "the demo workload drains to the expected end state",
        took is not None,
        f"{time.monotonic() - drained:.1f} s",
    )
    report.check(
        "dead-lettered exactly the bad verdicts, with their reasons",
        dead == expected_dead,
        ", ".join(f"{code} {n}" for code, n in sorted(dead.items())),
    )
    stopping = time.monotonic()
    podman.run("stop", "--time", str(STOP_GRACE_S), name, timeout=STOP_GRACE_S + 30)
    stopped_in = time.monotonic() - stopping
    exit_code = podman.run("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    report.check("SIGTERM stops it cleanly (exit 0)", exit_code == "0", f"{stopped_in:.1f} s")

    records = log_records(podman, name)
    done = _final_lines(records)
    handed_back = Counter(
        str(r.get("outcome")) for r in records if r.get("event") == "message.done"
    ) - Counter(str(r.get("outcome")) for r in done)
    applied = sum(1 for r in done if r.get("outcome") in (APPLIED, Settlement.SUPERSEDED))
    once = len({r.get("message_id") for r in done}) == len(done) == sent.total
    report.check(
        "every valid verdict applied, once per message",
        applied == sent.expected[APPLIED] and once,
        f"{applied} applied of {sent.expected[APPLIED]}; {len(done)} messages settled for good; "
        f"handed back on the way: {dict(handed_back) or 'none'}",
    )
    traced = [r for r in done if r.get("trace_id") in sent.producer_traces]
    report.check(
        "each traced message's log line names the producer's trace",
        len(traced) == sent.traced,
        f"{len(traced)} of {sent.traced}",
    )
    time.sleep(SPAN_FLUSH_S)
    _check_spans(collector, sent, report)


_FOR_GOOD = frozenset(s.value for s in Settlement if s.deletes)


def _final_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The message.done lines of messages that left the queue; a message parked, released or
    requeued on the way has a line for each hand-back too."""
    return [
        r for r in records if r.get("event") == "message.done" and r.get("outcome") in _FOR_GOOD
    ]


def _check_spans(collector: Collector, sent: Sent, report: Report) -> None:
    received = collector.received()
    processes = [s for s in received if s.name.startswith("process ")]
    continued = {s.trace_id for s in processes} & sent.producer_traces
    report.check(
        "the container exported a process span in each producer trace (OTLP/HTTP)",
        continued == sent.producer_traces,
        f"{len(continued)} of {len(sent.producer_traces)} traces; {len(received)} spans in all",
    )
    calls = [s for s in received if s.name == CALL_SPAN]
    by_id = {s.span_id: s for s in processes}
    complete = [
        c
        for c in calls
        if c.parent_span_id in by_id
        and {"cloud.region", "aws.cognito.user_pool_id", "feedback.call_outcome"}
        <= c.attributes.keys()
    ]
    report.check(
        "each Cognito call is a child span with outcome, pool and region",
        bool(calls) and len(complete) == len(calls),
        f"{len(calls)} call spans; outcomes "
        + ", ".join(
            f"{k} {v}"
            for k, v in sorted(
                _count(c.attributes.get("feedback.call_outcome") for c in calls).items()
            )
        ),
    )
    leaked = [
        (s.name, key)
        for s in received
        for key, value in s.attributes.items()
        if isinstance(value, str) and value in sent.usernames
    ]
    report.check("no span carries a username", not leaked, str(leaked[:3]))
    report.check(
        "spans name the service", {s.service for s in received} == {"cognito-feedback-worker"}
    )


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts
