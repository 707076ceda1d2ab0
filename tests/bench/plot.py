"""Plots the benchmark's JSON record: verdicts applied per second against the capacity, one
figure per group of scenarios (classic.png, rate_control.png, bulkheads.png), one panel per
scenario, every consumer of the scenario in its panel.

Runs in the benchmark's own virtualenv (matplotlib is not a project dependency), so it uses
nothing but the standard library and matplotlib:

    tests/bench/.venvs/plot/bin/python tests/bench/plot.py out/results.json out/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib  # type: ignore[import-not-found, unused-ignore]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

WORKER_COLOURS = ("tab:blue", "tab:purple", "tab:cyan")
PEER_COLOURS = {"boto3-loop": "tab:orange", "sqs-consumer": "tab:green"}
SERIES_STYLES = ("--", ":", "-.")
PANEL_HEIGHT_IN = 3.0
FIGURES = {
    "classic": ("classic.png", "s1-s5: the worker's ceiling at the quota"),
    "rate": (
        "rate_control.png",
        "Rate control: the worker's ceiling at 4x and 40x the quota (untyped: 1,000/s)",
    ),
    "bulkheads": ("bulkheads.png", "Bulkheads: one failing or greedy scope beside healthy ones"),
}


def _label(run: dict[str, Any]) -> str:
    label = str(run["consumer"]) + (f" ×{run['replicas']}" if run["replicas"] > 1 else "")
    if run["consumer"] == "worker" and run["group"] == "rate" and run["rate_limit"]:
        label += f" (ceiling {run['rate_limit']:g}/s)"
    return label


def _colour(run: dict[str, Any], worker_index: int) -> str:
    if run["consumer"] == "worker":
        return WORKER_COLOURS[worker_index % len(WORKER_COLOURS)]
    return PEER_COLOURS.get(str(run["consumer"]), "tab:gray")


def _capacity(ax: Any, marks: dict[str, Any], seconds: int) -> None:
    steps = marks.get("capacity")
    if not steps or steps[0][1] is None:
        return
    xs = [float(t) for t, _ in steps] + [float(seconds)]
    ys = [float(c) for _, c in steps]
    ax.step(xs, [*ys, ys[-1]], where="post", color="black", ls="--", lw=1, label="capacity")


def _run(ax: Any, run: dict[str, Any], colour: str) -> None:
    timeline = run["timeline"]
    label = _label(run)
    measured = timeline["measured"]
    ax.plot(range(len(measured)), measured, color=colour, lw=1.5, label=f"{label} applied/s")
    series = timeline["applied"]
    if run["consumer"] == "worker" and len(series) > 1:
        for style, (name, counts) in zip(SERIES_STYLES, series.items(), strict=False):
            ax.plot(range(len(counts)), counts, style, color=colour, lw=0.8, label=f"  {name}")
    throttled = [(i, n) for i, n in enumerate(timeline["throttles"]) if n]
    if throttled:
        xs, ys = zip(*throttled, strict=True)
        mark = "tab:red" if run["consumer"] == "worker" else colour
        ax.scatter(xs, ys, marker="x", s=12, color=mark, label=f"  throttled/s, {label}")


def _panel(ax: Any, key: str, title: str, runs: list[dict[str, Any]]) -> None:
    workers = 0
    for run in runs:
        _run(ax, run, _colour(run, workers))
        workers += run["consumer"] == "worker"
    first = runs[0]["timeline"]
    marks = first["marks"]
    _capacity(ax, marks, max(r["timeline"]["seconds"] for r in runs))
    if spike := marks.get("spike"):
        ax.axvspan(spike[0], spike[1], color="gray", alpha=0.15, label="neighbour's spike")
    if neighbour := first.get("neighbour_successes"):
        ax.plot(
            range(len(neighbour)), neighbour, color="gray", lw=1, label="neighbour's successes/s"
        )
    if "end" in marks:
        ax.axvline(marks["end"], color="gray", lw=0.8, ls=":")
    ax.set_title(f"{key}: {title}", fontsize=9, loc="left")
    ax.set_ylabel("per second")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper right", ncol=2)


def _figure(record: dict[str, Any], group: str, png_path: Path, suptitle: str) -> bool:
    titles: dict[str, str] = record["meta"]["scenarios"]
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for run in record["runs"]:
        if run["group"] == group:
            by_scenario.setdefault(run["scenario"], []).append(run)
    keys = [k for k in titles if k in by_scenario]
    if not keys:
        return False
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, PANEL_HEIGHT_IN * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        _panel(ax, key, titles[key], by_scenario[key])
    axes[-1, 0].set_xlabel("seconds since the consumer started")
    fig.suptitle(f"{suptitle}: verdicts applied per second (throttles marked x)", fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return True


def main(results_path: Path, out_dir: Path) -> None:
    record = json.loads(results_path.read_text())
    for group, (name, suptitle) in FIGURES.items():
        if _figure(record, group, out_dir / name, suptitle):
            print(out_dir / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
