"""The low-bit receiver on this machine, mode by mode: what it saves, analytic and measured.

    .venv/bin/python bench/receiver.py                                  # camvid-demo, seeded random weights
    .venv/bin/python bench/receiver.py --model qgesco/assets/camvid_demo.safetensors
    .venv/bin/python bench/receiver.py --model gesco-cityscapes-256     # analytic only

For one model (a preset with seeded random weights, or a model file): parameters; checkpoint
bytes fp32 / W8 / W4 / W8A8; FLOPs per forward and per guided step; bit-ops (MACs x weight bits
x activation bits, :mod:`qgesco.runtime.costs`). Then, per runtime mode, the median latency of one
guided DDIM step (conditional + unconditional pass as one batch-2 forward) and the peak RSS of a
full receiver run (load the checkpoint, a short DDIM sampling), each in a fresh subprocess, the
modes taking turns over several rounds, all with the same thread count. Peak RSS is reported raw
and minus the peak of a process that imports the same modules and loads nothing; the ratios use
the latter. Also: one layer through each int8 kernel candidate (the backend choice, docs/runtime.md)
and each runtime's agreement with the fake-quant model of its file. Writes
results/receiver_<model>.{json,md} (``--name`` renames). ``--openvino`` adds the exported graphs in OpenVINO.

Latency and memory do not depend on the weight values, so a preset's seeded random weights serve
until trained ones exist (its zero-initialised convs get random weights too, so that outputs
depend on every layer). The quantized files are made here: W8/W4 with nearest rounding, data-free;
W8A8/W7A8 with activation ranges from a small calibration set of random maps. Too-large presets
(``gesco-cityscapes-256``) get the analytic figures only; bench/full_width.py measures that width at
a small image with this script's file making, worker processes and alternation. ``qgesco bench``
times one model as a user loads it, in its own process.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from common import save

from qgesco.api import load_model
from qgesco.models.config import UNetConfig
from qgesco.receiver import regenerate
from qgesco.runtime.int8 import U8_SHIFT, _Group, pairs_saturate
from qgesco.runtime.onnx import OnnxModel, OpenVinoModel
from qgesco.runtime.timing import measure_step, peak_rss_mb, random_maps, randomize_zero_init

#: Presets far too large to run on a CPU receiver here: analytic figures only.
ANALYTIC_ONLY = ("gesco-cityscapes-256",)
#: Targets of issue 7, as fractions of fp32.
TARGETS = {"w8_file": 0.255, "w4_file": 0.135, "w8a8_step": 0.5, "w8_rss": 0.4}
#: The quantized files, by name: ``quantize`` arguments (nearest rounding, ``iters=0``).
QUANT = {
    "w8": {"weight_bits": 8},
    "w4": {"weight_bits": 4},
    "w8a8": {"weight_bits": 8, "act_bits": 8},
    "w7a8s": {"weight_bits": 7, "act_bits": 8, "symmetric": True},
}


@dataclass(frozen=True)
class Mode:
    name: str
    file: str  # the checkpoint it runs or is exported from: "fp32" or a key of QUANT
    backend: str  # qgesco.load_model's backend ("auto", "weight-only", "int8"), or one of GRAPH_BACKENDS
    label: str


MODES = (
    Mode("fp32", "fp32", "auto", "fp32 (eager PyTorch)"),
    Mode("w8", "w8", "weight-only", "W8 weight-only"),
    Mode("w4", "w4", "weight-only", "W4 weight-only (packed)"),
    Mode("w8a8", "w8a8", "int8", "W8A8 int8 (oneDNN)"),
    Mode("w7a8s", "w7a8s", "int8", "W7A8 symmetric int8 (oneDNN)"),
)
ONNX_MODES = (
    Mode("onnx-fp32", "fp32", "onnxruntime", "fp32 ONNX (onnxruntime)"),
    Mode("onnx-w8a8", "w8a8", "onnxruntime", "W8A8 QDQ ONNX (onnxruntime)"),
)
#: Opt-in (``--openvino``): the same exported graphs in OpenVINO, whose low-precision transformations
#: run a QDQ convolution in int8 only when its weights are symmetric, hence the W7A8 symmetric graph.
OPENVINO_MODES = (
    Mode("ov-fp32", "fp32", "openvino", "fp32 ONNX (OpenVINO)"),
    Mode("ov-w8a8", "w8a8", "openvino", "W8A8 QDQ ONNX (OpenVINO)"),
    Mode("ov-w7a8s", "w7a8s", "openvino", "W7A8 symmetric QDQ ONNX (OpenVINO)"),
)
#: Backends that run an exported ONNX graph rather than a checkpoint.
GRAPH_BACKENDS = ("onnxruntime", "openvino")
#: The fp32 file under bf16 autocast (:class:`Autocast`).
AUTOCAST = "autocast-bf16"
#: The fp32 file through PyTorch's own int8 recipe and compiler (:class:`Pt2eModel`; opt-in: torchao).
PT2E = "pt2e-x86"


# --- files -----------------------------------------------------------------------------------------


def float_model(source: str, seed: int):
    """A model file or bundled name, else a preset with seeded random weights (none of them zero)."""
    from qgesco.models.checkpoint import create_model, load_float_model
    from qgesco.models.presets import PRESETS

    if source in PRESETS and not Path(source).is_file():
        return randomize_zero_init(create_model(source, seed=seed), seed).eval()
    return load_float_model(source)


def write_checkpoints(
    model,
    names,
    folder: Path,
    calib_maps: int = 2,
    calib_steps: int = 2,
    weight_init: str = "lp",
    note: str = "bench/receiver.py: nearest rounding",
) -> dict[str, float]:
    """``folder/NAME.safetensors`` for each of ``names`` ("fp32" or a key of :data:`QUANT`): the model,
    or its nearest-rounding quantization, files with activation quantizers calibrated on ``calib_maps``
    random maps x ``calib_steps`` DDIM steps (one calibration set for all). Returns the seconds each took."""
    from qgesco.models.checkpoint import save_model
    from qgesco.quant import CalibrationRecipe, QuantConfig, build_calibration_set, quantize, save_quantized

    seconds, calib = {}, None
    for name in names:
        start = time.perf_counter()
        if name == "fp32":
            save_model(model, folder / "fp32.safetensors")
        else:
            kwargs = QUANT[name]
            if "act_bits" in kwargs and calib is None:
                calib = build_calibration_set(
                    model,
                    random_maps(model.config, calib_maps, seed=1),
                    CalibrationRecipe(num_maps=calib_maps, psnrs=(100.0,), steps=calib_steps, every=1),
                )
            qmodel = quantize(
                model, calib if "act_bits" in kwargs else None, QuantConfig(iters=0, weight_init=weight_init, **kwargs)
            )
            save_quantized(qmodel, folder / f"{name}.safetensors", note=note)
            del qmodel
        seconds[name] = time.perf_counter() - start
    return seconds


# --- the measuring subprocess --------------------------------------------------------------------


def installed_version(package: str) -> str | None:
    """An optional package's installed version, or None: the OpenVINO modes are skipped without
    ``openvino``, the PT2E mode refused without ``torchao``."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


class Autocast(torch.nn.Module):
    """The fp32 model under ``torch.autocast("cpu", dtype=torch.bfloat16)``: the one line a user tries
    first on a CPU with bf16 (autocast casts the weights again in every forward and holds both copies)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config
        self.runtime_backend = ("fp32-autocast-bf16", "fp32 file under torch.autocast bfloat16")

    def forward(self, x, t, y):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model(x, t, y).float()


class Pt2eModel(torch.nn.Module):
    """The fp32 model through PT2E's x86 int8 recipe, the compiler path a user could take instead of our
    files: torchao's ``X86InductorQuantizer`` (its own observers: static per-tensor uint8 activations,
    symmetric per-channel int8 weights, no AdaRound) calibrated on ``maps`` (default 2 random maps) x 2
    timesteps, then ``torch.compile`` with inductor freezing, which lowers it to oneDNN's int8 kernels and
    fuses the quantize/dequantize and elementwise ops around them. Construction includes the first
    (compiling) call; the graph takes any batch size, and the first call at a new one may compile again."""

    def __init__(self, model, maps: torch.Tensor | None = None):
        super().__init__()
        import torch._inductor.config as inductor
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

        inductor.freezing = True  # the int8 lowering needs the weights as graph constants
        cfg = model.config
        self.config, self.runtime_backend = cfg, (PT2E, "fp32 file, torchao PT2E X86InductorQuantizer, inductor")
        maps = random_maps(cfg, 2, seed=1) if maps is None else maps
        calib = [(torch.randn(len(maps), 3, *cfg.image_hw), torch.full((len(maps),), t), maps) for t in (800, 200)]
        quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
        with torch.no_grad():
            batch = {0: torch.export.Dim("batch", min=1, max=4096)}  # the sampler's batch sizes, one graph
            graph = torch.export.export(model.eval(), calib[0], dynamic_shapes=(batch, batch, batch)).module()
            prepared = prepare_pt2e(graph, quantizer)
            for args in calib:
                prepared(*args)
            self.compiled = torch.compile(convert_pt2e(prepared))
            self.compiled(*calib[0])

    def forward(self, x, t, y):
        return self.compiled(x, t, y)


def load(path: Path, backend: str, threads: int):
    """A mode's model as a user gets it: ``qgesco.load_model`` (``auto`` or ``bf16`` for an fp32 file),
    the fp32 model under bf16 autocast or through PT2E's int8 recipe (:class:`Pt2eModel`), or the ONNX
    graph in an onnxruntime session or compiled by OpenVINO."""
    if backend == "onnxruntime":
        return OnnxModel(path, threads)
    if backend == "openvino":
        return OpenVinoModel(path, threads)
    if backend == AUTOCAST:
        return Autocast(load_model(path))
    if backend == PT2E:
        return Pt2eModel(load_model(path))
    return load_model(path, backend=backend)


def model_bytes(model) -> int:
    """Bytes the model holds: its parameters and buffers, plus the int8 layers' prepacked weights."""
    if isinstance(model, (OnnxModel, OpenVinoModel)):
        return 0
    held = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return held + sum(m.packed_bytes for m in model.modules() if isinstance(m, _Group))


def worker(args: argparse.Namespace) -> dict:
    """One task in this fresh process, which has imported what every task needs (the baseline too).

    ``latency``: load ``--file`` (timed), ``--warmup`` + ``--reps`` guided steps; ``receiver``: load
    and regenerate one map with DDIM ``--sample-steps``; both report the peak RSS after loading and
    at the end."""
    torch.set_num_threads(args.threads)
    if args.worker == "baseline":
        return {"peak_rss_mb": peak_rss_mb()}
    if args.worker == "kernels":
        return {"kernels": kernel_rows(args.threads, args.reps)}
    cfg = UNetConfig.from_dict(json.loads(args.config))
    start = time.perf_counter()
    model = load(Path(args.file), args.backend, args.threads)
    unquantized = (args.backend, "") if args.backend in GRAPH_BACKENDS else ("fp32", "")
    out = {
        "load_s": time.perf_counter() - start,
        "load_peak_rss_mb": peak_rss_mb(),
        "backend": list(getattr(model, "runtime_backend", unquantized)),
    }
    if isinstance(model, OpenVinoModel):
        out["layers"] = model.layer_precisions()
    if args.worker == "latency":
        out["step_ms"] = measure_step(model, cfg, args.reps, args.warmup)
    else:
        generator = torch.Generator().manual_seed(4)
        regenerate(model, random_maps(cfg, 1, seed=3), sampler=f"ddim{args.sample_steps}", generator=generator)
        out["model_mb"] = model_bytes(model) / 1e6
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def spawn(task: str, threads: int, **options) -> dict:
    """Run ``task`` of :func:`worker` in a fresh process of this script with ``threads`` torch and
    OpenMP threads; ``options`` become its ``--option value`` arguments. Returns the task's JSON."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", task, "--threads", str(threads)]
    for key, value in options.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode:
        raise RuntimeError(f"{task} {options.get('file', '')} ({threads} threads) failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # the worker prints its JSON last


def alternate(modes, paths: dict, cfg, threads: list[int], rounds: int, reps: int, warmup: int) -> dict:
    """Every mode at every thread count ``rounds`` times, each in a fresh process (``latency``). The
    modes take turns, in reverse order every other round, so that a drifting CPU load or a warm
    file cache favours none. Returns ``{(mode name, threads): [worker outputs]}``."""
    runs = {(m.name, t): [] for m in modes for t in threads}
    for r in range(rounds):
        for t in threads:
            for mode in modes if r % 2 == 0 else modes[::-1]:
                out = spawn(
                    "latency",
                    t,
                    file=paths[mode.name],
                    backend=mode.backend,
                    config=json.dumps(cfg.to_dict()),
                    reps=reps,
                    warmup=warmup,
                )
                runs[(mode.name, t)].append(out)
                steps = ", ".join(f"{s:.0f}" for s in out["step_ms"])
                print(
                    f"round {r + 1}/{rounds} {mode.name}, {t} thr: step {steps} ms, load {out['load_s']:.1f} s, "
                    f"peak RSS {out['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    return runs


def summarize(times: list[float]) -> dict:
    q = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
    return {"step_ms": statistics.median(times), "step_ms_p10": q[0], "step_ms_p90": q[-1], "steps_timed": len(times)}


# --- agreement with the simulated (fake-quant) model ---------------------------------------------


def agreement(modes, files: dict[str, Path], paths: dict[str, Path], cfg, threads: int) -> list[dict]:
    """Relative L2 output differences on one batch (4 maps, timesteps spread, conditional): each
    runtime against the fake-quant model of its file (the eager fp32 model for a graph exported from
    fp32), also as the largest absolute difference, and the fake-quant model against fp32 and against
    itself on another memory layout / one sample at a time (its own float-rounding spread)."""
    from qgesco.quant import load_quantized

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
        fp = load_model(files["fp32"])(x, t, y)
        for mode in modes:
            if mode.file == "fp32" and mode.backend not in GRAPH_BACKENDS:
                continue
            sim = load_model(files["fp32"]) if mode.file == "fp32" else load_quantized(files[mode.file])
            expected = sim(x, t, y)
            got = load(paths[mode.name], mode.backend, threads)(x, t, y)
            cl = [v.contiguous(memory_format=torch.channels_last) for v in (x, y)]
            rows.append(
                {
                    "mode": mode.label,
                    "runtime_vs_sim": rel(got, expected),
                    "runtime_vs_sim_max_abs": (got - expected).abs().max().item(),
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
            "conv2d", args, q, w_scale, zero, None, (act_scale, act_zero, 8), halves=False
        ),
        "oneDNN u8 x s8, two 7-bit halves" + (ours if halves else ""): _Group(
            "conv2d", args, q, w_scale, zero, None, (act_scale, act_zero, 8), halves=True
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
    """Parameters, FLOPs, and bytes and bit-ops of the fp32 model and of each file of :data:`QUANT`."""
    from qgesco.models.costs import model_costs
    from qgesco.runtime.costs import bit_ops, quant_plan, stored_bytes

    costs = model_costs(cfg)
    fp_bitops = bit_ops(costs)
    fp32_bytes = stored_bytes(cfg)
    rows = {"fp32": {"bytes": fp32_bytes, "bitops": fp_bitops}}
    for name, q in QUANT.items():
        plan = quant_plan(cfg, q["weight_bits"], q.get("act_bits"), q.get("symmetric", False))
        rows[name] = {"bytes": stored_bytes(cfg, plan), "bitops": bit_ops(costs, plan)}
    return {
        "params": costs.params,
        "fp32_bytes": fp32_bytes,
        "flops_forward": costs.flops_forward,
        "flops_guided_step": costs.flops_guided_step,
        "bitops_fp32": fp_bitops,
        "modes": rows,
    }


def flops(n: int) -> str:
    return f"{n / 1e12:.2f} TFLOP" if n >= 1e12 else f"{n / 1e9:.2f} GFLOP"


def ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or not b else f"{a / b:.3f}"


def header(*columns: str) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def report(name: str, result: dict) -> str:
    a = result["analytic"]
    lines = [
        f"### Receiver costs: {name}",
        "",
        f"{a['params']:,} parameters, {a['fp32_bytes'] / 1e6:,.1f} MB fp32; {flops(a['flops_forward'])} per "
        f"forward, {flops(a['flops_guided_step'])} per guided step; fp32 bit-ops {a['bitops_fp32'] / 1e12:,.2f} "
        "Tbit-op per forward.",
        "",
        *header(
            "mode",
            "file MB",
            "file / fp32",
            "bit-ops / fp32",
            "step ms, median (p10-p90)",
            "step / fp32",
            "model held MB",
            "peak RSS MB",
            "RSS - baseline MB",
            "(RSS - baseline) / fp32",
        ),
    ]
    rows = result["rows"]
    fp = rows.get("fp32", {})
    for r in rows.values():
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
            f"Step: median (p10-p90) of {s['rounds']} x {s['reps']} guided DDIM steps, batch 2 (cond + uncond), "
            f"{s['threads']} thread(s); each round runs every mode in turn in a fresh process, in reverse order every "
            f"other round ({s['warmup']} warm-up steps untimed). Peak RSS: a fresh process loads the file and samples "
            f"one map with DDIM {s['sample_steps']} (guidance 2); baseline (same imports, no model) "
            f"{result['baseline_rss_mb']:.1f} MB.",
            "",
            *header("target (fraction of fp32)", "goal", "reached", "met"),
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
            *header("kernel", "ms", "relative error"),
        ]
        lines += [f"| {k['kernel']} | {k['ms']:.3f} | {k['error']:.1e} |" for k in result["kernels"]]
        lines += [
            "",
            "Agreement, relative L2 difference of one forward (4 maps, t = 50, 300, 600, 900): runtime vs the "
            "fake-quant model of the same file (sim; the eager fp32 model for an fp32 graph), also as the largest "
            "absolute difference, and the sim's own spread under another memory layout / one sample at a time:",
            "",
            *header(
                "mode",
                "runtime vs sim",
                "max abs, runtime vs sim",
                "sim vs fp32",
                "runtime vs fp32",
                "sim channels_last vs sim",
                "sim per sample vs sim",
            ),
        ]
        lines += [
            f"| {r['mode']} | {r['runtime_vs_sim']:.2e} | {r['runtime_vs_sim_max_abs']:.2e} | "
            f"{r['sim_vs_fp32']:.2e} | {r['runtime_vs_fp32']:.2e} | "
            f"{r['sim_channels_last_vs_sim']:.2e} | {r['sim_per_sample_vs_sim']:.2e} |"
            for r in result["agreement"]
        ]
        compiled = [r for r in rows.values() if "layers" in r]
        if compiled:
            lines += ["", f"Layers as OpenVINO {result['openvino']} compiled them (kind and precision: count):", ""]
            lines += [
                f"- {r['label']}: " + ", ".join(f"{k} {n}" for k, n in sorted(r["layers"].items())) for r in compiled
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
    from qgesco.models.checkpoint import load_model_meta
    from qgesco.models.presets import PRESETS, get_preset

    torch.set_num_threads(1)  # preparing the files: many small ops, which a second thread on a busy CPU only slows
    is_preset = args.model in PRESETS and not Path(args.model).is_file()
    cfg = get_preset(args.model) if is_preset else UNetConfig.from_dict(load_model_meta(args.model)["config"])
    name = Path(args.model).stem if Path(args.model).is_file() else args.model
    result = {
        "model": args.model,
        "analytic": analytic(cfg),
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
        if args.openvino:
            result["openvino"] = installed_version("openvino")
            if result["openvino"] is None:
                print("openvino is not installed (pip install openvino): skipping the OpenVINO modes", flush=True)
            else:
                modes += OPENVINO_MODES
        with tempfile.TemporaryDirectory(prefix="qgesco-bench-") as tmp:
            folder = Path(args.keep) if args.keep else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            model = float_model(args.model, args.seed)
            write_checkpoints(model, ["fp32", *QUANT], folder, args.calib_maps, args.calib_steps)
            del model
            files = {name: folder / f"{name}.safetensors" for name in ["fp32", *QUANT]}
            paths = {m.name: files[m.file] for m in MODES}
            graphs = {m.file for m in modes if m.backend in GRAPH_BACKENDS}
            if graphs:
                from qgesco.runtime.onnx import export_onnx, load_for_export

                for file in sorted(graphs):
                    export_onnx(load_for_export(files[file]), folder / f"{file}.onnx")
                paths.update({m.name: folder / f"{m.file}.onnx" for m in modes if m.backend in GRAPH_BACKENDS})
            result["agreement"] = agreement(modes, files, paths, cfg, args.threads)
            result["baseline_rss_mb"] = spawn("baseline", args.threads)["peak_rss_mb"]
            runs = alternate(modes, paths, cfg, [args.threads], args.rounds, args.reps, args.warmup)
            for mode in modes:
                row = rows.setdefault(mode.name, {"label": mode.label})
                times = [s for out in runs[(mode.name, args.threads)] for s in out["step_ms"]]
                row.update(file_bytes=paths[mode.name].stat().st_size, **summarize(times))
                if "layers" in runs[(mode.name, args.threads)][0]:
                    row["layers"] = runs[(mode.name, args.threads)][0]["layers"]
                if mode.backend not in GRAPH_BACKENDS:
                    out = spawn(
                        "receiver",
                        args.threads,
                        file=paths[mode.name],
                        backend=mode.backend,
                        config=json.dumps(cfg.to_dict()),
                        sample_steps=args.sample_steps,
                    )
                    row.update(peak_rss_mb=out["peak_rss_mb"], model_mb=out["model_mb"])
                    row["rss_above_baseline_mb"] = row["peak_rss_mb"] - result["baseline_rss_mb"]
        result["targets"] = targets(rows)
        result["kernels"] = spawn("kernels", args.threads, reps=args.reps)["kernels"]
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
        "--openvino",
        action="store_true",
        help="also time the fp32, W8A8 and W7A8 symmetric ONNX graphs in OpenVINO (opt-in: pip install openvino)",
    )
    p.add_argument(
        "--analytic-only", action="store_true", help="only the analytic figures (always so for gesco-cityscapes-256)"
    )
    p.add_argument("--keep", metavar="DIR", help="keep the checkpoints and ONNX files in DIR")
    p.add_argument("--name", help="write results/receiver_NAME.{json,md} (default: the model's name)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.add_argument("--worker", choices=("baseline", "latency", "receiver", "kernels"), help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    name, result, text = bench(args)
    save(f"receiver_{args.name or name}", result, text, "python bench/receiver.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
