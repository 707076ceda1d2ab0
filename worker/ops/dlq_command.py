"""`feedback-worker dlq inspect|redrive`: open what both need, run one, report failures plainly.

A failed queue call ends the command with exit code 1 and a sentence saying what could not be
done and why, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack

import aioboto3

from worker import exitcodes
from worker.ops.aws_calls import AWS_CALL_ERRORS, describe_error, open_sqs
from worker.ops.dlq_inspect import check_inspect_args, inspect_command
from worker.ops.dlq_redrive import check_redrive_args, redrive_command
from worker.ops.dlq_scan import DlqClients, QueueError


async def dlq_command(args: argparse.Namespace, queue_url: str, dlq_url: str) -> int:
    """`dlq inspect` or `dlq redrive`; the exit code."""
    if args.dlq_command == "inspect":
        check_inspect_args(args)
    else:
        check_redrive_args(args)
    session = aioboto3.Session()
    async with AsyncExitStack() as stack:
        sqs = await open_sqs(stack, session, connections=2, queue_url=dlq_url)
        try:
            if args.dlq_command == "inspect":
                return await inspect_command(args, sqs, dlq_url)
            aws = DlqClients(session, stack, sqs)
            return await redrive_command(args, aws, queue_url=queue_url, dlq_url=dlq_url)
        except QueueError as exc:
            print(f"dlq: {exc}", file=sys.stderr)
        except AWS_CALL_ERRORS as exc:
            # The scans work on the DLQ; the sends have their own reporting.
            operation = str(getattr(exc, "operation_name", "") or "a queue operation")
            text = describe_error(
                exc, action=f"sqs:{operation}", resource=dlq_url, endpoint=sqs.meta.endpoint_url
            )
            print(f"dlq: {text}", file=sys.stderr)
        return exitcodes.FAILURE
