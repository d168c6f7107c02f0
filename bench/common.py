"""Helpers shared by the benchmark scripts: machine description, timing, result files."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from qgesco.fileio import write_json, write_text

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


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
    write_json(RESULTS / f"{name}.json", {**payload, "machine": machine(), "command": command})
    m = machine()
    text = (
        f"{table}\nMachine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads). "
        f"Command: `{command}`\n"
    )
    write_text(RESULTS / f"{name}.md", text)
    print(text)
