"""py-spy around processes the benchmark started, summarised as a plain-text top list."""

from __future__ import annotations

import collections
import shutil
import subprocess
from pathlib import Path

from bench.environment import ROOT


def py_spy() -> str | None:
    candidate = ROOT / ".venv" / "bin" / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def start_record(pid: int, out: Path, duration: int, rate: int = 200) -> subprocess.Popen[bytes] | None:
    """Sample ``pid`` and its children for ``duration`` s into a collapsed-stack file."""
    tool = py_spy()
    if tool is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            tool,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--duration",
            str(duration),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes] | None, timeout: float = 60.0) -> None:
    if proc is None:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        proc.wait(10)


CATEGORIES = [
    # (label, test on the whole stack's frames), first match wins, checked in this order
    (
        "SQLAlchemy: building and compiling statements",
        lambda fs: any("sqlalchemy/sql/" in f or "sql/compiler.py" in f or "sql/crud.py" in f for f in fs),
    ),
    (
        "database round trips (driver execute/fetch, commit)",
        lambda fs: any(
            k in f for f in fs for k in ("do_execute", "execute_values", "do_commit", "do_ping", "fetchall")
        ),
    ),
    ("event parsing and validation (json, pydantic)", lambda fs: any("parse_event" in f for f in fs)),
    (
        "Kafka client calls",
        lambda fs: any(f.startswith(("Producer.", "Consumer.")) and "<built-in>" in f for f in fs),
    ),
    ("logging", lambda fs: any("logging/__init__.py" in f or "observability/logs.py" in f for f in fs)),
    (
        "Celery/kombu/billiard: messages and pool IPC",
        lambda fs: (
            not any(
                p in f
                for f in fs
                for p in ("query_api/", "projector/", "outbox_relay/", "auth_api/", "bench/")
            )
        ),
    ),
]


def summarize(collapsed: Path, out: Path, top: int = 30) -> str:
    """Where the samples of a py-spy raw (collapsed) file went: by category, then by function."""
    if not collapsed.exists():
        return "no profile recorded"
    self_counts: collections.Counter[str] = collections.Counter()
    project: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames or _idle(frames[-1]):
            continue
        total += count
        self_counts[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames if _in_project(f)}:
            project[frame] += count
        label = next((name for name, test in CATEGORIES if test(frames)), "other")
        categories[label] += count
    lines = [f"samples (on CPU): {total}", "", "by category (first match in this order):"]
    lines += [f"  {100 * c / max(1, total):5.1f}%  {name}" for name, c in categories.most_common()]
    lines += ["", "project functions, inclusive:"]
    lines += [f"  {100 * c / max(1, total):5.1f}%  {f}" for f, c in project.most_common(top)]
    lines += ["", "self time, all functions:"]
    lines += [f"  {100 * c / max(1, total):5.1f}%  {f}" for f, c in self_counts.most_common(top)]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def _in_project(frame: str) -> bool:
    where = frame.partition(" (")[2]
    return "site-packages" not in where and any(
        part in where
        for part in (
            "query_api/",
            "projector/",
            "outbox_relay/",
            "auth_api/",
            "event_contract/",
            "bench/",
            "web/",
            "observability/",
        )
    )


def _idle(frame: str) -> bool:
    return any(
        word in frame
        for word in ("(select.py", "select (", "poll (", "epoll", "_wait (threading", "wait (threading")
    )


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"
