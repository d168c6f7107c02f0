"""Measuring a receiver: what its latency and memory depend on, and inputs to time it with.

``qgesco bench`` and the benchmark scripts (bench/receiver.py, bench/full_width.py) measure with
these, so that a user timing their own model gets figures comparable to docs/runtime.md: one
guided step is the unit (conditional and unconditional pass as one batch-2 forward, as the
receiver runs it), peak RSS is the process's high-water mark, and the machine line records the
CPU's int8 capability, which decides whether the int8 backend pays off.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..channel import encode
from ..diffusion import create_diffusion, make_sampler
from ..models.checkpoint import create_model
from ..models.unet import UNetModel
from .allocator import keep_freed_memory
from .int8 import pairs_saturate

CPUINFO = Path("/proc/cpuinfo")

#: The /proc/cpuinfo flags that change which kernels run: AMX tiles, int8 dot products, bf16 arithmetic.
KERNEL_FLAGS = ("avx2", "avx512f", "avx_vnni", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def _cpuinfo_field(names: tuple[str, ...]) -> str | None:
    try:
        lines = CPUINFO.read_text().splitlines()
    except OSError:
        return None
    return next((line.partition(":")[2].strip() for line in lines if line.startswith(names)), None)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo``; empty where there is none."""
    return set((_cpuinfo_field(("flags", "Features")) or "").split())


def cpu_class(flags: set[str]) -> str:
    """The class a CPU's int8 / bf16 ratios belong to: AMX, AVX-512 VNNI, AVX-512, AVX2 or other.
    Each changes every receiver ratio (docs/runtime.md), so every measurement names it."""
    if "amx_int8" in flags:
        return "AMX"
    if "avx512_vnni" in flags:
        return "AVX-512 VNNI"
    if "avx512f" in flags:
        return "AVX-512"
    return "AVX2" if "avx2" in flags else "other"


@functools.cache
def onednn_isa() -> str:
    """The ISA oneDNN actually dispatches to, as its verbose header names it: what the hardware has,
    capped by ``ONEDNN_MAX_CPU_ISA``. Read by running one int8 convolution with verbose output caught
    at the file-descriptor level (oneDNN prints from C); "unknown" where that is not possible."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:
        return "unknown"
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                pairs_saturate.__wrapped__()
        except RuntimeError:
            pass
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        caught.seek(0)
        text = caught.read().decode(errors="replace")
    return next((line.split("isa:", 1)[1].strip() for line in text.splitlines() if ",isa:" in line), "unknown")


def machine() -> dict:
    """CPU, its class and kernel flags, the ISA oneDNN runs, int8 capability and library versions: what
    every timing depends on.

    ``cpu_class`` is the hardware's; ``onednn_isa`` what ran, lower where ``ONEDNN_MAX_CPU_ISA``
    (recorded as ``forced_isa``) caps it: such numbers are indications of another class, not that CPU.
    ``int8_pairs_saturate`` is True on CPUs without VNNI, where the int8 kernels sum pairs in
    int16 and qgesco uses 7-bit grids (docs/runtime.md)."""
    cpu = _cpuinfo_field(("model name",)) or platform.processor() or platform.machine()
    flags = cpu_flags()
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_class": cpu_class(flags),
        "cpu_flags": sorted(flags & set(KERNEL_FLAGS)),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "onednn_isa": onednn_isa(),
        "forced_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "int8_pairs_saturate": pairs_saturate(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def machine_line(m: dict) -> str:
    """One line naming what a measurement ran on: CPU, cores, class, the kernels oneDNN dispatched
    (marked as an indication when ``ONEDNN_MAX_CPU_ISA`` capped them), int8 capability, torch."""
    int8 = "no VNNI: int8 pairs saturate, 7-bit grids" if m["int8_pairs_saturate"] else "int8 VNNI"
    kernels = f"oneDNN {m['onednn_isa']}"
    if m.get("forced_isa"):
        kernels += f", capped by ONEDNN_MAX_CPU_ISA={m['forced_isa']}: an indication, not that CPU class"
    return f"{m['cpu']}, {m['cores']} cores, class {m['cpu_class']} ({kernels}), {int8}, torch {m['torch']}"


def peak_rss_mb() -> float:
    """This process's peak resident set in MB. ``VmHWM`` where there is ``/proc``: ``ru_maxrss`` keeps
    the peak of the forked parent across ``exec``, so a subprocess of a big parent would report the parent's."""
    try:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux, bytes on macOS


def random_maps(cfg, n: int, seed: int) -> torch.Tensor:
    """``n`` blocky random one-hot maps (+ edges if the model takes them) of ``cfg.image_hw``:
    latency does not depend on the map, only its shape, so no dataset is needed to time a model."""
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.image_hw
    labels = torch.randint(cfg.num_classes, (n, 1, max(1, h // 8), max(1, w // 8)), generator=g)
    labels = torch.nn.functional.interpolate(labels.float(), size=(h, w), mode="nearest")[:, 0].long()
    return encode(labels, cfg.num_classes, None if cfg.no_instance else labels)


def randomize_zero_init(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give the zero-initialised convs (the published init of every block's last conv and the output
    head) seeded random weights: an untrained model then has outputs that depend on every layer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


def measure_step(model, cfg, reps: int, warmup: int) -> list[float]:
    """Milliseconds of each of ``reps`` guided DDIM steps (guidance 2, both passes as one batch-2
    forward) at ``cfg.image_hw``, after ``warmup`` untimed ones (the first calls pay for allocation
    and kernel selection)."""
    process = make_sampler(create_diffusion(), "ddim25").diffusion
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, *cfg.image_hw, generator=g)
    y = random_maps(cfg, 1, seed=2)
    t = torch.tensor([process.num_timesteps // 2])
    times = []
    with torch.no_grad():
        for i in range(warmup + reps):
            start = time.perf_counter()
            process.ddim_sample(model, x, t, y, guidance=2.0, batch_cfg=True)
            if i >= warmup:
                times.append(1000 * (time.perf_counter() - start))
    return times


def random_model(cfg, seed: int) -> UNetModel:
    """A model of ``cfg`` with seeded random weights (:func:`randomize_zero_init`), in eval mode and
    channels_last, the allocator set, as ``load_model`` gives a float model: what ``qgesco bench`` times
    for a preset."""
    model = randomize_zero_init(create_model(cfg, seed=seed), seed).eval()
    keep_freed_memory()
    return model.to(memory_format=torch.channels_last)


def step_figures(model, cfg, reps: int, warmup: int) -> dict:
    """What ``qgesco bench`` reports of a made model: its backend, each guided step's milliseconds
    (:func:`measure_step`) and their median, the process's peak RSS, threads and the machine."""
    backend = getattr(model, "runtime_backend", ("fp32", "full precision, eager PyTorch, channels_last"))
    times = measure_step(model, cfg, reps, warmup)
    return {
        "backend": list(backend),
        "step_ms": times,
        "step_ms_median": statistics.median(times),
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
        "warmup": warmup,
        "machine": machine(),
    }
