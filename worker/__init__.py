"""Drains fraud and security verdicts from Amazon SQS into Cognito threat-protection feedback."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cognito-feedback-worker")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
