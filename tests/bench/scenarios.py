"""The benchmark's scenarios, their sizes (full and quick) and the targets each must meet."""

from __future__ import annotations

from dataclasses import dataclass

QUOTA = 25.0  # Cognito's user-write quota per account and region (FACTS.md)
NEIGHBOUR_RATE = 10.0
# Cognito's own latency for scenarios 1-4: a plausible in-region figure, jittered.
COGNITO_LATENCY_S = 0.05
COGNITO_JITTER_S = 0.02
# Scenario 5: the worker's own overhead, so Cognito answers fast and without a quota.
OVERHEAD_LATENCY_S = 0.005
MAX_RATE_LIMIT = 10_000.0  # the highest FEEDBACK_RATE_LIMIT accepted: pacing off in effect
ONE_REGION = ("us-east-1",)
THREE_REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
RSS_LIMIT_MIB = 100.0

WORKER = "worker"
BOTO3 = "boto3-loop"
SQS_CONSUMER = "sqs-consumer"
PEERS = (BOTO3, SQS_CONSUMER)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    messages: int
    regions: tuple[str, ...] = ONE_REGION
    quota: float | None = QUOTA  # per region; None turns the quota off
    latency_s: float = COGNITO_LATENCY_S
    jitter_s: float = COGNITO_JITTER_S
    replicas: int = 1
    neighbour_rate: float = 0.0
    peer_messages: int = 0  # 0: no peers in this scenario
    bare_calls: int = 0  # >0: measure the bare aiobotocore call in the same run

    @property
    def worker_rate_limit(self) -> float:
        # An operator who knows the quota sets the per-replica ceiling to it; the worker's
        # adaptive pacing has to find its share below that by itself.
        return MAX_RATE_LIMIT if self.quota is None else self.quota

    @property
    def capacity(self) -> float | None:
        """Calls per second left for the consumer under test (all its regions together)."""
        if self.quota is None:
            return None
        return self.quota * len(self.regions) - self.neighbour_rate

    def ideal_s(self, messages: int) -> float | None:
        capacity = self.capacity
        return None if capacity is None else messages / capacity

    def consumers(self, with_peers: bool) -> tuple[str, ...]:
        return (WORKER, *PEERS) if with_peers and self.peer_messages else (WORKER,)

    def size_for(self, consumer: str) -> int:
        return self.messages if consumer == WORKER else self.peer_messages


def scenarios(quick: bool) -> list[Scenario]:
    """Full sizes keep the whole run near ten minutes on two cores; quick ones near three."""
    scale = 5 if quick else 1
    return [
        Scenario(
            "s1",
            "backlog, one replica, quota 25/s",
            messages=5000 // scale,
            peer_messages=800 // scale,
        ),
        Scenario(
            "s2",
            "backlog + neighbour at 10/s on the same quota",
            messages=1000 // scale,
            neighbour_rate=NEIGHBOUR_RATE,
        ),
        Scenario("s3", "three replicas share the quota", messages=1800 // scale, replicas=3),
        Scenario("s4", "pools in three regions", messages=4500 // scale, regions=THREE_REGIONS),
        Scenario(
            "s5",
            "no quota, 5 ms latency (pure overhead)",
            messages=5000 // scale,
            quota=None,
            latency_s=OVERHEAD_LATENCY_S,
            jitter_s=0.0,
            peer_messages=2000 // scale,
            bare_calls=2000 // scale,
        ),
    ]
