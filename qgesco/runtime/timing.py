"""Measuring a receiver: what its latency and memory depend on, and inputs to time it with.

``qgesco bench`` and the benchmark scripts (bench/receiver.py, bench/full_width.py) measure with
these, so that a user timing their own model gets figures comparable to docs/runtime.md: one
guided step is the unit (conditional and unconditional pass as one batch-2 forward, as the
receiver runs it), peak RSS is the process's high-water mark, and the machine line records the
CPU's int8 capability, which decides whether the int8 backend pays off.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path

import torch

from ..channel import encode
from ..diffusion import create_diffusion, make_sampler
from .int8 import pairs_saturate


def machine() -> dict:
    """CPU, cores, ISA, int8 capability and library versions: what every timing depends on.

    ``int8_pairs_saturate`` is True on CPUs without VNNI, where the int8 kernels sum pairs in
    int16 and qgesco uses 7-bit grids (docs/runtime.md)."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "isa": torch.backends.cpu.get_cpu_capability(),
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
