"""Helpers shared by the benchmark scripts: machine description, timing, result files."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from qgesco.fileio import write_json, write_text
from qgesco.runtime import timing

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """qgesco.runtime.timing.machine() (CPU, class, ISA, int8 capability, versions), torch's thread count,
    the date and the commit."""
    return {
        **timing.machine(),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
    }


def commit() -> str:
    """The checkout's commit (with "+dirty" when it has uncommitted changes): results name what measured them."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def median_ms(fn: Callable[[], object], warmup: int = 2, repeat: int = 7) -> float:
    """Median wall time of ``fn`` in milliseconds, warm-up runs excluded."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def save(name: str, payload: dict, table: str, command: str) -> None:
    """Write ``results/NAME.json`` and ``results/NAME.md`` (table + machine + command), print the table."""
    m = machine()
    write_json(RESULTS / f"{name}.json", {**payload, "machine": m, "command": command})
    ort = f", onnxruntime {m['onnxruntime']}" if "onnxruntime" in m else ""
    text = (
        f"{table}\nMachine: {timing.machine_line(m)} ({m['torch_threads']} threads){ort}. "
        f"Command: `{command}`\nMeasured {m['date']} at commit {m['commit']}.\n"
    )
    write_text(RESULTS / f"{name}.md", text)
    print(text)
