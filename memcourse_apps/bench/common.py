"""What every benchmark section shares: repeated measurements, the machine, and Markdown tables.

Every figure the benchmark reports is the median of several runs, printed with its spread
(the lowest and highest run), because these machines are shared and one run proves little.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy

from memcourse.errors import CourseError

MIB = 2**20


class BenchError(CourseError):
    """The benchmark cannot run as asked; the message says why and what to do."""


def run_measurement(module: str, args: list[str], what: str, timeout: float,
                    env: dict[str, str] | None = None) -> Any:
    """Run `python -m module args` (a fresh measuring process) and return the JSON it prints
    last; a failure becomes a sentence (a full disk an OSError), not the child's traceback."""
    command = [sys.executable, "-m", module, *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        if "No space left on device" in done.stderr or "errno = 28" in done.stderr:
            raise OSError(errno.ENOSPC, "No space left on device")
        lines = done.stderr.strip().splitlines() or ["(no error output)"]
        raise BenchError(f"{what} failed: {lines[-1][:300]} (run `{' '.join(command)}` to "
                         "see the whole error)")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Stat:
    """Several runs of one measurement; reported as the median and the range of the runs."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(float(value))

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    @property
    def n(self) -> int:
        return len(self.values)

    def fmt(self, digits: int = 3, unit: str = "") -> str:
        """'1.23 (1.10–1.40)': the median, then the lowest and highest run."""
        if not self.values:
            return "n/a"
        med = num(self.median, digits)
        if self.n == 1:
            return f"{med}{unit} (1 run)"
        return f"{med}{unit} ({num(self.low, digits)}–{num(self.high, digits)})"

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "low": self.low, "high": self.high, "runs": self.values}


def ratio(top: Stat, bottom: Stat) -> Stat:
    """The run-by-run ratio top/bottom when both have runs paired in order, else of medians.

    Runs are paired because the benchmark interleaves them: run k of each measurement happened
    at about the same time, under about the same load.
    """
    if top.n == bottom.n and top.n > 0 and all(b > 0 for b in bottom.values):
        return Stat([t / b for t, b in zip(top.values, bottom.values, strict=True)])
    if bottom.median > 0:
        return Stat([top.median / bottom.median])
    return Stat()


def num(value: float, digits: int = 3) -> str:
    """A number with `digits` significant digits, without scientific notation for usual sizes."""
    if value != value:  # NaN
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** digits:
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - int(f"{magnitude:e}".split("e")[1]))
    return f"{value:,.{decimals}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (numbers right-aligned)."""
    rows = [[str(c) for c in r] for r in rows]
    align = ["---:" if rows and all(_numeric(r[i]) for r in rows) else "---"
             for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    head = text.split(" ")[0].replace(",", "").rstrip("x%")
    try:
        float(head)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- the machine


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, e.g. '1.20 0.95 0.80' ('n/a' where unknown)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _disk(path: Path) -> str:
    """The filesystem and block device holding `path`, and whether it spins (Linux)."""
    try:
        dev = os.stat(path).st_dev
        major, minor = os.major(dev), os.minor(dev)
        fstype = "?"
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        for line in mounts:
            parts = line.split()
            if parts[2] == f"{major}:{minor}":
                fstype = parts[parts.index("-") + 1]
        base = Path(f"/sys/dev/block/{major}:{minor}")
        name = base.resolve().name
        queue = base / "queue" if (base / "queue").exists() else base.parent / "queue"
        rotational = (queue / "rotational").read_text().strip() if queue.exists() else "?"
        kind = {"0": "the kernel reports it non-rotational",
                "1": "the kernel reports it rotational"}.get(rotational, "kind unknown")
        model = ""
        for candidate in (base / "device" / "model", base.parent / "device" / "model"):
            if candidate.exists():
                model = candidate.read_text().strip()
        vendor = " (virtio)" if name.startswith("vd") else ""
        return f"{fstype} on /dev/{name}{vendor}, {kind}{', ' + model if model else ''}"
    except (OSError, ValueError, IndexError):
        return "unknown"


def machine(path: Path) -> dict[str, str]:
    """What the numbers were measured on: CPU, cores, RAM, kernel, disk, software versions."""
    import h5py  # lazy: timing children of other formats run this module too
    import psutil  # lazy: ~20 ms that `memcourse --help` and every measuring child would pay
    import torch  # lazy: ~2 s; `memcourse --help` and every measuring child import this module

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical ({usable} usable by this process)",
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "disk": _disk(path),
        "software": (f"Python {platform.python_version()}, torch {torch.__version__}, "
                     f"numpy {numpy.__version__}, h5py {h5py.version.version} "
                     f"(HDF5 {h5py.version.hdf5_version})"),
    }
