"""CPU time of processes from /proc, for the benchmarks that say what each process cost.

- `cpu_seconds(pid)`: utime + stime of one process (its own threads; not its children);
- `tree(pid)`: the process and its live descendants (uvicorn's worker processes under
  `pixeltrack serve --workers N`, the multiprocessing helpers);
- `tree_cpu(pid)`: pid → CPU seconds over that tree, read at one moment, so a difference of two
  readings taken while the processes live is what each used in between (a reaped child's time
  would only show in its parent's cutime, which is why the readings are taken before stopping);
- `pids_of(name)`: the processes whose command name is `name` (e.g. the system mariadbd);
- `machine_busy()`: busy and total jiffies of all cores (two readings: how busy the machine was,
  whoever kept it so).
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        # The command name (field 2) may hold spaces and parentheses: split after its last ")".
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (0 if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree(pid: int) -> list[int]:
    """`pid` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu(pid: int) -> dict[int, float]:
    return {p: cpu_seconds(p) for p in tree(pid)}


def used(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    """CPU seconds each process of `after` used since `before` (a process started in between: all of it)."""
    return {p: after[p] - before.get(p, 0.0) for p in after}


def pids_of(name: str) -> list[int]:
    """Processes whose command name is `name` (the system Redis and MariaDB, shared with others)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def cores_busy(before: tuple[float, float], after: tuple[float, float]) -> float:
    """How many cores the whole machine kept busy between two `machine_busy()` readings."""
    return (after[0] - before[0]) / max(1.0, after[1] - before[1]) * (os.cpu_count() or 1)
