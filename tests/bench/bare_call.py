"""The bare cost of one Cognito call: one aiobotocore client, N calls in a loop, CPU per call.

This is the floor a worker's CPU per message is compared with: everything the worker spends
beyond it (SQS, parsing, pacing, logging, settling) is its own overhead.

    python -m tests.bench.bare_call --endpoint URL --region R --events FILE.json --calls N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench import aws

WARMUP_CALLS = 50
REPO = Path(__file__).resolve().parents[2]


async def run(endpoint: str, region: str, events: list[list[str]], calls: int) -> dict[str, float]:
    async with aws.cognito_client(endpoint, region) as cognito:

        async def call(i: int) -> None:
            pool, username, event_id = events[i % len(events)]
            await cognito.admin_update_auth_event_feedback(
                UserPoolId=pool, Username=username, EventId=event_id, FeedbackValue="Valid"
            )

        for i in range(WARMUP_CALLS):  # connection set-up and lazy imports are not per call
            await call(i)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(calls):
            await call(i)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "calls": calls,
        "cpu_ms_per_call": cpu * 1000 / calls,
        "wall_ms_per_call": wall * 1000 / calls,
    }


async def measure(endpoint: str, region: str, events_path: Path, calls: int) -> dict[str, Any]:
    """Run this loop in a child process of its own (its CPU is then its own alone)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.bare_call",
        "--endpoint", endpoint,
        "--region", region,
        "--events", str(events_path),
        "--calls", str(calls),
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the bare-call loop failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--events", required=True, help="JSON list of [pool, username, event id]")
    parser.add_argument("--calls", type=int, required=True)
    args = parser.parse_args()
    events = json.loads(Path(args.events).read_text())
    print(json.dumps(asyncio.run(run(args.endpoint, args.region, events, args.calls))))


if __name__ == "__main__":
    main()
