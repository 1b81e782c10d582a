"""What every benchmark writes: the machine it ran on, its figures as JSON, a short table."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def ffmpeg_version(ffmpeg: str) -> str:
    """The first line of ``ffmpeg -version``."""
    output = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=True)
    return output.stdout.splitlines()[0]


def machine() -> dict[str, Any]:
    """Where and when the figures were taken."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def write(name: str, figures: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json (machine info first) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **figures}, indent=2))
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, columns right-aligned except the first."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first, *rest = row
        padded = (cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True))
        return "  ".join([first.ljust(widths[0]), *padded])

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])])


def _machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process (all threads) and of its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


@dataclass
class CpuUse:
    """CPU seconds spent during a measured spell, by whom."""

    own_s: float  # this process, every thread
    children_s: float  # subprocesses that finished within the spell (ffmpeg)
    foreign_s: float  # everything else on the machine: other people's work skews wall times


class CpuMeter:
    """Counts CPU seconds from construction until ``stop()``."""

    def __init__(self) -> None:
        self._machine = _machine_busy_seconds()
        self._own, self._children = _own_cpu_seconds()

    def stop(self) -> CpuUse:
        own, children = _own_cpu_seconds()
        own -= self._own
        children -= self._children
        machine = _machine_busy_seconds() - self._machine
        return CpuUse(
            round(own, 2), round(children, 2), round(max(0.0, machine - own - children), 2)
        )


def wait_for_quiet(
    max_wait_s: float, busy_cores: float = 0.25, window_s: float = 2.0
) -> tuple[float, float]:
    """Wait (at most `max_wait_s`) until the rest of the machine uses under `busy_cores` cores
    over a `window_s` window, so that someone else's test run does not land in a timing.
    Returns (seconds waited, cores the rest of the machine used in the last window)."""
    started = time.monotonic()
    while True:
        meter = CpuMeter()
        time.sleep(window_s)
        load = meter.stop().foreign_s / window_s
        waited = time.monotonic() - started
        if load < busy_cores or waited >= max_wait_s:
            return round(waited, 1), round(load, 2)
