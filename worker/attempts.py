"""How many real attempts a message has used, across its hand-backs and deliveries.

Only a failed call that was the message's own counts (see fate.counts_as_attempt): never a
hand-back to the queue (shutdown, a paused scope, parking), which SQS's receive count would
count. The count lives in two places:

- in this process, per message id, so a message handed back and received again here keeps
  it (bounded memory: the least recently used are forgotten first);
- on the message itself, as the ``Attempts`` attribute of a copy the worker requeues at the
  message's last receive, so the count survives the new message id.

A process that crashes while holding a message loses its part of the count: the message gets
more tries, never fewer, and a crash loop is still bounded by the queue's redrive policy.
"""

from __future__ import annotations

from collections import OrderedDict

from worker.message import Message

# Messages whose attempts are remembered here (~100 bytes each).
LEDGER_CAPACITY = 20_000


class AttemptLedger:
    """Failed attempts per message id, for the messages this process has tried."""

    def __init__(self, capacity: int = LEDGER_CAPACITY) -> None:
        self._capacity = capacity
        self._failed: OrderedDict[str, int] = OrderedDict()

    def count(self, message: Message) -> int:
        """The message's attempts so far: its earlier copies' and this process's."""
        return message.carried_attempts + self._failed.get(message.message_id, 0)

    def failed(self, message: Message) -> int:
        """Count one more failed attempt; returns the message's attempts so far."""
        self._failed[message.message_id] = self._failed.get(message.message_id, 0) + 1
        self._failed.move_to_end(message.message_id)
        while len(self._failed) > self._capacity:
            self._failed.popitem(last=False)
        return self.count(message)

    def forget(self, message: Message) -> None:
        """The message left the queue (applied, dead-lettered, or requeued as a new copy)."""
        self._failed.pop(message.message_id, None)

    def __len__(self) -> int:
        return len(self._failed)
