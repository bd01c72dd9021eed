"""How busy the machine is: other people's processes skew a 2-core benchmark."""

from __future__ import annotations

import os
import time


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(seconds: float = 1.0) -> float:
    """Share of all cores busy over ``seconds`` (0..1)."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_until_quiet(max_wait: float, threshold: float = 0.25, quiet_seconds: int = 2) -> dict[str, float]:
    """Wait (at most ``max_wait`` s) for ``quiet_seconds`` in a row below ``threshold`` busy."""
    started = time.monotonic()
    quiet = 0
    busy = busy_fraction(0.5)
    while time.monotonic() - started < max_wait:
        busy = busy_fraction(1.0)
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= quiet_seconds:
            break
    return {
        "busy_before": round(busy, 3),
        "waited_s": round(time.monotonic() - started, 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


class BusyMeter:
    """CPU busy share of the whole machine between ``start()`` and ``stop()``."""

    def start(self) -> BusyMeter:
        self._begin = _cpu_times()
        return self

    def stop(self) -> float:
        busy1, total1 = _cpu_times()
        busy0, total0 = self._begin
        return round((busy1 - busy0) / max(1, total1 - total0), 3)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _cpu_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # utime, stime, cutime, cstime (clock ticks): children that exited count too.
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process and its descendants."""
    tree = _children()
    totals = {}
    for name, root in pids.items():
        seen, stack, total = set(), [root], 0.0
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            total += _cpu_of(pid)
            stack.extend(tree.get(pid, []))
        totals[name] = total
    return totals


def server_pids() -> dict[str, int]:
    """PostgreSQL, RabbitMQ, Kafka and Redis as services/up.sh recorded them (shared with others!)."""
    from bench.environment import DATA_DIR

    pids = {}
    for name, file in (
        ("postgres", "postgres.pid"),
        ("rabbitmq", "rabbitmq.pid"),
        ("kafka", "kafka.pid"),
        ("redis", "redis.pid"),
    ):
        try:
            pids[name] = int((DATA_DIR / "run" / file).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return pids


def machine_busy_seconds() -> float:
    """CPU seconds all cores have been busy since boot."""
    busy, _ = _cpu_times()
    return busy / os.sysconf("SC_CLK_TCK")
