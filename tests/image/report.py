"""What make image-test prints: one line per check, facts as they are measured, a verdict."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class Report:
    """Checks passed and failed, and measured facts, printed as they come."""

    failures: list[str] = field(default_factory=list)
    passed: int = 0
    facts: list[tuple[str, str]] = field(default_factory=list)

    def section(self, title: str) -> None:
        print(f"\n== {title} ==", flush=True)

    def note(self, text: str) -> None:
        print(f"   {text}", flush=True)

    def fact(self, label: str, value: str) -> None:
        self.facts.append((label, value))
        print(f"   {label}: {value}", flush=True)

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(f"{name}: {detail}" if detail else name)
        mark = "ok  " if ok else "FAIL"
        print(f"{mark} {name}" + (f" ({detail})" if detail else ""), flush=True)
        return ok

    def finish(self) -> int:
        print("\n== summary ==")
        for label, value in self.facts:
            print(f"{label:<34} {value}")
        print(f"{self.passed} passed, {len(self.failures)} failed")
        for failure in self.failures:
            print(f"FAILED: {failure}", file=sys.stderr)
        return 0 if not self.failures else 1
