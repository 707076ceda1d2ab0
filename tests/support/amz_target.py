"""The operation of each AWS API call in a stream of HTTP requests.

Every call on the AWS JSON protocol (SQS, Cognito) carries an ``X-Amz-Target:
<Service>.<Operation>`` header, so scanning the bytes a client sends for that header counts
the calls of any client (botocore, the AWS SDK for JavaScript) without parsing HTTP.
"""

from __future__ import annotations

TARGET_HEADER = b"x-amz-target:"
# A header line longer than this is not an AWS target: stop waiting for its end.
MAX_PENDING_HEADER_BYTES = 512


class TargetScanner:
    """Finds ``X-Amz-Target`` header values in a byte stream that arrives in arbitrary chunks."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        """Operations whose header line completed in this chunk (``ReceiveMessage``, ...)."""
        data = self._pending + chunk
        lower = data.lower()
        operations: list[str] = []
        pos = 0
        while True:
            start = lower.find(TARGET_HEADER, pos)
            if start < 0:
                # Keep a tail that may hold the beginning of a header split across chunks.
                self._pending = data[max(pos, len(data) - len(TARGET_HEADER) + 1) :]
                return operations
            end = data.find(b"\r\n", start)
            if end < 0:
                keep = len(data) - start <= MAX_PENDING_HEADER_BYTES
                self._pending = data[start:] if keep else b""
                return operations
            value = data[start + len(TARGET_HEADER) : end].strip().decode("ascii", "replace")
            operations.append(value.rpartition(".")[2])
            pos = end
