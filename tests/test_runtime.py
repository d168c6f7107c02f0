"""qgesco.runtime: the low-bit receiver agrees with the fake-quant model it deploys, holds only
the checkpoint's bytes, refuses bad files before computing, and exports to ONNX.

``cpu-test`` at 16x16 (zero-initialised output convs given random weights, so every layer
matters) and the ``tiny-ref`` reference weights at 32x64. With activation quantizers, end-to-end
comparisons are bounded by the fake-quant model's own sensitivity to float rounding (measured
here: it moves by as much under a change of memory layout), while each int8 layer is checked
exactly on the inputs the fake-quant model feeds it (docs/runtime.md).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from qgesco.api import load_model
from qgesco.cli import main
from qgesco.data import SyntheticScenes
from qgesco.fileio import load_tensors, read_meta, save_tensors
from qgesco.models.checkpoint import create_model, save_model
from qgesco.models.costs import model_costs
from qgesco.quant import CalibrationRecipe, QuantConfig, build_calibration_set, load_quantized, quantize, save_quantized
from qgesco.quant.checkpoint import DYNAMIC_LPIPS, record_dynamic_lpips
from qgesco.quant.swap import quant_layers
from qgesco.runtime import (
    Int8Layer,
    Int8Policy,
    PackedQuantLayer,
    allocator,
    default_backend,
    default_policy,
    load_runtime,
    pairs_saturate,
    timing,
)
from qgesco.runtime import bf16 as runtime_bf16
from qgesco.runtime import policy as runtime_policy
from qgesco.runtime.bf16 import Bf16Layer
from qgesco.runtime.costs import bit_ops, quant_plan, stored_bytes
from qgesco.runtime.int8 import _Group
from qgesco.runtime.timing import peak_rss_mb
from qgesco.runtime.timing import randomize_zero_init as randomized

#: Tiny models: one thread avoids per-op thread synchronisation on shared cores (conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def channels_last(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.contiguous(memory_format=torch.channels_last) for t in tensors]


@pytest.fixture(scope="module")
def model():
    return randomized(create_model("cpu-test", seed=0)).eval()


@pytest.fixture(scope="module")
def calib(model):
    return build_calibration_set(
        model,
        SyntheticScenes(6, image_hw=(16, 16)),
        CalibrationRecipe(num_maps=4, psnrs=(1.0, 100.0), steps=4, every=2, batch_size=4),
    )


CONFIGS = {  # name: quantize() arguments
    "w8": dict(weight_bits=8),
    "w4": dict(weight_bits=4),
    "w8a8": dict(weight_bits=8, act_bits=8, quantize_attention=True),
    "w7a8s": dict(weight_bits=7, act_bits=8, symmetric=True),
    "w4a6": dict(weight_bits=4, act_bits=6),
}


@pytest.fixture(scope="module")
def files(model, calib, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runtime")
    out = {}
    for name, kwargs in CONFIGS.items():
        out[name] = tmp / f"{name}.safetensors"
        save_quantized(
            quantize(model, calib if "act_bits" in kwargs else None, QuantConfig(iters=0, **kwargs)), out[name]
        )
    save_model(model, tmp / "fp32.safetensors")
    out["fp32"] = tmp / "fp32.safetensors"
    return out


@pytest.fixture(scope="module")
def tiny(reference_dir, tmp_path_factory):
    net = create_model("tiny-ref").eval()
    net.load_state_dict(load_file(reference_dir / "tiny_unet_weights.safetensors"), strict=True)
    io = load_file(reference_dir / "tiny_unet_io.safetensors")
    y = torch.cat([io["y"], torch.zeros_like(io["y"])])  # a guided step's batch: conditional + unconditional
    calib = build_calibration_set(
        net, io["y"], CalibrationRecipe(num_maps=2, psnrs=(100.0,), steps=2, every=1, batch_size=4)
    )
    tmp = tmp_path_factory.mktemp("tiny")
    paths = {}
    for name in ("w8", "w4", "w8a8"):
        paths[name] = tmp / f"{name}.safetensors"
        kwargs = {k: v for k, v in CONFIGS[name].items() if k != "quantize_attention"}
        save_quantized(
            quantize(net, calib if "act_bits" in kwargs else None, QuantConfig(iters=0, **kwargs)), paths[name]
        )
    return net, (torch.cat([io["x"]] * 2), torch.cat([io["t"]] * 2), y), paths


def layer_io(model: torch.nn.Module, inputs) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Input and output of every quantized layer during one forward."""
    seen = {}
    hooks = [
        layer.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, (a[0], out)))
        for name, layer in quant_layers(model)
    ]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return seen


# --- weight-only: bit-identical, and only the checkpoint's bytes in memory --------------------------


@pytest.mark.parametrize("name", ["w8", "w4", "w4a6"])
def test_weight_only_runtime_is_the_fake_quant_model_holding_only_the_checkpoint_bytes(files, calib, name):
    runtime, sim = load_runtime(files[name], backend="weight-only"), load_quantized(files[name])
    x, t, y = calib.batch(slice(None))
    with torch.no_grad():
        assert torch.equal(runtime(x, t, y), sim(x, t, y))
    tensors, _ = load_tensors(files[name])
    held = {**dict(runtime.named_parameters()), **dict(runtime.named_buffers())}
    assert {k: (v.dtype, v.shape) for k, v in held.items()} == {k: (v.dtype, v.shape) for k, v in tensors.items()}
    plan = quant_plan(runtime.config, CONFIGS[name]["weight_bits"], CONFIGS[name].get("act_bits"))
    assert sum(v.numel() * v.element_size() for v in held.values()) == stored_bytes(runtime.config, plan)
    packed = [layer for _, layer in quant_layers(runtime) if isinstance(layer, PackedQuantLayer)]
    assert (len(packed) > 50) == (CONFIGS[name]["weight_bits"] <= 4)
    for layer in packed:
        assert layer.qweight.dtype == torch.uint8 and layer.qweight.numel() == math.ceil(
            math.prod(layer.weight_shape) / 2
        )
        assert layer.weight.shape == layer.weight_shape  # the int8 view exists only while it is needed


def test_weight_only_runtime_matches_the_reference_weights_fake_quant_model(tiny):
    _, inputs, paths = tiny
    for name in ("w8", "w4"):
        with torch.no_grad():
            assert torch.equal(
                load_runtime(paths[name], backend="weight-only")(*inputs), load_quantized(paths[name])(*inputs)
            )


# --- int8 compute ---------------------------------------------------------------------------------


def test_the_saturation_probe_predicts_the_kernel_and_seven_bit_halves_are_exact():
    """Full-range int8 weights against full-range uint8 activations: the u8 x s8 kernel is exact
    iff the probe says pairs do not saturate; split into 7-bit halves it is always exact."""
    g = torch.Generator().manual_seed(0)
    q = torch.randint(-128, 128, (16, 32, 3, 3), generator=g, dtype=torch.int8)
    w_scale, w_zero = (
        torch.rand(16, generator=g) * 0.01 + 1e-3,
        torch.randint(-9, 9, (16,), generator=g, dtype=torch.int8),
    )
    x = torch.randn(2, 32, 8, 8, generator=g) * 2
    act_scale, act_zero = 4 / 255, -3
    x_hat = ((x / act_scale).round() + act_zero).clamp(-128, 127).sub(act_zero).mul(act_scale)
    w_hat = (q.float() - w_zero.float()[:, None, None, None]) * w_scale[:, None, None, None]
    expected = torch.nn.functional.conv2d(x_hat, w_hat, padding=1)
    args = ([1, 1], [1, 1], [1, 1], 1)
    errors = {
        halves: rel_err(_Group("conv2d", args, q, w_scale, w_zero, None, (act_scale, act_zero, 8), halves)(x), expected)
        for halves in (False, True)
    }
    assert errors[True] < 1e-5
    assert (errors[False] > 1e-2) == pairs_saturate() and (errors[False] < 1e-5) != pairs_saturate()


@pytest.mark.parametrize("name", ["w8a8", "w7a8s", "w4a6"])
def test_every_int8_layer_reproduces_its_fake_quant_layer_on_the_inputs_it_is_fed(files, calib, name):
    sim = load_quantized(files[name])
    runtime = load_runtime(files[name], backend="int8")
    int8 = {n: m for n, m in runtime.named_modules() if isinstance(m, Int8Layer)}
    called = layer_io(sim, calib.batch(slice(None)))
    assert len(int8) == sum(1 for n in called if n != "input_blocks.0.0") > 60
    for layer_name, layer in int8.items():
        inputs, outputs = called[layer_name]
        with torch.no_grad():
            assert rel_err(layer(inputs), outputs) < 1e-5, layer_name
        groups = list(layer.groups)
        assert any(g.corrected for g in groups) != CONFIGS[name].get(
            "symmetric", False
        )  # zero points need the correction
        if CONFIGS[name]["weight_bits"] <= 7:
            assert not any(g.halves for g in groups)  # 255 * (64 + 64) fits int16: no split needed
    assert any(g.halves for m in int8.values() for g in m.groups) == (pairs_saturate() and name == "w8a8")


def sensitivity(sim: torch.nn.Module, x, t, y) -> float:
    """How far the fake-quant model moves when only the float rounding changes (memory layout)."""
    with torch.no_grad():
        return rel_err(sim(*channels_last(x), t, *channels_last(y)), sim(x, t, y))


def assert_as_good_as_the_simulation(got: torch.Tensor, sim: torch.Tensor, fp: torch.Tensor) -> None:
    """End to end with activation quantizers: any float reordering flips some roundings, and the
    next quantizers carry the flips on, so the runtime may sit a few % from the simulation (as the
    simulation does from itself). What must hold: it is as close to fp32 as the simulation, and
    its distance to the simulation is below the quantization error itself."""
    assert rel_err(got, fp) <= 1.15 * rel_err(sim, fp)
    assert rel_err(got, sim) <= rel_err(sim, fp)


@pytest.mark.parametrize("name", ["w8a8", "w7a8s"])
def test_int8_model_end_to_end_is_as_good_an_approximation_of_fp32_as_the_simulation(model, files, calib, name):
    x, t, y = calib.batch(slice(None))
    sim, runtime = load_quantized(files[name]), load_runtime(files[name], backend="int8")
    with torch.no_grad():
        fp, expected, got = model(x, t, y), sim(x, t, y), runtime(x, t, y)
    assert sensitivity(sim, x, t, y) > 1e-3  # the simulation itself moves by % when only the memory layout changes
    assert_as_good_as_the_simulation(got, expected, fp)


def test_int8_on_the_reference_weights(tiny):
    net, inputs, paths = tiny
    sim, runtime = load_quantized(paths["w8a8"]), load_runtime(paths["w8a8"], backend="int8")
    called = layer_io(sim, inputs)
    worst = max(rel_err(m(called[n][0]), called[n][1]) for n, m in runtime.named_modules() if isinstance(m, Int8Layer))
    assert worst < 1e-5
    with torch.no_grad():
        assert_as_good_as_the_simulation(runtime(*inputs), sim(*inputs), net(*inputs))


# --- the default backend; W8 files on integer kernels with dynamic activation grids ---------------------

#: Relative L2 distance of the dynamic-grid int8 model from the simulated (weight-only) model, end to end:
#: the bound stated in docs/runtime.md (measured: see there; 7-bit grids on CPUs without VNNI).
DYNAMIC_BOUND = 0.1


def materialised_weights(model: torch.nn.Module, inputs, monkeypatch) -> tuple[list[str], torch.Tensor]:
    """Names of the quantized layers whose float weight is computed during one forward, and its output."""
    from qgesco.quant.layers import QuantLayer

    names = {id(m): n for n, m in model.named_modules()}
    seen, weight = [], QuantLayer.weight.fget
    monkeypatch.setattr(QuantLayer, "weight", property(lambda self: seen.append(names[id(self)]) or weight(self)))
    with torch.no_grad():
        out = model(*inputs)
    monkeypatch.undo()
    return seen, out


def test_a_w8a8_file_runs_on_integer_kernels_by_default_and_agrees_with_its_simulation(
    model, files, calib, monkeypatch
):
    runtime, sim = load_runtime(files["w8a8"]), load_quantized(files["w8a8"])
    assert runtime.runtime_backend[0] == "int8"
    inputs = calib.batch(slice(None))
    seen, got = materialised_weights(runtime, inputs, monkeypatch)
    assert set(seen) == {"input_blocks.0.0"}  # the one layer left weight-only (runtime.policy.WEIGHT_ONLY_LAYERS)
    assert len([m for m in runtime.modules() if isinstance(m, Int8Layer)]) > 60
    with torch.no_grad():
        assert_as_good_as_the_simulation(got, sim(*inputs), model(*inputs))


def test_a_w8_file_takes_integer_kernels_by_default_unless_it_records_that_its_grids_miss_the_bar(monkeypatch):
    meta = {"weight_bits": 8, "act_bits": None}
    bar = Int8Policy().max_dynamic_lpips
    for bits in (7, 8):  # CPUs without and with VNNI
        monkeypatch.setattr(runtime_policy, "dynamic_bits", lambda bits=bits: bits)
        backend, why = default_backend(meta)
        assert backend == "int8" and f"{bits}-bit" in why and "records no LPIPS" in why
        assert default_backend({**meta, DYNAMIC_LPIPS: {str(bits): bar / 2}})[0] == "int8"
        backend, why = default_backend({**meta, DYNAMIC_LPIPS: {str(bits): 2 * bar}})
        assert backend == "weight-only" and f"LPIPS {2 * bar:.4f}" in why and f"{bits}-bit" in why
    # this CPU's 7-bit grids miss the bar, 8-bit ones (7-bit weight halves here) meet it: int8 on 8-bit grids
    monkeypatch.setattr(runtime_policy, "dynamic_bits", lambda: 7)
    widened = {**meta, DYNAMIC_LPIPS: {"7": 2 * bar, "8": bar / 2}}
    assert default_policy(widened).grid_bits == 8 and default_policy(meta).grid_bits == 7
    assert default_backend(widened)[0] == "int8" and "8-bit" in default_backend(widened)[1]
    assert default_backend({**meta, DYNAMIC_LPIPS: {"7": 2 * bar, "8": 2 * bar}})[0] == "weight-only"
    for bits in range(2, 9):  # any grid width a policy allows has a decision, recorded or not
        assert default_backend(meta, policy=Int8Policy(grid_bits=bits))[0] == "int8"
        strict = Int8Policy(grid_bits=bits, max_dynamic_lpips=0.0)
        assert default_backend({**meta, DYNAMIC_LPIPS: {bits: 1e-3}}, policy=strict)[0] == "weight-only"
    assert default_backend(meta, "cuda")[0] == "weight-only"
    assert default_backend({"weight_bits": 4, "act_bits": None})[0] == "weight-only"


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"grid_bits": 9}, "grid_bits"),
        ({"grid_bits": 1}, "grid_bits"),
        ({"dynamic_weight_only": "out.2"}, "tuple of layer-name patterns"),
        ({"min_intensity": -1.0}, "min_intensity"),
        ({"max_dynamic_lpips": float("nan")}, "max_dynamic_lpips"),
    ],
)
def test_a_policy_out_of_range_is_refused_naming_the_field(fields, match):
    with pytest.raises(ValueError, match=match):
        Int8Policy(**fields)


def test_a_w8_file_recording_that_its_grids_miss_the_bar_loads_weight_only_and_exact(files, calib, tmp_path):
    """The fallback the policy describes is reachable from a file: its maker records the LPIPS of its
    per-call grids (record_dynamic_lpips keeps the tensors and their checksum), ``auto`` then runs it exactly."""
    path = tmp_path / "w8_recorded.safetensors"
    path.write_bytes(files["w8"].read_bytes())
    grid = default_policy().grid()
    record_dynamic_lpips(path, {grid: 0.5})
    assert read_meta(path)[DYNAMIC_LPIPS] == {str(grid): 0.5}
    runtime, sim = load_runtime(path), load_quantized(path)
    assert runtime.runtime_backend[0] == "weight-only" and "0.5000" in runtime.runtime_backend[1]
    assert not any(isinstance(m, Int8Layer) for m in runtime.modules())
    inputs = calib.batch(slice(None))
    with torch.no_grad():
        assert torch.equal(runtime(*inputs), sim(*inputs))
    lenient = Int8Policy(max_dynamic_lpips=1.0)
    assert load_model(path, policy=lenient).runtime_backend[0] == "int8"
    record_dynamic_lpips(path, {grid: 0.001})
    assert load_runtime(path).runtime_backend[0] == "int8"
    meta = read_meta(path)
    bad = {k: v for k, v in meta.items() if k != "sha256"}
    tensors, _ = load_tensors(path)
    save_tensors(path, tensors, {**bad, DYNAMIC_LPIPS: {"16": 0.001}})
    with pytest.raises(ValueError, match="dynamic_lpips"):
        load_runtime(path)


def test_a_policy_chooses_the_layers_to_int8_swaps(files):
    """Patterns and the intensity rule are the policy's: none kept weight-only and every intensity puts
    every layer but the input conv on integer kernels; the default keeps the skip convs and the output conv."""
    every = load_runtime(files["w8"], backend="int8", policy=Int8Policy(dynamic_weight_only=(), min_intensity=0))
    default = load_runtime(files["w8"], backend="int8")
    names = {name for name, _ in quant_layers(load_quantized(files["w8"]))}
    on_int8 = {n for n, m in every.named_modules() if isinstance(m, Int8Layer)}
    assert on_int8 == names - {"input_blocks.0.0"}
    kept = on_int8 - {n for n, m in default.named_modules() if isinstance(m, Int8Layer)}
    assert "out.2" in kept and len(kept) >= 5 and all(n == "out.2" or n.endswith(".skip_connection") for n in kept)
    grids = {
        m.grid_bits
        for m in load_runtime(files["w8"], backend="int8", policy=Int8Policy(grid_bits=5, min_intensity=0)).modules()
        if isinstance(m, Int8Layer)
    }
    assert grids == {5}


def test_a_w8_file_loads_with_its_default_and_runs_within_the_bound_on_dynamic_grids(files, calib, monkeypatch):
    sim, inputs = load_quantized(files["w8"]), calib.batch(slice(None))
    with torch.no_grad():
        expected = sim(*inputs)
        default = load_runtime(files["w8"])
        assert default.runtime_backend == default_backend(read_meta(files["w8"]))
        if default.runtime_backend[0] == "weight-only":
            assert torch.equal(default(*inputs), expected)
    runtime = load_runtime(files["w8"], backend="int8")
    seen, got = materialised_weights(runtime, inputs, monkeypatch)
    skips = {name for name, _ in quant_layers(sim) if name.endswith(".skip_connection")}
    in_bf16 = {name for name, m in runtime.named_modules() if isinstance(m, Bf16Layer)}  # where the CPU has bf16
    assert in_bf16 == (skips if runtime_bf16.bf16_native() else set())
    assert len(skips) >= 4 and set(seen) | in_bf16 == {"input_blocks.0.0", "out.2", *skips}  # dynamic_weight_only
    int8 = [m for m in runtime.modules() if isinstance(m, Int8Layer)]
    assert len(int8) > 60 and all(g.dynamic and not g.halves for m in int8 for g in m.groups[:1])
    assert rel_err(got, expected) < DYNAMIC_BOUND


def test_bf16_counts_as_native_only_where_onednn_is_not_capped_below_it(monkeypatch):
    """``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI`` (the VNNI indication runs) makes oneDNN emulate bf16 on an AMX CPU."""
    monkeypatch.setattr(runtime_bf16, "cpu_flags", lambda: {"avx512_bf16", "avx512_vnni"})
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert runtime_bf16.bf16_native()
    for isa in ("AVX512_CORE_VNNI", "avx2"):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
        assert not runtime_bf16.bf16_native(), isa
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert runtime_bf16.bf16_native()


def test_an_int8_receivers_weight_only_layers_compute_in_bf16_only_where_the_cpu_has_it(files, calib, monkeypatch):
    """The skip convs a W8 receiver keeps weight-only run in bf16 on a CPU with native bf16: one bf16 weight
    each, within bf16 rounding of their fake-quant layer, fp32 out in the input's layout. Without native bf16
    they stay fp32, and asking for bf16 there is refused in one line."""
    sim = load_quantized(files["w8"])
    called = layer_io(sim, calib.batch(slice(None)))
    skips = {name for name, _ in quant_layers(sim) if name.endswith(".skip_connection")}
    monkeypatch.setattr(runtime_bf16, "bf16_native", lambda: True)
    in_bf16 = {n: m for n, m in load_runtime(files["w8"], backend="int8").named_modules() if isinstance(m, Bf16Layer)}
    assert set(in_bf16) == skips and len(skips) >= 4
    for name, layer in in_bf16.items():
        x, expected = called[name]
        assert [t.dtype for t in layer.state_dict().values()] == [torch.bfloat16] * 2  # weight, bias: nothing else
        with torch.no_grad():
            got = layer(x.contiguous(memory_format=torch.channels_last))
        assert got.dtype == torch.float32 and got.is_contiguous(memory_format=torch.channels_last)
        assert 0 < rel_err(got, expected) < 2**-6, name  # 8 significant bits for input, weight and output
    monkeypatch.setattr(runtime_bf16, "bf16_native", lambda: False)
    assert not any(isinstance(m, Bf16Layer) for m in load_runtime(files["w8"], backend="int8").modules())
    with pytest.raises(ValueError, match="no native bf16") as err:
        load_runtime(files["w8"], backend="int8", policy=Int8Policy(weight_only_bf16=True))
    assert "\n" not in str(err.value) and "weight_only_bf16=None" in str(err.value)


@pytest.mark.parametrize("name", ["w8", "w8a8"])
def test_int8_layers_copy_nothing_but_the_quantized_input_of_each_kernel(files, calib, name, monkeypatch):
    """torch.profiler over one int8 forward: inside the int8 layers no layout copy (contiguous, clone,
    reorder) and one float -> uint8 conversion per kernel call; the activations stay channels_last. A first
    forward of the same shape goes unprofiled: it lays the weights out for that shape, once (``pack_for``)."""
    runtime = load_runtime(files[name], backend="int8")
    with torch.no_grad():
        runtime(*calib.batch(slice(None)))
    forward = _Group.forward

    def labelled(self, x):
        with torch.profiler.record_function("int8_kernel_call"):
            return forward(self, x)

    monkeypatch.setattr(_Group, "forward", labelled)
    with torch.no_grad(), torch.profiler.profile(record_shapes=True) as prof:
        runtime(*calib.batch(slice(None)))

    def inside(event):
        while event is not None and event.name != "int8_kernel_call":
            event = event.cpu_parent
        return event is not None

    calls = [e for e in prof.events() if e.name == "int8_kernel_call"]
    copies = [e for e in prof.events() if e.name == "aten::copy_" and e.input_shapes[0] and inside(e)]
    layout = [e for e in copies if e.input_dtypes[0] == e.input_dtypes[1]]
    quantized = [e for e in copies if e.input_dtypes[:2] == ["unsigned char", "float"]]
    assert len(calls) > 60 and not layout and len(quantized) == len(copies) == len(calls)


_REORDER_PROBE = """
import sys, torch
from qgesco.runtime import load_runtime
net = load_runtime(sys.argv[1], backend="int8")
hw, c = net.config.image_hw, net.config.label_channels
y = torch.zeros(2, c, *hw)
y[:, 0] = 1
with torch.no_grad():
    for batch in (2, 2, 1, 1):  # a guided sampler's calls: the same shape, then another one
        print(f"== batch {batch}", flush=True)
        net(torch.randn(batch, 3, *hw), torch.tensor([500] * batch), y[:batch])
"""


@pytest.mark.parametrize("isa", [None, "AVX512_CORE_VNNI", "AVX2"])
@pytest.mark.parametrize("name", ["w8", "w8a8"])
def test_int8_weights_are_laid_out_once_not_reordered_inside_every_call(files, name, isa):
    """oneDNN reorders weights packed for another input shape or zero point inside each kernel call,
    invisibly to the profiler (12 % of a full-width W8 step before they were packed for both); its
    verbose log must show no int8 weight reorder in a forward of the shape the one before had."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1"} | ({"ONEDNN_MAX_CPU_ISA": isa} if isa else {})
    run = subprocess.run(
        [sys.executable, "-c", _REORDER_PROBE, str(files[name])], env=env, capture_output=True, text=True, check=True
    )
    load, first, again, other, other_again = run.stdout.split("== batch ")
    assert "src:s8" in load and "convolution" in again  # the log is there: weights were packed at load
    for repeated in (again, other_again):
        assert [line for line in repeated.splitlines() if ",reorder," in line and "src:s8" in line] == []


#: bf16 backend vs fp32, relative L2 of the eps prediction: cpu-test's random weights (0.022 measured, the
#: trained demo model 0.0025; docs/runtime.md).
BF16_BOUND = 0.05


def test_the_bf16_backend_is_refused_in_one_line_where_the_cpu_lacks_native_bf16(files, monkeypatch):
    monkeypatch.setattr(runtime_bf16, "bf16_native", lambda: False)
    with pytest.raises(ValueError, match="no native bf16") as err:
        load_model(files["fp32"], backend="bf16")
    assert "\n" not in str(err.value) and "backend='auto'" in str(err.value)
    with pytest.raises(ValueError, match="full-precision files"):
        load_model(files["w8"], backend="bf16")
    with pytest.raises(ValueError, match="'auto' \\(fp32\\) or 'bf16'"):
        load_model(files["fp32"], backend="int8")
    with pytest.raises(ValueError, match="no native bf16"):  # a policy's bf16 use is the same opt-in
        load_model(files["fp32"], policy=Int8Policy(bf16=True))
    monkeypatch.setattr(runtime_bf16, "bf16_native", lambda: True)
    assert load_model(files["fp32"], policy=Int8Policy(bf16=True)).runtime_backend[0] == "bf16"
    assert not hasattr(load_model(files["fp32"], policy=Int8Policy()), "runtime_backend")  # fp32 by default


@pytest.mark.skipif(not runtime_bf16.bf16_native(), reason="this CPU has no native bf16")
def test_the_bf16_backend_holds_one_bf16_copy_of_the_convolutions_and_stays_near_fp32(files, calib):
    fp32, bf16 = load_model(files["fp32"]), load_model(files["fp32"], backend="bf16")
    convs = [m for m in bf16.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    head = bf16.out[2]
    assert all(m.weight.dtype == torch.bfloat16 for m in convs if m is not head) and head.weight.dtype == torch.float32
    held = sum(t.numel() * t.element_size() for t in bf16.state_dict().values())
    converted = sum(m.weight.numel() + m.bias.numel() for m in convs if m is not head)
    assert held == sum(t.numel() * t.element_size() for t in fp32.state_dict().values()) - 2 * converted
    assert bf16.runtime_backend[0] == "bf16"
    inputs = calib.batch(slice(None))
    with torch.no_grad():
        got, expected = bf16(*inputs), fp32(*inputs)
    assert got.dtype == torch.float32 and 1e-4 < rel_err(got, expected) < BF16_BOUND


def test_auto_keeps_a_w8_layer_weight_only_exactly_where_int8_does_not_pay(files, calib):
    """``auto`` applies the policy's min_intensity per layer; ``int8`` puts every eligible layer on integer kernels."""
    sim, inputs = load_quantized(files["w8"]), calib.batch(slice(None))
    if default_backend(read_meta(files["w8"]))[0] != "int8":
        pytest.skip("this CPU's dynamic grids miss the quality bar: auto stays weight-only")
    auto, every = load_runtime(files["w8"]), load_runtime(files["w8"], backend="int8")
    layers = dict(quant_layers(sim))
    for name in (n for n, m in every.named_modules() if isinstance(m, Int8Layer)):
        pays = runtime_policy.intensity(layers[name].qweight.shape) >= Int8Policy().min_intensity
        assert isinstance(auto.get_submodule(name), Int8Layer) == pays, name
    kept = [n for n, m in auto.named_modules() if isinstance(m, Int8Layer)]
    assert 0 < len(kept) < len([m for m in every.modules() if isinstance(m, Int8Layer)])
    assert runtime_policy.intensity(layers["time_embed.0"].qweight.shape) == 32 * 128 / (32 + 128)  # a 32 -> 128 linear
    with torch.no_grad():
        assert rel_err(auto(*inputs), sim(*inputs)) < DYNAMIC_BOUND


def test_dynamic_grids_on_the_reference_weights(tiny):
    _, inputs, paths = tiny
    runtime, sim = load_runtime(paths["w8"], backend="int8"), load_quantized(paths["w8"])
    with torch.no_grad():
        assert rel_err(runtime(*inputs), sim(*inputs)) < DYNAMIC_BOUND
    assert load_runtime(paths["w4"]).runtime_backend[0] == "weight-only"  # <= 4 bits stay packed


# --- refusing bad files before any compute -------------------------------------------------------------


def test_truncated_tampered_or_foreign_checkpoints_are_refused_by_the_runtime_loader(files, model, tmp_path):
    data = files["w8a8"].read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_runtime(tmp_path / "truncated.safetensors", backend="int8")
    flipped = bytearray(data)
    flipped[-5] ^= 0x01
    (tmp_path / "flipped.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="do not match the checksum"):
        load_runtime(tmp_path / "flipped.safetensors")
    tensors, meta = load_tensors(files["w8a8"])
    tampered = {**tensors, "out.2.qweight": tensors["out.2.qweight"].float()}
    save_tensors(tmp_path / "dtype.safetensors", tampered, meta)
    with pytest.raises(ValueError, match=r"wrong shape/dtype, first: out.2.qweight \(6, 32, 3, 3\) torch.float32"):
        load_runtime(tmp_path / "dtype.safetensors")
    tampered = {**tensors, "out.2.scale": tensors["out.2.scale"][:3]}
    save_tensors(tmp_path / "shape.safetensors", tampered, meta)
    with pytest.raises(ValueError, match=r"wrong shape/dtype, first: out.2.scale \(3,\)"):
        load_runtime(tmp_path / "shape.safetensors")
    other = create_model("cpu-test").config.replace(num_channels=64)
    save_tensors(tmp_path / "relabelled.safetensors", tensors, {**meta, "config": other.to_dict()})
    with pytest.raises(ValueError, match="the plan was made for another architecture"):
        load_runtime(tmp_path / "relabelled.safetensors")
    with pytest.raises(
        ValueError, match=r"quantized for another model configuration: image_hw=\(16, 16\) \(expected \(32, 32\)\)"
    ):
        load_runtime(files["w8a8"], config=model.config.replace(image_hw=(32, 32)))
    with pytest.raises(ValueError, match="unknown runtime backend 'int4'"):
        load_runtime(files["w8"], backend="int4")
    with pytest.raises(ValueError, match="not a quantized model"):
        load_runtime(files["fp32"])
    assert load_runtime(files["w8a8"], config=model.config).config == model.config


# --- analytic costs ---------------------------------------------------------------------------------


def test_analytic_bytes_equal_the_files_and_bit_ops_count_each_layer_at_its_bits(files):
    cfg = create_model("cpu-test").config
    for name in ("w8", "w4", "w4a6"):
        tensors, meta = load_tensors(files[name])
        plan = quant_plan(cfg, CONFIGS[name]["weight_bits"], CONFIGS[name].get("act_bits"))
        assert stored_bytes(cfg, plan) == sum(v.numel() * v.element_size() for v in tensors.values())
    costs = model_costs(cfg)
    assert bit_ops(costs) == costs.flops_forward // 2 * 32 * 32
    plan = read_meta(files["w8a8"])
    by_kind = {"layer": 0, "attention": 0}
    for module, flops in costs.flops_by_module.items():
        by_kind["layer" if module in plan["layers"] else "attention"] += flops // 2
    assert by_kind["attention"] > 0 and plan["attention"]
    assert bit_ops(costs, plan) == by_kind["layer"] * 8 * 8 + by_kind["attention"] * 8 * 8
    w8 = read_meta(files["w8"])
    assert bit_ops(costs, w8) == by_kind["layer"] * 8 * 32 + by_kind["attention"] * 32 * 32


def test_bench_times_a_file_as_loaded_and_a_preset_as_built_and_writes_what_it_prints(files, tmp_path, capsys):
    """``qgesco bench``: a W8A8 file loads with the default backend (int8 on CPU), the JSON holds the
    printed median of --reps steps at the --hw asked for; a preset is built, not loaded."""
    out = tmp_path / "w8a8.json"
    argv = ["bench", "--model", str(files["w8a8"]), "--hw", "32,16", "--reps", "3", "--warmup", "0", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    r = load_json(out)
    assert r["backend"][0] == "int8" and f"backend      int8 ({r['backend'][1]})" in printed
    assert r["image_hw"] == [32, 16] and len(r["step_ms"]) == 3 and min(r["step_ms"]) > 0
    assert r["step_ms_median"] == sorted(r["step_ms"])[1] and f"{r['step_ms_median']:.1f} ms, median of 3" in printed
    assert r["params"] == model_costs(create_model("cpu-test").config).params and "load_s" in r
    assert 0 < r["peak_rss_mb"] <= peak_rss_mb() and r["threads"] == torch.get_num_threads()
    assert r["machine"]["int8_pairs_saturate"] == pairs_saturate()

    assert main(["bench", "--model", "cpu-test", "--reps", "1", "--warmup", "0", "--json", str(out)]) == 0
    r = load_json(out)
    assert r["file"] is None and r["backend"][0] == "fp32" and "build_s" in r and r["image_hw"] == [16, 16]
    assert "built in" in capsys.readouterr().out


def load_json(path):
    import json

    return json.loads(path.read_text())


CPUINFO_FLAGS = {  # the kernel-relevant flags of the three CPU kinds this project is built on
    "AMX": "fpu avx2 avx512f avx512_vnni avx512_bf16 avx_vnni amx_bf16 amx_tile amx_int8",
    "AVX-512 VNNI": "fpu avx2 avx512f avx512_vnni",
    "AVX2": "fpu sse4_2 avx2 fma",
}


@pytest.mark.parametrize("kind", CPUINFO_FLAGS)
def test_bench_names_the_cpu_class_from_cpuinfo(kind, tmp_path, monkeypatch, capsys):
    """``qgesco bench --json`` records the CPU class (AMX changes every int8/bf16 ratio) read from
    /proc/cpuinfo, here a patched one, beside the ISA oneDNN really dispatched to."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU {kind}\nflags\t\t: {CPUINFO_FLAGS[kind]}\n")
    monkeypatch.setattr(timing, "CPUINFO", cpuinfo)
    out = tmp_path / "b.json"
    assert main(["bench", "--model", "cpu-test", "--reps", "1", "--warmup", "0", "--json", str(out)]) == 0
    m = load_json(out)["machine"]
    assert m["cpu"] == f"Test CPU {kind}" and m["cpu_class"] == kind
    assert ("amx_int8" in m["cpu_flags"]) == (kind == "AMX") and "fpu" not in m["cpu_flags"]
    assert m["onednn_isa"] == timing.onednn_isa() != "unknown"
    assert f"class {kind} (oneDNN {m['onednn_isa']}" in capsys.readouterr().out


_FREED_PROBE = """
import resource, sys, torch
from pathlib import Path
from qgesco.runtime.allocator import keep_freed_memory
kept = keep_freed_memory()
def rss(): return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()
activations = [torch.ones(int(sys.argv[1]) * 2**18) for _ in range(3)]  # MB each, written
held = rss()
del activations
print(kept, (held - rss()) // 2**20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
@pytest.mark.parametrize(
    "mode, mb, kept",
    [("0", 24, False), ("1", 24, True), ("1", 64, False), ("all", 64, True)],
)
def test_freed_activations_stay_with_the_process_for_the_next_step(mode, mb, kept):
    """glibc handed large freed tensors back to the kernel, so each sampler step faulted its activations in
    again, zeroed page by page (docs/runtime.md). After a loader's keep_freed_memory, tensors of up to 32 MB
    stay with the process (above, glibc maps them apart, which keeps the heap from fragmenting), and with
    QGESCO_KEEP_FREED_MEMORY=all every tensor does; 0 leaves glibc as it is. A fresh process each."""
    env = {**os.environ, allocator.ENV: mode}
    out = subprocess.run([sys.executable, "-c", _FREED_PROBE, str(mb)], env=env, capture_output=True, text=True)
    applied, handed_back = out.stdout.split()
    assert applied == str(mode != "0")
    assert (int(handed_back) < mb // 4) == kept, f"{handed_back} of {3 * mb} MB handed back"


def test_a_bad_allocator_setting_is_refused_naming_the_values(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "yes")
    with pytest.raises(ValueError, match="QGESCO_KEEP_FREED_MEMORY='yes': give 1 .* all, or 0"):
        allocator._glibc.__wrapped__()


def test_machine_report_says_when_the_kernels_were_capped(tmp_path):
    """Under ``ONEDNN_MAX_CPU_ISA=AVX2`` oneDNN runs AVX2 kernels (int8 pairs saturate) whatever the CPU,
    and the report says the numbers are an indication of another class."""
    code = "from qgesco.runtime.timing import machine, machine_line; m = machine(); print(m['onednn_isa']); "
    code += "print(m['int8_pairs_saturate']); print(machine_line(m))"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    isa, saturate, line = run.stdout.splitlines()
    assert isa == "Intel AVX2" and saturate == "True" and "capped by ONEDNN_MAX_CPU_ISA=AVX2" in line


# --- ONNX ---------------------------------------------------------------------------------------------
# One export costs ~10-20 s whatever the model size (the exporter's fixed cost), so CI exports a
# one-level model once; the fp32 and cpu-test exports are marked slow.


def run_onnx(path, x, t, y) -> torch.Tensor:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"x": x.numpy(), "t": t.numpy(), "y": y.numpy()})[0])


def export(source, out) -> None:
    pytest.importorskip("onnxscript")
    assert main(["export", str(source), "--format", "onnx", "--out", str(out), "--no-check"]) == 0


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """A one-level UNet (a resblock, attention in the middle, split decoder blocks) quantized W8A8, and its export."""
    cfg = create_model("cpu-test").config.replace(channel_mult=(1,), num_res_blocks=1, attention_ds=(1,))
    net = randomized(create_model(cfg, seed=0)).eval()
    calib = build_calibration_set(
        net,
        SyntheticScenes(4, image_hw=(16, 16)),
        CalibrationRecipe(num_maps=4, psnrs=(1.0, 100.0), steps=2, every=1, batch_size=4),
    )
    tmp = tmp_path_factory.mktemp("onnx")
    save_quantized(
        quantize(net, calib, QuantConfig(weight_bits=8, act_bits=8, iters=0, quantize_attention=True)),
        tmp / "w8a8.safetensors",
    )
    export(tmp / "w8a8.safetensors", tmp / "w8a8.onnx")
    return net, tmp / "w8a8.safetensors", tmp / "w8a8.onnx", calib.batch(slice(None))


def test_quantized_onnx_export_is_a_qdq_graph_of_the_checkpoint_integers_and_agrees(mini):
    onnx = pytest.importorskip("onnx")
    net, checkpoint, path, (x, t, y) = mini
    graph = onnx.load(path).graph
    tensors, meta = load_tensors(checkpoint)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    called = [n for n, e in meta["layers"].items() if e["called"]]
    for name in called:  # every weight is the checkpoint's int8, behind a per-channel DequantizeLinear
        groups = [
            torch.from_numpy(inits[f"{name}.qweight{g}"].copy())
            for g in range(2 if meta["layers"][name]["split"] else 1)
        ]
        assert all(w.dtype == torch.int8 for w in groups) and torch.equal(
            torch.cat(groups, dim=1), tensors[f"{name}.qweight"]
        )
    assert not any(
        i.data_type == onnx.TensorProto.FLOAT and i.name.endswith("weight") and len(i.dims) >= 2
        for i in graph.initializer
    )  # no float copy of a weight
    q_params = {
        (round(float(inits[n.input[1]]), 9), int(inits[n.input[2]]))
        for n in graph.node
        if n.op_type == "QuantizeLinear"
    }
    act = {(round(float(tensors[f"{q}.scale"]), 9), int(tensors[f"{q}.zero_point"])) for q in meta["act_quantizers"]}
    assert q_params == act  # every activation quantizer, with the checkpoint's scale and zero point
    sim = load_quantized(checkpoint)
    with torch.no_grad():
        assert_as_good_as_the_simulation(run_onnx(path, x, t, y), sim(x, t, y), net(x, t, y))
        assert run_onnx(path, x[:1], t[:1], y[:1]).shape == (1, 6, 16, 16)  # dynamic batch


def test_openvino_runs_the_qdq_export_as_well_as_the_simulation(mini):
    pytest.importorskip("openvino")
    from qgesco.runtime.onnx import OpenVinoModel

    net, checkpoint, path, (x, t, y) = mini
    model = OpenVinoModel(path, threads=1)
    with torch.no_grad():
        assert_as_good_as_the_simulation(model(x, t, y), load_quantized(checkpoint)(x, t, y), net(x, t, y))
        assert model(x[:1], t[:1], y[:1]).shape == (1, 6, 16, 16)  # dynamic batch


def test_openvino_refuses_8_bit_symmetric_weights_where_its_kernels_saturate(mini, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    from qgesco.runtime import onnx as runtime_onnx

    net, _, asymmetric, _ = mini
    paths = {}
    for bits in (7, 8):
        qmodel = quantize(net, None, QuantConfig(weight_bits=bits, symmetric=True, iters=0, weight_init="minmax"))
        save_quantized(qmodel, tmp_path / f"w{bits}s.safetensors")
        paths[bits] = tmp_path / f"w{bits}s.onnx"
        export(tmp_path / f"w{bits}s.safetensors", paths[bits])
    assert runtime_onnx._wide_symmetric_weights(paths[8]) > 5
    assert runtime_onnx._wide_symmetric_weights(paths[7]) == runtime_onnx._wide_symmetric_weights(asymmetric) == 0
    monkeypatch.setattr(runtime_onnx, "pairs_saturate", lambda: True)  # a CPU without VNNI
    with pytest.raises(ValueError, match="more than 7 bits.*--wbits 7"):
        runtime_onnx.OpenVinoModel(paths[8])
    runtime_onnx.OpenVinoModel(paths[7])
    monkeypatch.setattr(runtime_onnx, "pairs_saturate", lambda: False)  # VNNI: 8-bit weights are exact
    runtime_onnx.OpenVinoModel(paths[8])


@pytest.mark.slow
def test_fp32_and_cpu_test_quantized_onnx_exports_agree(model, files, calib, tmp_path):
    x, t, y = calib.batch(slice(None))
    export(files["fp32"], tmp_path / "fp32.onnx")
    with torch.no_grad():
        assert rel_err(run_onnx(tmp_path / "fp32.onnx", x, t, y), model(x, t, y)) < 1e-5
        assert rel_err(run_onnx(tmp_path / "fp32.onnx", x[:1], t[:1], y[:1]), model(x[:1], t[:1], y[:1])) < 1e-5
    export(files["w4"], tmp_path / "w4.onnx")  # weight-only: no activation rounding, so agreement to float precision
    with torch.no_grad():
        assert rel_err(run_onnx(tmp_path / "w4.onnx", x, t, y), load_quantized(files["w4"])(x, t, y)) < 1e-5
    export(files["w8a8"], tmp_path / "w8a8.onnx")
    sim = load_quantized(files["w8a8"])
    with torch.no_grad():
        assert_as_good_as_the_simulation(run_onnx(tmp_path / "w8a8.onnx", x, t, y), sim(x, t, y), model(x, t, y))


def test_external_data_export_writes_two_stably_named_files_that_run_after_a_move(model, calib, tmp_path):
    """What a > 2 GiB model gets (forced here on the small one): <name>.onnx.data beside <name>.onnx, no
    temporary leftovers, and the pair runs from another folder."""
    pytest.importorskip("onnxscript")
    from qgesco.runtime.onnx import export_onnx

    files = export_onnx(model, tmp_path / "a" / "m.onnx", external_data=True)
    assert [f.name for f in files] == ["m.onnx.data", "m.onnx"] and sorted(
        p.name for p in (tmp_path / "a").iterdir()
    ) == ["m.onnx", "m.onnx.data"]
    assert files[0].stat().st_size > 0.9 * sum(t.numel() * 4 for t in model.state_dict().values())
    (tmp_path / "a").rename(tmp_path / "b")
    x, t, y = calib.batch(slice(None))
    with torch.no_grad():
        assert rel_err(run_onnx(tmp_path / "b" / "m.onnx", x, t, y), model(x, t, y)) < 1e-5


def test_export_refuses_unknown_inputs_with_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err
    calib_like = tmp_path / "other.safetensors"
    save_tensors(calib_like, {"a": torch.zeros(1)}, {"kind": "calibration-set"})
    assert main(["export", str(calib_like), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "not a model" in capsys.readouterr().err


def test_backend_line_names_auto_choice_for_quantized_files_and_bundled_names_only(files):
    from qgesco.runtime import backend_line

    assert backend_line("camvid-demo-w8").startswith("camvid_demo_w8.safetensors: runtime backend int8 (W8 on CPU")
    assert backend_line(files["w8a8"]).startswith(f"{files['w8a8'].name}: runtime backend int8 (W8A8")
    assert backend_line("camvid-demo") is None and backend_line(files["w8a8"].parent / "missing") is None
