"""Results of a benchmark run: one JSON file, one Markdown table, PNG plots (no project imports)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.environment import ROOT

ORDER = ["relay", "projection", "e2e", "read_api", "write_api", "consistency", "idle"]


def build(results_dir: Path, summaries: dict[str, dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Write results.json, results.md and the plots; return the combined document."""
    results: dict[str, Any] = {}
    for name in ORDER:
        path = results_dir / f"{name}.json"
        if name in summaries and path.exists() and summaries[name].get("ok"):
            results[name] = json.loads(path.read_text())
    document = {"meta": {**meta, "git": _git_head()}, "runs": summaries, "results": results}
    plots = plot_all(results_dir, results)
    document["plots"] = [p.name for p in plots]
    (results_dir / "results.json").write_text(json.dumps(document, indent=1, default=str))
    markdown = to_markdown(document)
    (results_dir / "results.md").write_text(markdown)
    return document


def _git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def scoreboard(document: dict[str, Any]) -> list[str]:
    """Every figure that has a target (issue 13's and earlier issues'), with PASS or MISS."""
    lines = ["| benchmark | figure | value | unit | target | |", "|---|---|---:|---|---|---|"]
    for name in ORDER:
        run = document["runs"].get(name)
        if run is None or not run.get("ok"):
            continue
        for r in document["results"][name].get("rows", []):
            if r.get("ok") is None:
                continue
            verdict = "PASS" if r["ok"] else "**MISS**"
            value, unit = _fmt(r["value"]), r.get("unit", "")
            lines.append(f"| {name} | {r['metric']} | {value} | {unit} | {r['target']} | {verdict} |")
    return lines


def machine_lines(document: dict[str, Any]) -> list[str]:
    """How busy the machine was during each benchmark (others' work skews a 2-core figure)."""
    out = []
    for name in ORDER:
        run = document["runs"].get(name)
        if not run:
            continue
        during = run.get("machine_during") or {}
        before = run.get("machine_before") or {}
        if not during:
            out.append(f"- {name}: {run.get('command')}")
            continue
        out.append(
            f"- {name}: {run.get('seconds', 0):.0f} s; machine busy during it "
            f"{100 * during.get('busy', 0):.0f}% of {document['meta'].get('cpus')} cores, load average "
            f"{during.get('loadavg_1m', '?')} at the end"
            + (
                f"; busy {100 * before['busy_before']:.0f}% before the start"
                if "busy_before" in before
                else ""
            )
        )
    return out


def table_rows(document: dict[str, Any]) -> list[str]:
    lines = ["| benchmark | metric | value | unit | target | |", "|---|---|---:|---|---|---|"]
    for name in ORDER:
        run = document["runs"].get(name)
        if run is None:
            continue
        if not run.get("ok"):
            lines.append(f"| {name} | **failed**: {run.get('error', '')[:120]} | | | | ❌ |")
            continue
        for r in document["results"][name].get("rows", []):
            verdict = "" if r.get("ok") is None else ("✅" if r["ok"] else "❌ missed")
            lines.append(
                f"| {name} | {r['metric']} | {_fmt(r['value'])} | {r.get('unit', '')} "
                f"| {r.get('target') or ''} | {verdict} |"
            )
    return lines


def to_markdown(document: dict[str, Any]) -> str:
    meta = document["meta"]
    out = [
        "# Benchmark results",
        "",
        f"- when: {meta.get('started')} ({'tiny run' if meta.get('tiny') else 'full sizes'}, "
        f"{meta.get('seconds', 0):.0f} s in all"
        + (
            "; a partial run: the other benchmarks' rows come from earlier runs, see below)"
            if meta.get("partial")
            else ")"
        ),
        f"- command: `{meta.get('command')}`",
        f"- machine: {meta.get('cpus')} cores, git {meta.get('git')}",
        "",
        "## Every figure with a target (issue 13's and earlier ones)",
        "",
        *scoreboard(document),
        "",
        "Machine load (every benchmark shares this machine with whatever else runs on it):",
        "",
        *machine_lines(document),
        "",
        "## Every figure",
        "",
        *table_rows(document),
        "",
    ]
    for name in ORDER:
        run = document["runs"].get(name)
        if not run:
            continue
        notes = document["results"].get(name, {}).get("notes", []) if run.get("ok") else []
        quiet = run.get("machine_before") or {}
        out.append(f"## {name}")
        out.append("")
        busy = (
            f"; machine busy before the start {100 * quiet.get('busy_before', 0):.0f}% "
            f"(load {quiet.get('loadavg_1m', '?')})"
            if quiet
            else ""
        )
        out.append(f"- `{run.get('command')}`: {run.get('seconds', 0):.1f} s{busy}")
        out.extend(f"- {note}" for note in notes)
        out.append("")
    if document.get("plots"):
        out.append("## plots")
        out.append("")
        out.extend(f"![{p}]({p})" for p in document["plots"])
        out.append("")
    return "\n".join(out)


# --- plots -------------------------------------------------------------------------------


def plot_all(results_dir: Path, results: dict[str, Any]) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: F401
    except ImportError:
        return []
    made: list[Path] = []
    for maker in (_throughput_plot, _latency_plot):
        path = maker(results_dir, results)
        if path is not None:
            made.append(path)
    ramps = results.get("e2e", {}).get("series", {}).get("phases", {})
    for key in [k for k in ramps if k.startswith("ramp")]:
        path = _ramp_plot(results_dir, results, "e2e", key)
        if path is not None:
            made.append(path)
    return made


def _throughput_plot(results_dir: Path, results: dict[str, Any]) -> Path | None:
    import matplotlib.pyplot as plt

    panels = []
    if "relay" in results:
        panels.append(
            ("relay: outbox -> Kafka", {"relay": results["relay"]["series"]["throughput"]}, "events/s")
        )
    if "projection" in results:
        panels.append(
            ("projection: topic -> read model", results["projection"]["series"]["throughput"], "events/s")
        )
    for name in ("e2e",):
        if name not in results:
            continue
        phases = {k: v for k, v in results[name]["series"]["phases"].items() if not k.startswith("ramp")}
        lines = {}
        for label, phase in phases.items():
            lines[f"{label} sent"] = phase["sent_per_s"]
            lines[f"{label} visible"] = phase["visible_per_s"]
        panels.append((f"{name}: commands sent / events visible", lines, "per s"))
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    for ax, (title, lines, unit) in zip(axes[:, 0], panels, strict=True):
        for label, line in lines.items():
            if line.get("t"):
                span = line["t"][-1] - line["t"][0] if len(line["t"]) > 1 else 1.0
                t, rate = _smooth(line["t"], line["rate"], window=max(1.0, span / 60))
                ax.plot(t, rate, label=label, linewidth=1.2)
        ax.set_title(title)
        ax.set_xlabel("seconds since start")
        ax.set_ylabel(unit)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    path = results_dir / "throughput_over_time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _smooth(t: list[float], rate: list[float], window: float = 1.0) -> tuple[list[float], list[float]]:
    """Moving average over about ``window`` seconds (batches of events land in bursts)."""
    if len(t) < 3:
        return t, rate
    steps = sorted(b - a for a, b in zip(t, t[1:], strict=False) if b > a)
    step = steps[len(steps) // 2] if steps else window
    k = max(1, round(window / step))
    if k == 1:
        return t, rate
    averaged = [
        sum(rate[max(0, i - k + 1) : i + 1]) / len(rate[max(0, i - k + 1) : i + 1]) for i in range(len(rate))
    ]
    return t, averaged


def _cdf(values: list[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [100.0 * (i + 1) / n for i in range(n)]


def _latency_plot(results_dir: Path, results: dict[str, Any]) -> Path | None:
    import matplotlib.pyplot as plt

    panels = []
    lines = {}
    for name in ("e2e",):
        for label, phase in results.get(name, {}).get("series", {}).get("phases", {}).items():
            if not label.startswith("ramp") and phase.get("lag_ms"):
                lines[f"{name} {label}"] = {"kind": "samples", "values": phase["lag_ms"]}
    panels.append(("end to end: command answered -> visible in the read model", lines))
    for name, title in (
        ("read_api", "read API: request latency"),
        ("write_api", "write API: request latency"),
    ):
        if name in results:
            panels.append((title, results[name]["series"]["latency"]))
    panels = [p for p in panels if p[1]]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    for ax, (title, lines) in zip(axes[:, 0], panels, strict=True):
        for label, dist in lines.items():
            if dist["kind"] == "samples" and dist["values"]:
                x, y = _cdf(dist["values"])
            elif dist["kind"] == "percentiles":
                x = [p[1] for p in dist["points"]]
                y = [p[0] for p in dist["points"]]
            else:
                continue
            ax.plot(x, y, label=label, linewidth=1.4)
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("milliseconds (log scale)")
        ax.set_ylabel("percentile")
        ax.set_yticks([0, 25, 50, 75, 95])
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = results_dir / "latency_distribution.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ramp_plot(results_dir: Path, results: dict[str, Any], name: str, key: str = "ramp") -> Path | None:
    import matplotlib.pyplot as plt

    ramp = results.get(name, {}).get("series", {}).get("phases", {}).get(key)
    if not ramp:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.4), sharex=True)
    offset = 0.0
    for step in ramp:
        t = [offset + x for x in step["lag_t"]]
        top.scatter(t, step["lag_v"], s=2, label=f"{step['rate']:g}/s")
        sent = step["sent_per_s"]
        visible = step["visible_per_s"]
        bottom.plot([offset + x for x in sent["t"]], sent["rate"], color="tab:blue", linewidth=1)
        bottom.plot([offset + x for x in visible["t"]], visible["rate"], color="tab:orange", linewidth=1)
        end = max([*step["lag_t"], *sent["t"], *visible["t"], 0.0])
        offset += end + 1.0
    top.set_yscale("log")
    top.set_ylabel("lag, ms (log)")
    top.set_title(f"{name} {key}: lag of each command (answer -> visible)")
    top.legend(fontsize=8, markerscale=4)
    top.grid(True, alpha=0.3)
    bottom.set_ylabel("per s")
    bottom.set_xlabel("seconds (steps back to back)")
    bottom.legend(["commands sent", "events visible"], fontsize=8)
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    path = results_dir / f"{name}_{key.replace(' ', '_')}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z")


def main() -> None:
    """``python -m bench.report [DIR]``: rebuild results.md, results.json and the plots of DIR."""
    import sys

    from bench.environment import RESULTS_DIR

    results_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS_DIR
    previous = json.loads((results_dir / "results.json").read_text())
    document = build(results_dir, previous["runs"], {k: v for k, v in previous["meta"].items() if k != "git"})
    print("\n".join(table_rows(document)))


if __name__ == "__main__":
    main()
