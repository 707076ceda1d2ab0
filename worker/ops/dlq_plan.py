"""What `dlq redrive` is about to move, shown before it moves anything.

A redrive first counts the dead letters it would move, by ErrorCode (a held scan, every message
given back at the end), then warns about codes that seldom succeed a second time, then asks for
confirmation, which ``--yes`` skips; ``--dry-run`` stops after the counts. A redrive with
``--yes`` does not scan: it warns only about the codes ``--error-code`` names.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from worker import exitcodes
from worker.contract import ValidationCode
from worker.ops.dlq_inspect import inspect

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

# Most messages a plan reads to count; a larger DLQ is counted from this sample.
PLAN_MAX_MESSAGES = 1000
# Dead letters whose cause a redrive does not remove: they come back to the DLQ unless the
# cause was fixed first (the user or event restored, the producer corrected).
SELDOM_SUCCEED: dict[str, str] = {
    "UserNotFoundException": "the user was deleted or renamed",
    "ResourceNotFoundException": "the pool or the event is unknown",
    "InvalidParameterException": "Cognito refused a field",
    "NotAuthorizedException": "Cognito refused the call for this user",
} | {code.value: "the body is not a valid verdict" for code in ValidationCode}
YES = frozenset({"y", "yes"})


def seldom_succeeding(codes: Iterable[str]) -> list[str]:
    """The codes among `codes` that seldom succeed when redriven, in a stable order."""
    return sorted(set(codes) & SELDOM_SUCCEED.keys())


def warn_seldom(counts: Counter[str]) -> None:
    for code in seldom_succeeding(counts):
        amount = f"{counts[code]} " if counts[code] else ""
        print(
            f"warning: {amount}{code}: seldom succeeds when redriven ({SELDOM_SUCCEED[code]}); "
            "it comes back to the DLQ unless the cause was fixed first",
            file=sys.stderr,
        )


def _render(counts: Counter[str], *, sampled: bool, approximate: int, in_flight: int) -> str:
    total = sum(counts.values())
    width = max((len(code) for code in counts), default=0)
    lines = [f"  {code:<{width}}  {count}" for code, count in counts.most_common()]
    head = f"{total} messages to move, by ErrorCode"
    if sampled:
        head += f" (counted from the first {total} of about {approximate})"
    if in_flight:
        lines.append(
            f"{in_flight} more are in flight in the DLQ (held by another reader, such as a "
            "recent dlq inspect) and are not counted; they come back when their visibility "
            "timeout ends"
        )
    return "\n".join([head + ":", *lines])


async def plan(
    args: argparse.Namespace,
    sqs: SQSClient,
    *,
    dlq_url: str,
    queue_url: str,
    method: str,
) -> int | None:
    """Count, warn, and ask; the exit code to stop with, or None to go on and move."""
    wanted = frozenset(args.error_code)
    if args.yes and not args.dry_run:
        warn_seldom(Counter(dict.fromkeys(wanted, 0)))
        return None
    report = await inspect(
        sqs, dlq_url, max_messages=PLAN_MAX_MESSAGES, samples=0, digest_key=b"\0" * 32
    )
    counts = Counter({code: n for code, n in report.counts.items() if not wanted or code in wanted})
    if args.max_messages:
        counts = _first(counts, args.max_messages)
    sampled = report.read >= PLAN_MAX_MESSAGES and report.approximate > report.read
    print(f"from {dlq_url}")
    print(f"to   {queue_url} ({method})")
    print(
        _render(counts, sampled=sampled, approximate=report.approximate, in_flight=report.in_flight)
    )
    warn_seldom(counts)
    if args.dry_run:
        print("dry run: nothing moved")
        return exitcodes.OK
    if not counts:
        print("nothing to move")
        return exitcodes.OK
    return None if _confirmed(sum(counts.values()), queue_url) else exitcodes.FAILURE


def _first(counts: Counter[str], limit: int) -> Counter[str]:
    """At most `limit` of the counts (what --max-messages moves), largest codes first."""
    kept: Counter[str] = Counter()
    for code, count in counts.most_common():
        take = min(count, limit - sum(kept.values()))
        if take <= 0:
            break
        kept[code] = take
    return kept


def _confirmed(total: int, queue_url: str) -> bool:
    print(f"move {total} messages back to {queue_url}? [y/N] ", end="", file=sys.stderr)
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    if answer.strip().lower() in YES:
        return True
    reason = "" if answer else " (no answer: pass --yes to move without asking)"
    print(f"nothing moved{reason}", file=sys.stderr)
    return False
