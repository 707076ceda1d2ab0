"""The systemic pause: when our deployment is wrong, stop taking work until it is fixed.

Bad credentials or missing permissions are not the message's fault, so nothing is
dead-lettered for them. The first task to hit one pauses the worker and becomes the probe: it
keeps its message (the heartbeat extends it) and retries with a slow backoff. Every other task
hands its message back to the queue once, without a call, and the receiver stops receiving, so
receive counts are not burned toward the queue's redrive. Any non-systemic answer to the probe
resumes work by itself.
"""

from __future__ import annotations

import anyio
import structlog

from worker import metrics

log = structlog.get_logger()


class SystemicPause:
    """Paused or open; while paused, exactly one task (the probe) may call Cognito."""

    def __init__(self) -> None:
        self.paused = False
        self.reason = ""
        self._probe: object | None = None
        self._changed = anyio.Event()

    def pause(self, owner: object, code: str, message: str) -> None:
        if not self.paused:
            log.error(
                "worker.paused",
                code=code,
                error=message,
                note="credentials or permissions are wrong: no message is dead-lettered; "
                "work resumes by itself once a probe call succeeds",
            )
            self.paused = True
            self.reason = f"{code}: {message}"
            metrics.PAUSED.set(1)
            self._notify()
        if self._probe is None:
            self._probe = owner

    def may_call(self, owner: object) -> bool:
        """Whether `owner` may call Cognito now; claims the probe role if it is free."""
        if not self.paused:
            return True
        if self._probe is None:
            self._probe = owner
        return self._probe is owner

    def is_probe(self, owner: object) -> bool:
        return self.paused and self._probe is owner

    def resume(self, owner: object) -> None:
        """A call by `owner` got a non-systemic answer: credentials work again."""
        if self.paused and self._probe is owner:
            log.warning("worker.resumed", after=self.reason)
            self.paused = False
            self.reason = ""
            self._probe = None
            metrics.PAUSED.set(0)
            self._notify()

    def leave(self, owner: object) -> None:
        """`owner` is done (released or settled) without resolving the pause."""
        if self._probe is owner:
            self._probe = None
            self._notify()

    @property
    def has_probe(self) -> bool:
        return self._probe is not None

    async def changed(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
