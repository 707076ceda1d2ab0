"""Peer: the loop people write by hand with boto3, at botocore's default retry settings.

Receive ten, call Cognito for each (one client per region, as a pool's region is the prefix
of its id), delete each; a failed call leaves its message to come back after the visibility
timeout (and reach the DLQ through the queue's redrive policy). Runs until SIGTERM. Reads
AWS_* and FEEDBACK_QUEUE_URL from the environment like the worker.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3  # type: ignore[import-untyped, unused-ignore]
from botocore.exceptions import ClientError


def main() -> None:
    queue_url = os.environ["FEEDBACK_QUEUE_URL"]
    sqs = boto3.client("sqs")
    cognito: dict[str, Any] = {}
    while True:
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=20
        )
        for message in response.get("Messages", []):
            verdict = json.loads(message["Body"])
            region = verdict["UserPoolId"].split("_", 1)[0]
            if region not in cognito:
                cognito[region] = boto3.client("cognito-idp", region_name=region)
            try:
                cognito[region].admin_update_auth_event_feedback(
                    UserPoolId=verdict["UserPoolId"],
                    Username=verdict["Username"],
                    EventId=verdict["EventId"],
                    FeedbackValue=verdict["FeedbackValue"],
                )
            except ClientError as exc:
                print(f"feedback failed: {exc}", flush=True)
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


if __name__ == "__main__":
    main()
