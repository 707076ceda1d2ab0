"""The benchmark's scenarios, their sizes (full and quick) and what each one stages.

Three groups, each with its own targets (tests.bench.targets):

- ``classic`` (s1-s5): drain rate, replicas, regions and CPU, the worker's ceiling at the quota.
- ``rate``: the rate control against a quota it must find by itself, the worker's ceiling at
  4x and 40x the quota: a backlog, a neighbour's spike, three replicas, a step in capacity;
  and a backlog on a 20/s quota with 30% of its throttles untyped, the ceiling at 1,000/s.
- ``bulkheads``: one failing or greedy scope beside healthy ones: a pool denied, a region
  down, one user's flood, tenants on an SQS fair queue, a trickle tenant beside a backlog.
"""

from __future__ import annotations

from dataclasses import dataclass

QUOTA = 25.0  # Cognito's user-write quota per account and region (FACTS.md)
NEIGHBOUR_RATE = 10.0
SPIKE_RATE = 0.6 * QUOTA  # a neighbour's spike takes 60% of the quota
STEP_LOW_QUOTA = 10.0
# A quota found from throttles of which some carry no type: 20/s, 30% of them untyped, and the
# worker's ceiling at 1,000/s (50x).
UNTYPED_QUOTA = 20.0
UNTYPED_THROTTLE_SHARE = 0.3
UNTYPED_CEILING = 1000.0 / UNTYPED_QUOTA
# Cognito's own latency: a plausible in-region figure, jittered.
COGNITO_LATENCY_S = 0.05
COGNITO_JITTER_S = 0.02
# Scenario 5: the worker's own overhead, so Cognito answers fast and without a quota.
OVERHEAD_LATENCY_S = 0.005
# The fair queue: calls slow enough (a far region) that two tenants served one call at a time
# each could not fill the quota (2 / 0.15 s = 13/s): only calls in parallel within a tenant can.
FAIR_QUEUE_LATENCY_S = 0.15
MAX_RATE_LIMIT = 10_000.0  # the highest FEEDBACK_RATE_LIMIT accepted: pacing off in effect
ONE_REGION = ("us-east-1",)
THREE_REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
RSS_LIMIT_MIB = 100.0
# The rate group runs the worker with its ceiling this many times the quota.
CEILINGS = (4.0, 40.0)
QUICK_CEILINGS = (40.0,)

WORKER = "worker"
BOTO3 = "boto3-loop"
SQS_CONSUMER = "sqs-consumer"
PEERS = (BOTO3, SQS_CONSUMER)

CLASSIC, RATE, BULKHEADS = "classic", "rate", "bulkheads"
GROUPS = (CLASSIC, RATE, BULKHEADS)
FAUXQS, LOCALSTACK = "fauxqs", "localstack"


@dataclass(frozen=True)
class Fault:
    """An error the emulator answers for every call in one scope: a pool (by its index in
    its region, 1-based) or a whole region."""

    code: str
    region: str
    pool: int | None = None  # None: every pool of the region


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    group: str
    messages: int
    regions: tuple[str, ...] = ONE_REGION
    pools_per_region: int = 1
    quota: float | None = QUOTA  # per region; None turns the quota off
    untyped_throttles: float = 0.0  # the share of the quota's throttles answered untyped
    latency_s: float = COGNITO_LATENCY_S
    jitter_s: float = COGNITO_JITTER_S
    replicas: int = 1  # of every consumer, worker and peers alike
    # A neighbour writing on the first region's quota: its rate, and when it runs (seconds
    # after the consumer starts; None: for the whole run).
    neighbour_rate: float = 0.0
    neighbour_window: tuple[float, float] | None = None
    with_peers: bool = False
    peer_messages: int = 0  # 0: as many as the worker
    bare_calls: int = 0  # >0: measure the bare aiobotocore call in the same run
    # The worker's ceilings as multiples of the quota; () runs it once, with
    # FEEDBACK_RATE_LIMIT at the quota (classic) or at its default (bulkheads).
    ceilings: tuple[float, ...] = ()
    ceiling_at_quota: bool = False
    # (seconds after the consumer starts, new quota per region)
    quota_steps: tuple[tuple[float, float], ...] = ()
    duration_s: float | None = None  # the run is stopped then, backlog or not
    max_s: float | None = None  # a cap on any one consumer's run
    faults: tuple[Fault, ...] = ()
    flood: int = 0  # of the messages, this many for one user, enqueued first
    tenants: int = 0  # >0: the messages carry MessageGroupId, split over this many tenants
    trickle_rate: float = 0.0  # a further tenant sending this many messages per second
    # The backlog enters the queue as it is taken, as an SQS fair queue would deliver it
    # (tests.bench.schedule); else it is all sent before the consumer starts.
    fed_backlog: bool = False
    sqs: str = FAUXQS

    @property
    def capacity(self) -> float | None:
        """Calls per second the measured verdicts can have: the quota of every region that
        has a healthy pool, less a neighbour running all the time."""
        if self.quota is None:
            return None
        healthy = [r for r in self.regions if not self.region_down(r)]
        steady_neighbour = self.neighbour_rate if self.neighbour_window is None else 0.0
        return self.quota * len(healthy) - steady_neighbour

    def region_down(self, region: str) -> bool:
        return any(f.region == region and f.pool is None for f in self.faults)

    def faulted(self, region: str, pool: int) -> bool:
        """Whether calls on this pool fail by design (its verdicts are not measured)."""
        return any(f.region == region and f.pool in (None, pool) for f in self.faults)

    @property
    def drains(self) -> bool:
        """The run ends when every message is settled (not at a time or a goal)."""
        return self.duration_s is None and not self.faults

    def ideal_s(self, messages: int) -> float | None:
        capacity = self.capacity
        if capacity is None or self.duration_s is not None:
            return None
        return messages / capacity

    def consumers(self, with_peers: bool) -> tuple[str, ...]:
        return (WORKER, *PEERS) if with_peers and self.with_peers else (WORKER,)

    def size_for(self, consumer: str) -> int:
        if consumer == WORKER:
            return self.messages
        return self.peer_messages or self.messages

    def worker_rate_limits(self) -> tuple[float | None, ...]:
        """FEEDBACK_RATE_LIMIT for each worker run (None: left at the worker's default)."""
        if self.quota is None:
            return (MAX_RATE_LIMIT,)
        if self.ceilings:
            return tuple(c * self.quota for c in self.ceilings)
        return (self.quota,) if self.ceiling_at_quota else (None,)


def _classic(scale: int) -> list[Scenario]:
    return [
        Scenario(
            "s1",
            "backlog, one replica, ceiling at the quota (25/s)",
            CLASSIC,
            messages=2500 // scale,
            ceiling_at_quota=True,
        ),
        Scenario(
            "s2",
            "backlog + neighbour at 10/s on the same quota",
            CLASSIC,
            messages=750 // scale,
            neighbour_rate=NEIGHBOUR_RATE,
            ceiling_at_quota=True,
        ),
        Scenario(
            "s3",
            "three replicas share the quota",
            CLASSIC,
            messages=900 // scale,
            replicas=3,
            ceiling_at_quota=True,
        ),
        Scenario(
            "s4",
            "pools in three regions",
            CLASSIC,
            messages=3000 // scale,
            regions=THREE_REGIONS,
            ceiling_at_quota=True,
        ),
        Scenario(
            "s5",
            "no quota, 5 ms latency (pure overhead)",
            CLASSIC,
            messages=5000 // scale,
            quota=None,
            latency_s=OVERHEAD_LATENCY_S,
            jitter_s=0.0,
            with_peers=True,
            peer_messages=2000 // scale,
            bare_calls=2000 // scale,
        ),
    ]


def _rate(quick: bool) -> list[Scenario]:
    ceilings = QUICK_CEILINGS if quick else CEILINGS
    # The spike: steady, then the neighbour for 10 s (8 in quick runs), then time to recover.
    pre, spike, post = (5.0, 8.0, 8.0) if quick else (8.0, 10.0, 12.0)
    level = 8.0 if quick else 15.0  # seconds at each level of the step
    return [
        Scenario(
            "backlog",
            "a backlog against a quota the worker must find",
            RATE,
            messages=200 if quick else 750,
            with_peers=True,
            ceilings=ceilings,
        ),
        Scenario(
            "untyped",
            f"a backlog against a {UNTYPED_QUOTA:g}/s quota, {UNTYPED_THROTTLE_SHARE:.0%} of "
            "its throttles untyped",
            RATE,
            messages=300,
            quota=UNTYPED_QUOTA,
            untyped_throttles=UNTYPED_THROTTLE_SHARE,
            with_peers=True,
            ceilings=(UNTYPED_CEILING,),
        ),
        Scenario(
            "spike",
            f"a neighbour takes {SPIKE_RATE:g}/s (60% of the quota) for {spike:g} s",
            RATE,
            messages=round(QUOTA * (pre + spike + post) * 1.3),
            neighbour_rate=SPIKE_RATE,
            neighbour_window=(pre, pre + spike),
            duration_s=pre + spike + post,
            with_peers=True,
            ceilings=ceilings,
        ),
        Scenario(
            "replicas",
            "three replicas start at once",
            RATE,
            messages=250 if quick else 750,
            replicas=3,
            max_s=90.0,  # three boto3 loops leave throttled messages to the visibility timeout
            with_peers=True,
            ceilings=ceilings,
        ),
        Scenario(
            "step",
            f"capacity steps {QUOTA:g} → {STEP_LOW_QUOTA:g} → {QUOTA:g}/s, {level:g} s each",
            RATE,
            messages=round((2 * QUOTA + STEP_LOW_QUOTA) * level * 1.3),
            quota_steps=((level, STEP_LOW_QUOTA), (2 * level, QUOTA)),
            duration_s=3 * level,
            with_peers=True,
            ceilings=ceilings,
        ),
    ]


def _bulkheads(quick: bool) -> list[Scenario]:
    cap = 30.0 if quick else 45.0  # the measured scopes need 20 s at their quota
    return [
        Scenario(
            "denied",
            "three pools in one region, one denied (AccessDeniedException)",
            BULKHEADS,
            messages=240 if quick else 750,
            pools_per_region=3,
            faults=(Fault("AccessDeniedException", ONE_REGION[0], pool=3),),
            max_s=cap,
            with_peers=True,
        ),
        Scenario(
            "outage",
            f"three regions, {THREE_REGIONS[2]} answers 503 pages",
            BULKHEADS,
            messages=360 if quick else 1200,
            regions=THREE_REGIONS,
            faults=(Fault("HTTP503", THREE_REGIONS[2]),),
            max_s=cap,
            with_peers=True,
        ),
        Scenario(
            "flood",
            "one user's 150 verdicts ahead of 40 users' one each",
            BULKHEADS,
            messages=190,
            flood=150,
            max_s=cap,
            with_peers=True,
        ),
        Scenario(
            "fair",
            "two tenants on a fair queue (MessageGroupId on a standard queue), 150 ms calls",
            BULKHEADS,
            messages=200 if quick else 600,
            peer_messages=100 if quick else 300,  # a boto3 loop makes 6.7 calls/s at 150 ms
            latency_s=FAIR_QUEUE_LATENCY_S,
            tenants=2,
            with_peers=True,
            sqs=LOCALSTACK,
        ),
        Scenario(
            "trickle",
            "a trickle tenant at 2/s beside another tenant's backlog, in fair-queue order",
            BULKHEADS,
            messages=1000 if quick else 5000,
            tenants=1,
            trickle_rate=2.0,
            fed_backlog=True,
            duration_s=20.0 if quick else 40.0,
            with_peers=True,
            sqs=LOCALSTACK,
        ),
    ]


def scenarios(quick: bool) -> list[Scenario]:
    """Full sizes keep the whole run near 25 minutes on two cores; quick ones near five."""
    return [*_classic(5 if quick else 1), *_rate(quick), *_bulkheads(quick)]


def select(all_scenarios: list[Scenario], only: str | None) -> list[Scenario]:
    """The scenarios named in ``only`` (keys or group names, comma-separated), in order."""
    if not only:
        return all_scenarios
    wanted = {k.strip() for k in only.split(",") if k.strip()}
    known = {s.key for s in all_scenarios} | set(GROUPS)
    if unknown := wanted - known:
        raise ValueError(f"unknown scenario or group: {', '.join(sorted(unknown))}")
    return [s for s in all_scenarios if s.key in wanted or s.group in wanted]
