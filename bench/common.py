"""Helpers shared by the benchmark scripts: machine description, timing, result files."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from qgesco.fileio import write_json, write_text
from qgesco.runtime import timing

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """qgesco.runtime.timing.machine() (CPU, ISA, int8 capability, versions) and torch's thread count."""
    return {**timing.machine(), "torch_threads": torch.get_num_threads()}


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
    vnni = ", no VNNI (int8 pairs saturate)" if m["int8_pairs_saturate"] else ", int8 VNNI"
    ort = f", onnxruntime {m['onnxruntime']}" if "onnxruntime" in m else ""
    text = (
        f"{table}\nMachine: {m['cpu']}, {m['cores']} cores, {m['isa']}{vnni}, torch {m['torch']} "
        f"({m['torch_threads']} threads){ort}. Command: `{command}`\n"
    )
    write_text(RESULTS / f"{name}.md", text)
    print(text)
