"""A noisy neighbour: another application's user writes that share the worker's quota.

Calls AdminUpdateAuthEventFeedback on its own users at a fixed rate, open loop (a slow or
throttled call does not delay the next one, as independent application requests would not),
without retries, until SIGTERM; then writes what it saw as JSON. With a schedule it is quiet
until ``--start-after`` seconds and again from ``--stop-after`` seconds (a spike); its
result says when it really ran (epoch seconds) and its outcomes per wall-clock second.

    python -m tests.bench.neighbour --endpoint URL --region R --pool ID --rate 10 \
        --events FILE.json --result FILE.json [--start-after 8 --stop-after 18]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError
from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient

from tests.bench import aws
from tests.support.worker_process import WorkerProcess

REPO = Path(__file__).resolve().parents[2]
NO_RETRIES = AioConfig(retries={"mode": "standard", "max_attempts": 1}, max_pool_connections=50)
MAX_IN_FLIGHT = 50


THROTTLE = "TooManyRequestsException"


class _Tally:
    """Outcomes in total and per wall-clock second (successes and throttles)."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.per_second: dict[int, Counter[str]] = {}

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] += 1
        if outcome in ("success", THROTTLE):
            self.per_second.setdefault(int(time.time()), Counter())[outcome] += 1


async def _call(
    cognito: CognitoIdentityProviderClient,
    pool: str,
    username: str,
    event_id: str,
    tally: _Tally,
    slots: asyncio.Semaphore,
) -> None:
    try:
        await cognito.admin_update_auth_event_feedback(
            UserPoolId=pool, Username=username, EventId=event_id, FeedbackValue="Valid"
        )
        tally.add("success")
    except ClientError as exc:
        tally.add(str(exc.response.get("Error", {}).get("Code", "unknown")))
    finally:
        slots.release()


async def _wait(stop: asyncio.Event, until: float) -> None:
    """Sleep until the monotonic time `until`, or until asked to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, until - time.monotonic()))


async def run(args: argparse.Namespace, events: list[list[str]]) -> dict[str, object]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tally = _Tally()
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    interval = 1.0 / args.rate
    skipped = sent = 0
    launched = time.monotonic()
    async with (
        aws.cognito_client(args.endpoint, args.region, NO_RETRIES) as cognito,
        asyncio.TaskGroup() as tasks,
    ):
        await _wait(stop, launched + args.start_after)
        started, started_at = time.monotonic(), time.time()
        end = launched + args.stop_after
        while not stop.is_set() and time.monotonic() < end:
            username, event_id = events[sent % len(events)]
            if slots.locked():
                skipped += 1  # the emulator is stalled: never queue up unbounded work
            else:
                await slots.acquire()
                tasks.create_task(_call(cognito, args.pool, username, event_id, tally, slots))
            sent += 1
            await _wait(stop, min(end, started + sent * interval))
        stopped, stopped_at = time.monotonic(), time.time()
        await stop.wait()  # quiet until the bench is done with it
    outcomes = tally.outcomes
    return {
        "rate": args.rate,
        "elapsed_s": max(0.0, stopped - started),
        "started_at": started_at,
        "stopped_at": stopped_at,
        "calls": sum(outcomes.values()),
        "successes": outcomes["success"],
        "throttles": outcomes[THROTTLE],
        "outcomes": dict(outcomes),
        "per_second": {
            str(second): dict(counts) for second, counts in sorted(tally.per_second.items())
        },
        "skipped": skipped,
    }


def process(
    env: dict[str, str],
    *,
    endpoint: str,
    region: str,
    pool: str,
    rate: float,
    window: tuple[float, float] | None,
    events_path: Path,
    result_path: Path,
    log_path: Path,
) -> WorkerProcess:
    """The neighbour as a child process of the bench (not started yet)."""
    schedule = []
    if window is not None:
        schedule = ["--start-after", f"{window[0]:g}", "--stop-after", f"{window[1]:g}"]
    return WorkerProcess(
        env,
        [
            sys.executable, "-m", "tests.bench.neighbour",
            "--endpoint", endpoint,
            "--region", region,
            "--pool", pool,
            "--rate", f"{rate:g}",
            "--events", str(events_path),
            "--result", str(result_path),
            *schedule,
        ],
        log_path=log_path,
        cwd=REPO,
        name="neighbour",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--events", required=True, help="JSON list of [username, event id]")
    parser.add_argument("--result", required=True)
    parser.add_argument("--start-after", type=float, default=0.0, help="seconds of quiet first")
    parser.add_argument(
        "--stop-after", type=float, default=math.inf, help="seconds after launch to go quiet"
    )
    args = parser.parse_args()
    result = asyncio.run(run(args, json.loads(Path(args.events).read_text())))
    Path(args.result).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
