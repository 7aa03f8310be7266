"""Benchmark results: the metric record, the machine they were measured on, the table and the JSON.

`bench/results.json` is ``{"machine": {...}, "metrics": [{"name", "value", "unit", "baseline",
"notes"}]}`` (DESIGN.md, Benchmarks). A figure that depends on the machine carries the same-run
figure it should be compared with as ``baseline: {"name", "value", "unit"}``; ratios and the
floors themselves have ``baseline: null``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Baseline:
    name: str
    value: float | None
    unit: str


@dataclass(frozen=True)
class Metric:
    name: str
    value: float | None
    unit: str
    baseline: Baseline | None = None
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["value"] = _round(self.value)
        if self.baseline is not None:
            record["baseline"]["value"] = _round(self.baseline.value)
        return record


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 3) if abs(value) < 100 else round(value, 1)


def cpu_busy_fraction(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over `seconds` (from /proc/stat; 0.0 where it does not exist)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return 0.0
    total = total1 - total0
    return 1.0 - (idle1 - idle0) / total if total else 0.0


def machine_info(background_busy: float) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # Other work on the machine skews every figure; these say how quiet it was at the start.
        "load_average_1m": round(load[0], 2),
        "background_cpu_busy_pct": round(100 * background_busy, 1),
    }


def write_json(path: Path, machine: dict[str, Any], metrics: list[Metric]) -> None:
    document = {"machine": machine, "metrics": [m.as_dict() for m in metrics]}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ratio":
        return f"{value:.3f}"
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def format_table(metrics: list[Metric]) -> str:
    rows = [("metric", "value", "baseline (same run)")]
    for m in metrics:
        base = f"{_figure(m.baseline.value, m.baseline.unit)}  {m.baseline.name}" if m.baseline else ""
        rows.append((m.name, _figure(m.value, m.unit), base))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for n, row in enumerate(rows):
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}".rstrip())
        if n == 0:
            lines.append("-" * (sum(widths) + 4))
    lines.append("")
    lines.append("notes:")
    lines += [f"  {m.name}: {m.notes}" for m in metrics if m.notes]
    return "\n".join(lines)
