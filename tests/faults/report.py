"""The results table: one row per fault, then each run's problems, checks and notes."""

from __future__ import annotations

from collections.abc import Sequence

from tests.faults.base import ScenarioResult

COLUMNS = (
    "fault",
    "sent",
    "applied",
    "dead-lettered (by code)",
    "lost",
    "wrong DLQ",
    "stale",
    "dup applied",
    "left",
    "recovery (ready / progress)",
    "result",
)


def _row(result: ScenarioResult) -> list[str]:
    t = result.tally
    codes = ", ".join(f"{code} {n}" for code, n in sorted(t.dead_lettered.items())) or "-"
    recovery = "; ".join(r.describe() for r in result.recoveries) or "-"
    return [
        result.name,
        str(t.sent),
        str(t.applied),
        f"{sum(t.dead_lettered.values())} ({codes})",
        str(t.lost),
        str(t.wrongly_dead_lettered),
        str(t.stale),
        str(t.duplicates_applied),
        str(t.left),
        recovery,
        "PASS" if result.ok else "FAIL",
    ]


def table(results: Sequence[ScenarioResult]) -> str:
    """A Markdown table (readable as plain text too)."""
    rows = [list(COLUMNS), *(_row(r) for r in results)]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("---" for _ in COLUMNS) + "|")
    return "\n".join(lines)


def details(results: Sequence[ScenarioResult]) -> str:
    out: list[str] = []
    for result in results:
        t = result.tally
        out.append(f"### {result.name} ({result.elapsed_s:.0f}s)")
        for name, passed in result.checks.items():
            out.append(f"- [{'x' if passed else ' '}] {name}")
        if t.duplicate_dlq_copies:
            out.append(f"- duplicate DLQ copies: {t.duplicate_dlq_copies}")
        out.extend(f"- note: {note}" for note in result.notes)
        out.extend(f"- problem: {problem}" for problem in t.problems)
        out.append("")
    return "\n".join(out)


def render(results: Sequence[ScenarioResult]) -> str:
    return table(results) + "\n\n" + details(results)
