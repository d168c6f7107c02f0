"""``qgesco bench`` / ``bench/receiver.py``: what the low-bit receiver saves, analytic and measured.

For one model (a preset with seeded random weights, or a model file): parameters; checkpoint
bytes fp32 / W8 / W4 / W8A8; FLOPs per forward and per guided step; bit-ops (MACs x weight bits
x activation bits, :mod:`qgesco.runtime.costs`). Then, per runtime mode, the median latency of one
guided DDIM step (conditional + unconditional pass as one batch-2 forward) and the peak RSS of a
full receiver run (load the checkpoint, a short DDIM sampling), each in a fresh subprocess, the
modes taking turns over several rounds, all with the same thread count. Peak RSS is reported raw
and minus the peak of a process that imports the same modules and loads nothing; the ratios use
the latter. Also: one layer through each int8 kernel candidate (the backend choice, docs/runtime.md)
and each runtime's agreement with the fake-quant model of its file.

Latency and memory do not depend on the weight values, so a preset's seeded random weights serve
until trained ones exist (its zero-initialised convs get random weights too, so that outputs
depend on every layer). The quantized files are made here: W8/W4 with nearest rounding, data-free;
W8A8/W7A8 with activation ranges from a small calibration set of random maps. Too-large presets
(``gesco-cityscapes-256``) get the analytic figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..fileio import write_json, write_text
from .int8 import U8_SHIFT
from .onnx import OnnxModel

#: Presets far too large to run on a CPU receiver here: analytic figures only.
ANALYTIC_ONLY = ("gesco-cityscapes-256",)
#: Targets of issue 7, as fractions of fp32.
TARGETS = {"w8_file": 0.255, "w4_file": 0.135, "w8a8_step": 0.5, "w8_rss": 0.4}


@dataclass(frozen=True)
class Mode:
    name: str
    weight_bits: int | None  # None: the fp32 model
    act_bits: int | None
    symmetric: bool
    backend: str  # "fp32", a qgesco.runtime backend, or "onnxruntime"
    label: str


MODES = (
    Mode("fp32", None, None, False, "fp32", "fp32 (eager PyTorch)"),
    Mode("w8", 8, None, False, "weight-only", "W8 weight-only"),
    Mode("w4", 4, None, False, "weight-only", "W4 weight-only (packed)"),
    Mode("w8a8", 8, 8, False, "int8", "W8A8 int8 (oneDNN)"),
    Mode("w7a8s", 7, 8, True, "int8", "W7A8 symmetric int8 (oneDNN)"),
)
ONNX_MODES = (
    Mode("onnx-fp32", None, None, False, "onnxruntime", "fp32 ONNX (onnxruntime)"),
    Mode("onnx-w8a8", 8, 8, False, "onnxruntime", "W8A8 QDQ ONNX (onnxruntime)"),
)


def machine() -> dict:
    """CPU, cores, ISA and library versions: what the int8 numbers depend on."""
    from .int8 import pairs_saturate

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


# --- inputs and models ---------------------------------------------------------------------------


def random_maps(cfg, n: int, seed: int) -> torch.Tensor:
    """``n`` blocky random one-hot maps (+ edges if the model takes them): inputs of the right shape."""
    from ..channel import encode

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


def float_model(source: str, seed: int):
    """A model file or bundled name, else a preset with seeded random weights (none of them zero)."""
    from ..models.checkpoint import create_model, load_float_model
    from ..models.presets import PRESETS

    if source in PRESETS and not Path(source).is_file():
        return randomize_zero_init(create_model(source, seed=seed), seed).eval()
    return load_float_model(source)


def write_checkpoints(
    model, modes: tuple[Mode, ...], folder: Path, calib_maps: int, calib_steps: int
) -> dict[str, Path]:
    """The fp32 file and one quantized file per mode, in ``folder``."""
    from ..models.checkpoint import save_model
    from ..quant import build_calibration_set, quantize, save_quantized

    files = {"fp32": folder / "fp32.safetensors"}
    save_model(model, files["fp32"])
    calib = None
    for mode in modes:
        if mode.weight_bits is None or mode.name in files:
            continue
        if mode.act_bits is not None and calib is None:
            calib = build_calibration_set(
                model,
                random_maps(model.config, calib_maps, seed=1),
                num_maps=calib_maps,
                psnrs=(100.0,),
                steps=calib_steps,
                every=1,
                progress=False,
            )
        qmodel = quantize(
            model,
            calib if mode.act_bits else None,
            weight_bits=mode.weight_bits,
            act_bits=mode.act_bits,
            iters=0,
            symmetric=mode.symmetric,
            progress=False,
        )
        files[mode.name] = folder / f"{mode.name}.safetensors"
        save_quantized(qmodel, files[mode.name], note="qgesco bench: nearest rounding")
    return files


def load_mode(mode: Mode, path: Path, threads: int):
    from ..models.checkpoint import load_float_model
    from .load import load_runtime

    if mode.backend == "fp32":
        return load_float_model(path)
    if mode.backend == "onnxruntime":
        return OnnxModel(path, threads)
    return load_runtime(path, backend=mode.backend)


# --- the measuring subprocess --------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set. ``VmHWM`` where there is ``/proc``: ``ru_maxrss`` keeps the
    peak of the forked parent across ``exec``, so a subprocess of a big parent would report the parent's."""
    try:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux, bytes on macOS


def measure_step(model, cfg, reps: int, warmup: int) -> dict:
    """Milliseconds per guided DDIM step (guidance 2, both passes as one batch-2 forward)."""
    from ..diffusion import create_diffusion, make_sampler

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
    return {"step_times_ms": times}


def summarize(times: list[float]) -> dict:
    q = statistics.quantiles(times, n=10)
    return {"step_ms": statistics.median(times), "step_ms_p10": q[0], "step_ms_p90": q[-1], "steps_timed": len(times)}


def model_bytes(model) -> int:
    """Bytes the model holds: its parameters and buffers, plus the int8 layers' prepacked weights."""
    from .int8 import _Group

    if isinstance(model, OnnxModel):
        return 0
    held = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return held + sum(m.packed_bytes for m in model.modules() if isinstance(m, _Group))


def run_receiver(model, cfg, steps: int) -> None:
    """A full receiver run: one received map regenerated with DDIM ``steps`` and guidance 2."""
    from ..receiver import regenerate

    regenerate(model, random_maps(cfg, 1, seed=3), sampler=f"ddim{steps}", generator=torch.Generator().manual_seed(4))


def worker(args: argparse.Namespace) -> dict:
    from ..diffusion import create_diffusion  # noqa: F401  (every task, the baseline too, imports the same modules)
    from ..models.config import UNetConfig
    from ..receiver import regenerate  # noqa: F401
    from .load import load_runtime  # noqa: F401

    torch.set_num_threads(args.threads)
    if args.task == "baseline":
        return {"peak_rss_mb": peak_rss_mb()}
    if args.task == "kernels":
        return {"kernels": kernel_rows(args.threads, args.reps)}

    mode = next(m for m in MODES + ONNX_MODES if m.name == args.mode)
    cfg = UNetConfig.from_dict(json.loads(args.config))
    model = load_mode(mode, Path(args.file), args.threads)
    if args.task == "latency":
        return measure_step(model, cfg, args.reps, args.warmup)
    run_receiver(model, cfg, args.sample_steps)
    return {"peak_rss_mb": peak_rss_mb(), "model_mb": model_bytes(model) / 1e6}


def spawn(task: str, args: argparse.Namespace, mode: Mode | None = None, file: Path | None = None, cfg=None) -> dict:
    cmd = [
        sys.executable,
        "-m",
        __name__,
        "--worker",
        task,
        "--threads",
        str(args.threads),
        "--reps",
        str(args.reps),
        "--warmup",
        str(args.warmup),
        "--sample-steps",
        str(args.sample_steps),
    ]
    if mode is not None:
        cmd += ["--mode", mode.name, "--file", str(file), "--config", json.dumps(cfg.to_dict())]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"bench subprocess ({task} {mode.name if mode else ''}) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- agreement with the simulated (fake-quant) model ---------------------------------------------


def agreement(files: dict[str, Path], cfg, threads: int) -> list[dict]:
    """Relative L2 output differences on one batch (4 maps, timesteps spread, conditional): each
    runtime against the fake-quant model of its file, and the fake-quant model against fp32 and
    against itself on another memory layout / one sample at a time (its own float-rounding spread)."""
    from ..models.checkpoint import load_float_model
    from ..quant import load_quantized

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).norm() / b.norm()).item()

    g = torch.Generator().manual_seed(5)
    x, t, y = (
        torch.randn(4, 3, *cfg.image_hw, generator=g),
        torch.tensor([50, 300, 600, 900]),
        random_maps(cfg, 4, seed=6),
    )
    rows = []
    with torch.no_grad():
        fp = load_float_model(files["fp32"])(x, t, y)
        for mode in MODES[1:] + ONNX_MODES[1:]:
            if mode.name not in files:
                continue
            checkpoint = files["w8a8" if mode.backend == "onnxruntime" else mode.name]
            sim = load_quantized(checkpoint)
            expected = sim(x, t, y)
            got = load_mode(mode, files[mode.name], threads)(x, t, y)
            cl = [v.contiguous(memory_format=torch.channels_last) for v in (x, y)]
            rows.append(
                {
                    "mode": mode.label,
                    "runtime_vs_sim": rel(got, expected),
                    "sim_vs_fp32": rel(expected, fp),
                    "runtime_vs_fp32": rel(got, fp),
                    "sim_channels_last_vs_sim": rel(sim(cl[0], t, cl[1]), expected),
                    "sim_per_sample_vs_sim": rel(
                        torch.cat([sim(x[i : i + 1], t[i : i + 1], y[i : i + 1]) for i in range(4)]), expected
                    ),
                }
            )
    return rows


# --- the int8 kernel choice, on one demo-sized layer ---------------------------------------------


def _qdq_conv_graph(
    q: torch.Tensor,
    w_scale: torch.Tensor,
    act_scale: float,
    act_zero: int,
    out_scale: float,
    unsigned: bool,
    shape: tuple[int, ...],
) -> bytes:
    """A QuantizeLinear -> QLinearConv -> DequantizeLinear graph (weights int8, or uint8 = int8 + 128)."""
    from onnx import TensorProto, helper, numpy_helper

    w = (q.to(torch.int16) + 128).to(torch.uint8) if unsigned else q
    w_zero = torch.full((q.shape[0],), 128 if unsigned else 0, dtype=w.dtype)
    inits = [
        numpy_helper.from_array(v, k)
        for k, v in {
            "xs": torch.tensor(act_scale).numpy(),
            "xz": torch.tensor(act_zero + U8_SHIFT, dtype=torch.uint8).numpy(),
            "w": w.numpy(),
            "ws": w_scale.numpy(),
            "wz": w_zero.numpy(),
            "ys": torch.tensor(out_scale).numpy(),
            "yz": torch.tensor(U8_SHIFT, dtype=torch.uint8).numpy(),
        }.items()
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"], pads=[1, 1, 1, 1]),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def kernel_rows(threads: int, reps: int) -> list[dict]:
    """A decoder-sized layer (batch 2, 64 -> 64 channels, 3x3, 24x32) with full-range int8 weights and
    uint8 activations: median ms per call and relative error against exact integer arithmetic."""
    import torch.nn.functional as F

    from .int8 import _Group, pairs_saturate

    g = torch.Generator().manual_seed(0)
    q = torch.randint(-128, 128, (64, 64, 3, 3), generator=g, dtype=torch.int8)
    w_scale = torch.rand(64, generator=g) * 0.01 + 1e-3
    x = torch.randn(2, 64, 24, 32, generator=g) * 2
    act_scale, act_zero = 4 / 255, -3
    x_hat = ((x / act_scale).round() + act_zero).clamp(-128, 127).sub(act_zero).mul(act_scale)
    w_hat = q.float() * w_scale[:, None, None, None]
    exact = F.conv2d(x_hat.double(), w_hat.double(), padding=1).float()
    args = ([1, 1], [1, 1], [1, 1], 1)
    zero = torch.zeros(64, dtype=torch.int8)
    ours = " (qgesco int8 on this CPU)"
    halves = pairs_saturate()
    candidates = {
        "fp32 conv (PyTorch / oneDNN), on the dequantized input": lambda: F.conv2d(x_hat, w_hat, padding=1),
        "oneDNN u8 x s8, one kernel" + ("" if halves else ours): _Group(
            "conv2d", args, q, w_scale, zero, None, act_scale, act_zero, 8, halves=False
        ),
        "oneDNN u8 x s8, two 7-bit halves" + (ours if halves else ""): _Group(
            "conv2d", args, q, w_scale, zero, None, act_scale, act_zero, 8, halves=True
        ),
    }
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        out_scale = float(exact.abs().max()) / 127
        for unsigned in (False, True):
            session = ort.InferenceSession(
                _qdq_conv_graph(q, w_scale, act_scale, act_zero, out_scale, unsigned, tuple(x.shape)),
                options,
                providers=["CPUExecutionProvider"],
            )
            name = f"onnxruntime QLinearConv u8 x {'u8' if unsigned else 's8'} (output requantized to uint8)"
            candidates[name] = lambda s=session: torch.from_numpy(s.run(None, {"x": x.numpy()})[0])
    except ImportError:
        pass
    rows = []
    with torch.no_grad():
        for name, fn in candidates.items():
            call = (lambda fn=fn: fn(x)) if isinstance(fn, torch.nn.Module) else fn
            out = call()
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                call()
                times.append(1000 * (time.perf_counter() - start))
            rows.append(
                {"kernel": name, "ms": statistics.median(times), "error": ((out - exact).norm() / exact.norm()).item()}
            )
    return rows


# --- the report ----------------------------------------------------------------------------------


def analytic(cfg) -> dict:
    from ..models.costs import model_costs
    from .costs import bit_ops, quant_skeleton, quantized_bytes

    costs = model_costs(cfg)
    fp_bitops = bit_ops(costs)
    rows = {"fp32": {"bytes": costs.fp32_bytes, "bitops": fp_bitops}}
    for mode in MODES[1:]:
        skeleton = quant_skeleton(cfg, mode.weight_bits, mode.act_bits, mode.symmetric)
        rows[mode.name] = {"bytes": quantized_bytes(skeleton), "bitops": bit_ops(costs, skeleton.quant_plan)}
    return {
        "params": costs.params,
        "fp32_bytes": costs.fp32_bytes,
        "flops_forward": costs.flops_forward,
        "flops_guided_step": costs.flops_guided_step,
        "bitops_fp32": fp_bitops,
        "modes": rows,
    }


def flops(n: int) -> str:
    return f"{n / 1e12:.2f} TFLOP" if n >= 1e12 else f"{n / 1e9:.2f} GFLOP"


def ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or not b else f"{a / b:.3f}"


def report(name: str, result: dict) -> str:
    a = result["analytic"]
    lines = [
        f"### Receiver costs: {name}",
        "",
        f"{a['params']:,} parameters, {a['fp32_bytes'] / 1e6:,.1f} MB fp32; {flops(a['flops_forward'])} per forward, "
        f"{flops(a['flops_guided_step'])} per guided step; fp32 bit-ops {a['bitops_fp32'] / 1e12:,.2f} Tbit-op per forward.",
        "",
        "| mode | file MB | file / fp32 | bit-ops / fp32 | step ms, median (p10-p90) | step / fp32 | model held MB | peak RSS MB | RSS - baseline MB | (RSS - baseline) / fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = result["rows"]
    fp = rows.get("fp32", {})
    for key, r in rows.items():
        mb = r.get("file_bytes", r.get("bytes"))
        lines.append(
            "| "
            + " | ".join(
                [
                    r["label"],
                    f"{mb / 1e6:,.2f}" if mb else "",
                    ratio(mb, fp.get("file_bytes", fp.get("bytes"))),
                    ratio(r.get("bitops"), a["bitops_fp32"]) if r.get("bitops") else "",
                    f"{r['step_ms']:.1f} ({r['step_ms_p10']:.0f}-{r['step_ms_p90']:.0f})" if "step_ms" in r else "",
                    ratio(r.get("step_ms"), fp.get("step_ms")),
                    f"{r['model_mb']:.2f}" if "model_mb" in r else "",
                    f"{r['peak_rss_mb']:.1f}" if "peak_rss_mb" in r else "",
                    f"{r['rss_above_baseline_mb']:.1f}" if "rss_above_baseline_mb" in r else "",
                    ratio(r.get("rss_above_baseline_mb"), fp.get("rss_above_baseline_mb")),
                ]
            )
            + " |"
        )
    s = result["settings"]
    if result.get("measured"):
        lines += [
            "",
            f"Step: median (p10-p90) of {s['rounds']} x {s['reps']} guided DDIM steps, batch 2 (cond + uncond), {s['threads']} "
            f"thread(s); each round runs every mode in turn in a fresh process ({s['warmup']} warm-up steps untimed). "
            "Peak RSS: a fresh process loads the file and samples "
            f"one map with DDIM {s['sample_steps']} (guidance 2); baseline (same imports, no model) {result['baseline_rss_mb']:.1f} MB.",
            "",
            "| target (fraction of fp32) | goal | reached | met |",
            "|---|---|---|---|",
        ]
        for key, (goal, value) in result["targets"].items():
            lines.append(
                f"| {key} | <= {goal} | {'' if value is None else f'{value:.3f}'} | "
                f"{'' if value is None else ('yes' if value <= goal else 'no')} |"
            )
        lines += [
            "",
            "int8 kernels: one decoder-sized layer (batch 2, 64 -> 64 channels, 3x3, 24x32), full-range int8 weights, "
            f"median of {s['reps']} calls, error against exact integer arithmetic:",
            "",
            "| kernel | ms | relative error |",
            "|---|---|---|",
        ]
        lines += [f"| {k['kernel']} | {k['ms']:.3f} | {k['error']:.1e} |" for k in result["kernels"]]
        lines += [
            "",
            "Agreement, relative L2 difference of one forward (4 maps, t = 50, 300, 600, 900): runtime vs the fake-quant "
            "model of the same file (sim), and the sim's own spread under another memory layout / one sample at a time:",
            "",
            "| mode | runtime vs sim | sim vs fp32 | runtime vs fp32 | sim channels_last vs sim | sim per sample vs sim |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['mode']} | {r['runtime_vs_sim']:.2e} | {r['sim_vs_fp32']:.2e} | {r['runtime_vs_fp32']:.2e} | "
            f"{r['sim_channels_last_vs_sim']:.2e} | {r['sim_per_sample_vs_sim']:.2e} |"
            for r in result["agreement"]
        ]
    else:
        lines += [
            "",
            "Analytic only (`--analytic-only`, or a model too large to run here): file sizes are the tensor "
            "payloads of the checkpoints `save_quantized` writes, header excluded.",
        ]
    return "\n".join(lines) + "\n"


def targets(rows: dict) -> dict:
    def frac(mode: str, key: str) -> float | None:
        a, b = rows.get(mode, {}).get(key), rows["fp32"].get(key)
        return a / b if a is not None and b else None

    return {
        "W8 file": (TARGETS["w8_file"], frac("w8", "file_bytes")),
        "W4 file": (TARGETS["w4_file"], frac("w4", "file_bytes")),
        "W8A8 step latency": (TARGETS["w8a8_step"], frac("w8a8", "step_ms")),
        "W8 receiver RSS above baseline": (TARGETS["w8_rss"], frac("w8", "rss_above_baseline_mb")),
    }


def bench(args: argparse.Namespace) -> tuple[str, dict, str]:
    """Run everything; returns (name, JSON payload, markdown)."""
    from ..models.checkpoint import load_model_meta
    from ..models.config import UNetConfig
    from ..models.presets import PRESETS, get_preset

    torch.set_num_threads(1)  # preparing the files: many small ops, which a second thread on a busy CPU only slows
    is_preset = args.model in PRESETS and not Path(args.model).is_file()
    cfg = get_preset(args.model) if is_preset else UNetConfig.from_dict(load_model_meta(args.model)["config"])
    name = Path(args.model).stem if Path(args.model).is_file() else args.model
    result = {
        "model": args.model,
        "analytic": analytic(cfg),
        "machine": machine(),
        "settings": {
            k: getattr(args, k)
            for k in ("threads", "reps", "rounds", "warmup", "sample_steps", "calib_maps", "calib_steps", "seed")
        },
    }
    rows = {m.name: {"label": m.label, **result["analytic"]["modes"][m.name]} for m in MODES}
    measured = not args.analytic_only and args.model not in ANALYTIC_ONLY
    result["measured"] = measured
    if measured:
        modes = MODES + (ONNX_MODES if args.onnx else ())
        with tempfile.TemporaryDirectory(prefix="qgesco-bench-") as tmp:
            folder = Path(args.keep) if args.keep else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            model = float_model(args.model, args.seed)
            files = write_checkpoints(model, MODES, folder, args.calib_maps, args.calib_steps)
            if args.onnx:
                from .onnx import export_onnx, load_for_export

                for mode in ONNX_MODES:
                    files[mode.name] = folder / f"{mode.name}.onnx"
                    export_onnx(
                        load_for_export(files["fp32" if mode.weight_bits is None else "w8a8"]), files[mode.name]
                    )
            del model
            result["agreement"] = agreement(files, cfg, args.threads)
            result["baseline_rss_mb"] = spawn("baseline", args)["peak_rss_mb"]
            times: dict[str, list[float]] = {m.name: [] for m in modes}
            for round_ in range(args.rounds):  # rounds of all modes in turn: a drifting CPU load hits every mode alike
                for mode in modes:
                    print(f"  round {round_ + 1}/{args.rounds}: {mode.label}", file=sys.stderr, flush=True)
                    times[mode.name] += spawn("latency", args, mode, files[mode.name], cfg)["step_times_ms"]
            for mode in modes:
                row = rows.setdefault(mode.name, {"label": mode.label})
                row.update(file_bytes=files[mode.name].stat().st_size, **summarize(times[mode.name]))
                if mode.backend != "onnxruntime":
                    row.update(spawn("receiver", args, mode, files[mode.name], cfg))
                    row["rss_above_baseline_mb"] = row["peak_rss_mb"] - result["baseline_rss_mb"]
        result["targets"] = targets(rows)
        result["kernels"] = spawn("kernels", args)["kernels"]
    result["rows"] = rows
    return name, result, report(name, result)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="camvid-demo",
        help="preset (seeded random weights) or model file / bundled name (default camvid-demo)",
    )
    p.add_argument(
        "--threads", type=int, default=2, help="torch / onnxruntime threads in every measuring process (default 2)"
    )
    p.add_argument(
        "--reps",
        type=int,
        default=20,
        help="timed guided steps per process (default 20; the median over all rounds is reported)",
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first in every process (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="fresh processes per mode, modes taking turns (default 3)")
    p.add_argument(
        "--sample-steps",
        type=int,
        default=5,
        help="DDIM steps of the receiver run whose peak RSS is measured (default 5)",
    )
    p.add_argument("--calib-maps", type=int, default=2, help="random maps of the W8A8 calibration set (default 2)")
    p.add_argument(
        "--calib-steps", type=int, default=2, help="DDIM steps per calibration map, every step recorded (default 2)"
    )
    p.add_argument("--seed", type=int, default=0, help="weights seed for presets (default 0)")
    p.add_argument(
        "--onnx",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the fp32 and QDQ ONNX graphs in onnxruntime",
    )
    p.add_argument(
        "--analytic-only", action="store_true", help="only the analytic figures (always so for gesco-cityscapes-256)"
    )
    p.add_argument("--keep", metavar="DIR", help="keep the checkpoints and ONNX files in DIR")


def save(out: Path, name: str, result: dict, text: str, command: str) -> None:
    result = {**result, "command": command}
    write_json(out / f"receiver_{name}.json", result)
    m = result["machine"]
    write_text(
        out / f"receiver_{name}.md",
        f"{text}\nMachine: {m['cpu']}, {m['cores']} cores, {m['isa']}, torch {m['torch']}"
        f"{', onnxruntime ' + m['onnxruntime'] if 'onnxruntime' in m else ''}. Command: `{command}`\n",
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", choices=("baseline", "latency", "receiver", "kernels"), help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    add_arguments(p)
    args = p.parse_args(argv)
    args.task = args.worker
    print(json.dumps(worker(args)))  # the parent reads the last stdout line


if __name__ == "__main__":
    main()
