"""One exception root, split by what the worker should do next with the message."""

from __future__ import annotations


class FeedbackWorkerError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(FeedbackWorkerError):
    """A setting is missing or invalid: the program stops at start-up with exit code 2."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class PermanentError(FeedbackWorkerError):
    """The message itself can never succeed: dead-letter it now."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidMessage(PermanentError):
    """The body is not a valid verdict; `code` names the validation failure, `field` the culprit."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(code, message)
        self.field = field


class TransientError(FeedbackWorkerError):
    """A failure that may pass by itself: retry with backoff, dead-letter after max attempts."""


class ThrottledError(TransientError):
    """Cognito answered with a rate limit: slow down, retry, never dead-letter."""


class SystemicError(FeedbackWorkerError):
    """Our deployment is wrong (credentials, permissions): keep messages, stop taking work."""
