"""A noisy neighbour: another application's user writes that share the worker's quota.

Calls AdminUpdateAuthEventFeedback on its own users at a fixed rate, open loop (a slow or
throttled call does not delay the next one, as independent application requests would not),
without retries, until SIGTERM; then writes what it saw as JSON.

    python -m tests.bench.neighbour --endpoint URL --region R --pool ID --rate 10 \
        --events FILE.json --result FILE.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from pathlib import Path

from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError
from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient

from tests.bench import aws

NO_RETRIES = AioConfig(retries={"mode": "standard", "max_attempts": 1}, max_pool_connections=50)
MAX_IN_FLIGHT = 50


async def _call(
    cognito: CognitoIdentityProviderClient,
    pool: str,
    username: str,
    event_id: str,
    outcomes: Counter[str],
    slots: asyncio.Semaphore,
) -> None:
    try:
        await cognito.admin_update_auth_event_feedback(
            UserPoolId=pool, Username=username, EventId=event_id, FeedbackValue="Valid"
        )
        outcomes["success"] += 1
    except ClientError as exc:
        outcomes[str(exc.response.get("Error", {}).get("Code", "unknown"))] += 1
    finally:
        slots.release()


async def run(args: argparse.Namespace, events: list[list[str]]) -> dict[str, object]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    outcomes: Counter[str] = Counter()
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    interval = 1.0 / args.rate
    skipped = 0
    started = time.monotonic()
    async with (
        aws.cognito_client(args.endpoint, args.region, NO_RETRIES) as cognito,
        asyncio.TaskGroup() as tasks,
    ):
        sent = 0
        while not stop.is_set():
            username, event_id = events[sent % len(events)]
            if slots.locked():
                skipped += 1  # the emulator is stalled: never queue up unbounded work
            else:
                await slots.acquire()
                tasks.create_task(_call(cognito, args.pool, username, event_id, outcomes, slots))
            sent += 1
            next_at = started + sent * interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
    elapsed = time.monotonic() - started
    calls = sum(outcomes.values())
    return {
        "rate": args.rate,
        "elapsed_s": elapsed,
        "calls": calls,
        "successes": outcomes["success"],
        "throttles": outcomes["TooManyRequestsException"],
        "outcomes": dict(outcomes),
        "skipped": skipped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--events", required=True, help="JSON list of [username, event id]")
    parser.add_argument("--result", required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args, json.loads(Path(args.events).read_text())))
    Path(args.result).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
