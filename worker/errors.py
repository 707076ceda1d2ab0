"""The exceptions this project raises on purpose, under one root.

What a *Cognito call's* failure means for its message (throttled, transient, permanent,
systemic) is not an exception class here: botocore raises its own, and `worker.outcome`
classifies them by error code into `outcome.Kind`, the one vocabulary of failure that
`worker.fate` decides on.
"""

from __future__ import annotations


class FeedbackWorkerError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(FeedbackWorkerError):
    """A setting is missing or invalid: the program stops at start-up with exit code 2."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class InvalidMessage(FeedbackWorkerError):
    """The body is not a valid verdict, so it can never succeed: dead-letter it now.

    `code` names the validation failure (the DLQ copy's ErrorCode), `field` the culprit.
    """

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field


class BatchEntryFailed(FeedbackWorkerError):
    """SQS refused one entry of a batch write (or the whole call failed after its retries)."""

    def __init__(self, code: str, message: str, *, sender_fault: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.sender_fault = sender_fault
