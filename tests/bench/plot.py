"""Plots the benchmark's JSON record: verdicts applied per second against the quota.

Runs in the benchmark's own virtualenv (matplotlib is not a project dependency), so it uses
nothing but the standard library and matplotlib:

    tests/bench/.venvs/plot/bin/python tests/bench/plot.py out/results.json out/rate.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib  # type: ignore[import-not-found, unused-ignore]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

COLOURS = {"worker": "tab:blue", "boto3-loop": "tab:orange", "sqs-consumer": "tab:green"}
REGION_STYLES = ("-", "--", ":")
QUOTA = 25.0
PANEL_HEIGHT_IN = 2.8


def _panel(ax: Any, scenario: str, title: str, runs: list[dict[str, Any]]) -> None:
    for run in runs:
        colour = COLOURS.get(run["consumer"], "tab:gray")
        label = run["consumer"] + (f" ×{run['replicas']}" if run["replicas"] > 1 else "")
        timeline = run["timeline"]
        by_region = timeline["applied"]
        if run["consumer"] == "worker" and len(by_region) > 1:
            for style, (region, counts) in zip(
                REGION_STYLES, sorted(by_region.items()), strict=False
            ):
                ax.plot(
                    range(len(counts)), counts, style, color=colour, lw=1, label=f"{label} {region}"
                )
        total = [
            sum(c[i] for c in by_region.values() if i < len(c)) for i in range(timeline["seconds"])
        ]
        ax.plot(range(len(total)), total, color=colour, lw=1.5, label=f"{label} applied/s")
        if run.get("neighbour"):
            everyone = timeline["all_successes"]
            ax.plot(
                range(len(everyone)), everyone, color="gray", lw=1, label="all callers' successes/s"
            )
        throttled = [(i, n) for i, n in enumerate(timeline["throttles"]) if n]
        if throttled:
            xs, ys = zip(*throttled, strict=True)
            mark = "tab:red" if run["consumer"] == "worker" else colour
            ax.scatter(
                xs,
                ys,
                marker="x",
                s=14,
                color=mark,
                label=f"throttled/s, all callers ({label} run)",
            )
    capacity = runs[0].get("capacity")
    if capacity:
        ax.axhline(capacity, color="black", ls="--", lw=1, label=f"capacity {capacity:g}/s")
        if capacity != QUOTA:
            ax.axhline(QUOTA, color="gray", ls=":", lw=1, label=f"one region's quota {QUOTA:g}/s")
    ax.set_title(f"{scenario}: {title}", fontsize=9, loc="left")
    ax.set_ylabel("per second")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper right", ncol=2)


def main(results_path: Path, png_path: Path) -> None:
    record = json.loads(results_path.read_text())
    titles: dict[str, str] = record["meta"]["scenarios"]
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for run in record["runs"]:
        by_scenario.setdefault(run["scenario"], []).append(run)
    keys = [k for k in titles if k in by_scenario]
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, PANEL_HEIGHT_IN * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        _panel(ax, key, titles[key], by_scenario[key])
    axes[-1, 0].set_xlabel("seconds since the consumer started")
    fig.suptitle("Verdicts applied per second against the Cognito quota (throttles marked x)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
