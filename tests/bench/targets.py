"""The targets each scenario's worker runs must meet, checked against the measured figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.bench.metrics import Summary
from tests.bench.scenarios import QUOTA, RATE, RSS_LIMIT_MIB, WORKER

REGIONS_SCALE_TARGET = 2.8
CPU_OVER_BARE_TARGET = 1.3
SQS_PER_MSG_TARGET = 0.25
STEP_FOLLOW_S = 5.0


@dataclass(frozen=True)
class Check:
    scenario: str
    what: str
    measured: float | None
    limit: float
    at_least: bool

    @property
    def met(self) -> bool:
        if self.measured is None:
            return False
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def line(self) -> str:
        sign = "≥" if self.at_least else "≤"
        shown = "n/a" if self.measured is None else f"{self.measured:.3g}"
        verdict = "met" if self.met else "NOT MET"
        return f"| {self.scenario} | {self.what} | {shown} | {sign} {self.limit:.3g} | {verdict} |"


def at_least(scenario: str, what: str, measured: float | None, limit: float) -> Check:
    return Check(scenario, what, measured, limit, at_least=True)


def at_most(scenario: str, what: str, measured: float | None, limit: float) -> Check:
    return Check(scenario, what, measured, limit, at_least=False)


def _yes(scenario: str, what: str, holds: bool) -> Check:
    """A yes/no target, shown as 1 (yes) against ≥ 1."""
    return at_least(scenario, what, float(holds), 1)


def _clean_exit(s: Summary) -> bool:
    return s.drained and s.exited_by_itself and not any(s.exit_codes)


def run_label(s: Summary) -> str:
    """The scenario, with the worker's ceiling where the scenario varies it."""
    if s.group == RATE and s.rate_limit is not None:
        return f"{s.scenario}, ceiling {s.rate_limit:g}/s"
    return s.scenario


def _worker(summaries: Sequence[Summary], scenario: str) -> Summary | None:
    return next((s for s in summaries if s.scenario == scenario and s.consumer == WORKER), None)


def _classic(summaries: Sequence[Summary], bare: dict[str, Any] | None) -> list[Check]:
    out: list[Check] = []
    s1 = _worker(summaries, "s1")
    if s1:
        out += [
            at_least("s1", "rate ÷ quota", s1.share, 0.97),
            at_most("s1", "throttled fraction", s1.throttled_fraction, 0.01),
            at_most("s1", "dead-lettered", float(s1.dead_lettered), 0),
        ]
    if s2 := _worker(summaries, "s2"):
        out += [
            at_least("s2", "rate ÷ (quota − neighbour)", s2.share, 0.85),
            at_most("s2", "throttled fraction", s2.throttled_fraction, 0.05),
        ]
    if s3 := _worker(summaries, "s3"):
        out += [
            at_least("s3", "rate (all replicas) ÷ quota", s3.share, 0.9),
            at_most("s3", "throttled fraction", s3.throttled_fraction, 0.05),
        ]
    if s4 := _worker(summaries, "s4"):
        one_region, basis = (s1.rate, "s1 rate") if s1 else (QUOTA, "quota")
        what = f"rate ÷ one region ({basis})"
        out.append(at_least("s4", what, s4.rate / one_region, REGIONS_SCALE_TARGET))
    if s5 := _worker(summaries, "s5"):
        ratio = None
        if bare and s5.cpu_ms_per_msg is not None:
            ratio = s5.cpu_ms_per_msg / float(bare["cpu_ms_per_call"])
        out += [
            at_most("s5", "CPU per message ÷ bare call", ratio, CPU_OVER_BARE_TARGET),
            at_most("s5", "SQS requests per message", s5.sqs_per_msg, SQS_PER_MSG_TARGET),
        ]
    return out


@dataclass(frozen=True)
class Target:
    """A bound on one figure of a worker run."""

    what: str
    figure: str
    limit: float
    at_least: bool


_BACKLOG = (
    Target("rate in the 3rd second ÷ quota", "third_second_share", 0.9, True),
    Target("rate after the 1st second ÷ quota", "share_after_first_s", 0.97, True),
    Target("throttled fraction", "throttled_fraction", 0.02, False),
    Target("lowest 1-s rate after the 1st second ÷ quota", "lowest_1s_share", 0.5, True),
)

# The targets of the rate and bulkhead scenarios, by scenario key.
TARGETS: dict[str, tuple[Target, ...]] = {
    "backlog": _BACKLOG,
    "untyped": _BACKLOG,
    "spike": (
        Target("rate during the spike ÷ what it leaves", "spike_share", 0.85, True),
        Target("rate 3-5 s after the spike ÷ quota", "recovered_share", 0.95, True),
    ),
    "replicas": (
        Target("steady rate (all replicas) ÷ quota", "share", 0.95, True),
        Target("throttled fraction", "throttled_fraction", 0.03, False),
    ),
    "step": (
        Target("follows the drop to 10/s within, s", "step1_follow_s", STEP_FOLLOW_S, False),
        Target("follows the rise to 25/s within, s", "step2_follow_s", STEP_FOLLOW_S, False),
    ),
    "denied": (Target("other pools' rate ÷ their quota", "share_after_first_s", 0.95, True),),
    "outage": (Target("healthy regions' rate ÷ their quota", "share_after_first_s", 0.95, True),),
    "flood": (Target("other users' finish ÷ fair-share time", "finish_vs_fair", 1.3, False),),
    "fair": (Target("rate after the 1st second ÷ quota", "share_after_first_s", 0.97, True),),
    "trickle": (Target("trickle tenant's p99 latency, s", "latency_p99_s", 2.0, False),),
}


def _figure(s: Summary, name: str) -> float | None:
    """A figure of tests.bench.figures, or the run's steady share or throttled fraction."""
    if name == "share":
        return s.share
    return s.throttled_fraction if name == "throttled_fraction" else s.figures.get(name)


def _issue_targets(s: Summary) -> list[Check]:
    label = run_label(s)
    return [
        Check(label, t.what, _figure(s, t.figure), t.limit, t.at_least)
        for t in TARGETS.get(s.scenario, ())
    ]


def checks(summaries: Sequence[Summary], bare: dict[str, Any] | None) -> list[Check]:
    workers = [s for s in summaries if s.consumer == WORKER]
    drains = [s for s in workers if s.messages == s.measured and not s.time_boxed]
    out = [_yes(run_label(s), "drained, exited 0 by itself", _clean_exit(s)) for s in drains]
    out += _classic(summaries, bare)
    for s in workers:
        out += _issue_targets(s)
    out += [
        at_most(run_label(s), "peak RSS MiB (each replica)", s.peak_rss_mib, RSS_LIMIT_MIB)
        for s in workers
    ]
    return out
