"""qgesco.quant: quantizer arithmetic, per-channel and split scales, AdaRound / block
reconstruction invariants, calibration sets, resumption and the quantized checkpoint.

Tiny models keep it fast: ``cpu-test`` at 16x16 (its zero-initialised output convs given
random weights, so every layer matters) and the ``tiny-ref`` reference weights at 32x64.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from qgesco.channel import AWGN, encode, transmit
from qgesco.data import SyntheticScenes
from qgesco.diffusion import create_diffusion
from qgesco.fileio import load_tensors, read_meta, save_tensors
from qgesco.models.checkpoint import BUNDLED, create_model, load_float_model
from qgesco.quant import (
    PAPER_PSNRS,
    AdaRound,
    CalibrationRecipe,
    CalibrationSet,
    QuantConfig,
    QuantLayer,
    build_calibration_set,
    fake_quantize,
    load_quantized,
    pack_int4,
    quantize,
    save_quantized,
    scale_zero_point,
    search_range,
    unpack_int4,
)
from qgesco.quant import calibration as calibration_module
from qgesco.quant import reconstruct as reconstruct_module
from qgesco.quant.quantizers import int_range, quantize_int
from qgesco.quant.swap import concat_splits, make_plan, quant_layers
from qgesco.runtime.timing import randomize_zero_init as randomized

#: Tiny models: one thread avoids per-op thread synchronisation on shared cores (conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def sent_maps(calib: CalibrationSet, scenes: SyntheticScenes) -> torch.Tensor:
    """The clean one-hot maps a calibration set was recorded from, found by their scene names."""
    by_name = {scenes[i].name: scenes[i].label for i in range(len(scenes))}
    return encode(torch.stack([by_name[name] for name in calib.info["provenance"]["map_names"]]), 12)


def calib_kwargs(**changes):
    return {"num_maps": 4, "psnrs": (1.0, 100.0), "steps": 4, "every": 2, "batch_size": 4, **changes}


@pytest.fixture(scope="module")
def model():
    return randomized(create_model("cpu-test", seed=0)).eval()


@pytest.fixture(scope="module")
def scenes():
    return SyntheticScenes(6, image_hw=(16, 16))


@pytest.fixture(scope="module")
def calib(model, scenes):
    return build_calibration_set(model, scenes, CalibrationRecipe(**calib_kwargs()))


W4_ARGS = dict(weight_bits=4, iters=10, batch_size=4)


@pytest.fixture(scope="module")
def w4(model, calib):
    return quantize(model, calib, QuantConfig(**W4_ARGS))


@pytest.fixture(scope="module")
def w8a8(model, calib):
    return quantize(
        model, calib, QuantConfig(weight_bits=8, act_bits=8, iters=4, quantize_attention=True, batch_size=4)
    )


@pytest.fixture(scope="module")
def tiny(reference_dir):
    net = create_model("tiny-ref").eval()  # the reference fixture's architecture, at its 32x64 size
    net.load_state_dict(load_file(reference_dir / "tiny_unet_weights.safetensors"), strict=True)
    return net, load_file(reference_dir / "tiny_unet_io.safetensors")


# --- quantizer arithmetic -----------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_quantize_dequantize_error_is_at_most_half_a_step_inside_the_clip_range(bits, symmetric):
    g = torch.Generator().manual_seed(bits)
    spread = torch.tensor([0.01, 0.1, 1, 3, 10, 50])[:, None]
    x = spread * (torch.randn(6, 500, generator=g) + torch.linspace(-1, 1, 6)[:, None])
    lo, hi = search_range(x, bits, symmetric, method="minmax")
    scale, zero = scale_zero_point(0.8 * lo, 0.8 * hi, bits, symmetric)  # a clip range that cuts some values
    scale, zero = scale[:, None], zero[:, None]
    qmin, qmax = int_range(bits)
    deq = fake_quantize(x, scale, zero, bits)
    low, high = scale * (qmin - zero), scale * (qmax - zero)
    inside = (x >= low) & (x <= high)
    assert 0.9 < inside.float().mean() < 1
    assert ((deq - x).abs() <= scale / 2 * (1 + 1e-5))[inside].all()
    assert torch.allclose(deq[~inside], torch.where(x < low, low, high).expand_as(x)[~inside], rtol=1e-5)
    assert (zero == 0).all() if symmetric else ((zero >= qmin) & (zero <= qmax)).all()
    assert torch.allclose(fake_quantize(torch.zeros(6, 1), scale, zero, bits), torch.zeros(6, 1))  # 0 is exact


def test_lp_clip_search_beats_min_max_on_heavy_tailed_weights():
    u = torch.rand(4, 1024, generator=torch.Generator().manual_seed(0)) - 0.5
    w = -u.sign() * torch.log1p(-2 * u.abs())  # Laplace(0, 1): long tails, like trained weights
    for bits, gain in ((4, 0.85), (8, 1.0)):
        errors, ranges = {}, {}
        for method in ("minmax", "lp"):
            lo, hi = ranges[method] = search_range(w, bits, False, method=method)
            s, z = scale_zero_point(lo, hi, bits, False)
            errors[method] = (fake_quantize(w, s[:, None], z[:, None], bits) - w).abs().pow(2.4).sum(1)
        assert (errors["lp"] <= gain * errors["minmax"]).all()
        if bits == 4:
            assert (ranges["lp"][1] < 0.9 * ranges["minmax"][1]).all()  # the tails are clipped


def test_fake_quantize_passes_gradients_to_inputs_and_step_size():
    x = torch.linspace(-1, 1, 101, requires_grad=True)
    scale = torch.tensor(0.01, requires_grad=True)
    fake_quantize(x, scale, torch.tensor(0.0), 8).pow(2).sum().backward()
    assert torch.allclose(x.grad, 2 * fake_quantize(x, scale, torch.tensor(0.0), 8).detach())  # straight-through
    assert scale.grad.abs() > 0  # LSQ learns the step


def test_adaround_starts_from_the_float_weights_and_its_hard_choice_is_nearest_rounding():
    w_over_s = torch.tensor([0.0, 0.2, 0.49, 0.51, 0.9, -1.3, 2.7, 9.6])
    scale = torch.tensor(0.5)
    rounding = AdaRound(w_over_s * scale, scale, torch.tensor(-8.0), torch.tensor(7.0))  # a 4-bit grid, zero point 0
    assert torch.allclose(rounding.floor + rounding.soft(), w_over_s, atol=1e-5)
    assert torch.allclose(
        rounding(), (w_over_s * scale).clamp(max=3.5), atol=1e-5
    )  # 9.6 steps clip to the grid's end, 7
    assert torch.equal(rounding.rounded(), torch.round(w_over_s).clamp(-8, 7))
    with torch.no_grad():
        rounding.v.copy_(torch.tensor([-9.0, 9, -9, 9, -9, 9, -9, 9]))
    assert rounding.regularizer(2.0).item() == pytest.approx(0, abs=1e-6)  # decided variables cost nothing
    assert torch.equal(rounding.rounded(), torch.tensor([0.0, 1, 0, 1, 0, -1, 2, 7]))


def test_int4_packing_round_trips_and_halves_the_bytes():
    q = torch.randint(-8, 8, (5, 3, 3), generator=torch.Generator().manual_seed(0), dtype=torch.int8)
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.numel() == 23
    assert torch.equal(unpack_int4(packed, tuple(q.shape)), q)
    assert packed[0].item() == (int(q.flatten()[0]) + 8) | ((int(q.flatten()[1]) + 8) << 4)


# --- layers: per-channel and split scales -----------------------------------------------------


def test_weight_scales_are_per_output_channel():
    conv = torch.nn.Conv2d(8, 6, 3)
    with torch.no_grad():
        conv.weight.mul_(torch.arange(1, 7, dtype=torch.float32)[:, None, None, None])
    layer = QuantLayer.from_float(conv, bits=8, symmetric=True, method="minmax")
    expected = conv.weight.detach().abs().amax(dim=(1, 2, 3)) / 127
    assert layer.scale.shape == (6,) and torch.allclose(layer.scale, expected)
    assert len(set(layer.scale.tolist())) == 6
    assert (layer.weight - conv.weight).abs().max() <= layer.scale.max() / 2 * (1 + 1e-5)


def test_split_layers_quantize_the_two_parts_of_the_concatenation_with_their_own_scales(model, w4, w8a8):
    splits = concat_splits(model)
    assert sorted(splits) == sorted(
        f"output_blocks.{i}.0.{part}" for i in range(4) for part in ("in_layers.1", "skip_connection")
    )
    for name, split in splits.items():
        layer = w4.get_submodule(name)
        assert layer.split == split and layer.scale.shape == (2, layer.qweight.shape[0])
        assert (layer.scale[0] != layer.scale[1]).float().mean() > 0.9
        w = layer.weight.detach()
        for cols in (slice(None, split), slice(split, None)):
            steps = w[:, cols] / layer.per_weight(layer.scale)[:, cols]
            assert torch.allclose(steps, steps.round(), atol=1e-3)  # each part sits on its own grid
        wrong = w[:, split:] / layer.per_weight(layer.scale)[:, :1]
        assert not torch.allclose(wrong, wrong.round(), atol=1e-3)
        acts = w8a8.get_submodule(name).input_quant
        assert len(acts) == 2 and acts[0].scale.item() != acts[1].scale.item()
    assert not any(
        entry["split"]
        for entry in make_plan(model, weight_bits=8, act_bits=None, symmetric=False, split=False)["layers"].values()
    )


# --- AdaRound / block reconstruction ----------------------------------------------------------


def test_after_adaround_every_rounding_is_a_hard_up_or_down_of_the_float_weight(model, w4):
    learned_differs = 0
    for name, layer in quant_layers(w4):
        assert layer.rounding is None and layer.float_weight is None
        w = model.get_submodule(name).weight.detach()
        scale, zero = layer.per_weight(layer.scale), layer.per_weight(layer.zero_point)
        offset = layer.qweight.float() - zero - torch.floor(w / scale)
        qmin, qmax = int_range(4)
        inside = (layer.qweight > qmin) & (layer.qweight < qmax)
        assert set(offset[inside].unique().tolist()) <= {0.0, 1.0}
        learned_differs += int((layer.qweight != quantize_int(w, scale, zero, 4)).sum())
    assert learned_differs > 100  # AdaRound did change roundings


def test_block_reconstruction_error_is_never_worse_than_nearest_rounding(model, calib, w4):
    blocks = w4.quant_report["blocks"]
    assert [b["block"] for b in blocks][:3] == ["time_embed", "input_blocks.0.0", "input_blocks.1.0"] and blocks[-1][
        "block"
    ] == "out"
    assert all(b["error"] <= b["error_nearest"] for b in blocks)
    improved = [b for b in blocks if b.get("error_learned", 1.0) < b["error_nearest"]]
    assert len(improved) >= 0.7 * len(blocks)
    nearest = quantize(model, calib, QuantConfig(**{**W4_ARGS, "iters": 0})).quant_report[
        "blocks"
    ]  # errors measured, nothing learned
    assert all(b["rounding"] == "nearest" and b["error"] == b["error_nearest"] for b in nearest)
    assert nearest[0]["error"] == blocks[0]["error_nearest"]  # the first block sees the same (unquantized) inputs
    assert sum(b["error"] for b in blocks) < sum(b["error"] for b in nearest)  # 10 iterations: a few % better
    # Recompute the output head's error independently: its input from the quantized model,
    # its target from the float model, learned vs nearest rounding of the same float weights.
    captured = {}
    hooks = [
        w4.out.register_forward_pre_hook(lambda m, a: captured.__setitem__("q_in", a[0])),
        model.out.register_forward_hook(lambda m, a, o: captured.__setitem__("target", o)),
    ]
    try:
        with torch.no_grad():
            x, t, y = calib.batch(slice(None))
            w4(x, t, y)
            model(x, t, y)
            conv = w4.out[2]
            learned = (w4.out(captured["q_in"]) - captured["target"]).pow(2).sum() / captured["target"].pow(2).sum()
            kept = conv.qweight.clone()
            conv.qweight.copy_(
                quantize_int(model.out[2].weight, conv.per_weight(conv.scale), conv.per_weight(conv.zero_point), 4)
            )
            nearest = (w4.out(captured["q_in"]) - captured["target"]).pow(2).sum() / captured["target"].pow(2).sum()
            conv.qweight.copy_(kept)
    finally:
        for h in hooks:
            h.remove()
    # Weight-only: this pass and the report batch differently, so the errors differ by float summation
    # order alone (<= 1e-5 relative, as derived in test_one_pass_reconstruction_equals_block_by_block).
    assert learned.item() == pytest.approx(blocks[-1]["error"], rel=1e-4)
    assert learned <= nearest


def test_block_data_streams_chunks_when_the_cache_budget_is_small(model, calib, w4):
    cached = reconstruct_module.CapturedBlockData(w4, model, "middle_block.0", calib, batch_size=2, cache_bytes=2**30)
    streamed = reconstruct_module.CapturedBlockData(w4, model, "middle_block.0", calib, batch_size=2, cache_bytes=1)
    assert cached.cached is not None and streamed.cached is None and streamed.chunk == 2
    chunks = list(streamed.chunks())
    assert len(chunks) == 4
    inputs, target = cached.cached
    assert torch.equal(torch.cat([c[1] for c in chunks]), target)
    for i, full in enumerate(inputs):  # x, emb, y of the SDMResBlock
        assert torch.equal(torch.cat([c[0][i] for c in chunks]), full)
    assert reconstruct_module.block_error(w4.middle_block[0], streamed) == pytest.approx(
        reconstruct_module.block_error(w4.middle_block[0], cached), rel=1e-6
    )


def _one_pass_and_by_block(model, calib, monkeypatch, **args):
    args = dict(weight_bits=4, iters=3, batch_size=4, **args)
    assert reconstruct_module.block_targets(model, ["out"], calib, 4, cache_bytes=1) is None
    one_pass = quantize(model, calib, QuantConfig(**args))
    with monkeypatch.context() as patch:
        patch.setattr(reconstruct_module, "block_targets", lambda *args: None)  # as when they do not fit
        by_block = quantize(model, calib, QuantConfig(**args))
    return one_pass, by_block


def _qweight_flips(a: nn.Module, b: nn.Module) -> float:
    state, other = a.state_dict(), b.state_dict()
    flips = sum(int((state[k] != other[k]).sum()) for k in state if k.endswith("qweight"))
    return flips / sum(state[k].numel() for k in state if k.endswith("qweight"))


def test_one_pass_reconstruction_equals_block_by_block(model, calib, monkeypatch):
    """The one-pass path (targets fit the cache) gives every block the inputs the block-by-block path
    captures. The two batch the float model differently (one batch vs batches of 4), so oneDNN may pick
    other kernels and the block inputs differ by summation order only: each conv sums K <= 1152 products,
    relative error ~sqrt(K)*eps ~ 4e-6, so the block errors (means of squares) agree to 1e-5 — measured
    <= 4e-7 on AMX, AVX-512 VNNI and forced-AVX2 kernels. Same roundings chosen; AdaRound's learned
    rounding may flip a weight whose soft value sits on the threshold (none measured), at most 0.1%."""
    one_pass, by_block = _one_pass_and_by_block(model, calib, monkeypatch)
    for a, b in zip(one_pass.quant_report["blocks"], by_block.quant_report["blocks"], strict=True):
        assert a["block"] == b["block"] and a["rounding"] == b["rounding"]
        assert a["error_nearest"] == pytest.approx(b["error_nearest"], rel=1e-5, abs=1e-12)
    assert _qweight_flips(one_pass, by_block) <= 1e-3


def test_one_pass_activation_ranges_match_block_by_block(model, calib, monkeypatch):
    """With 8-bit activations the float noise above feeds discrete choices: the clip search picks a
    range ratio on a grid (steps of 0.05, then 0.01; quantizers.COARSE_RATIOS), and the mean over 4
    batches moves by at most one coarse step when one batch's choice flips; learning then follows it.
    So every activation scale agrees within 6% (many exactly; how many depends on the kernels), the
    block errors within 2% (measured <= 0.3% on AMX, AVX-512 VNNI and forced-AVX2 kernels), and where
    the chosen rounding differs its two candidate errors were within 2% of each other."""
    one_pass, by_block = _one_pass_and_by_block(model, calib, monkeypatch, act_bits=8)
    for a, b in zip(one_pass.quant_report["blocks"], by_block.quant_report["blocks"], strict=True):
        assert a["block"] == b["block"]
        assert a["error_nearest"] == pytest.approx(b["error_nearest"], rel=2e-2)
        if a["rounding"] != b["rounding"]:
            assert b["error_learned"] == pytest.approx(b["error_nearest"], rel=2e-2)
    state, other = one_pass.state_dict(), by_block.state_dict()
    scales = [k for k in state if k.endswith("_quant.scale") or ".input_quant." in k and k.endswith("scale")]
    gaps = torch.stack([((state[k] - other[k]).abs() / other[k].abs()).max() for k in scales])
    assert scales and gaps.max() <= 0.06


def test_quantize_leaves_the_float_model_untouched(model, w4):
    fresh = randomized(create_model("cpu-test", seed=0))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert not quant_layers(model) and not model.training


def test_interrupted_quantization_resumes_to_the_same_result(model, calib, w4, tmp_path, monkeypatch):
    real, finished = reconstruct_module.reconstruct_block, []

    def crash_after_five(*args, **kwargs):
        if len(finished) == 5:
            raise KeyboardInterrupt
        finished.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(reconstruct_module, "reconstruct_block", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        quantize(model, calib, QuantConfig(**W4_ARGS), resume=tmp_path / "state")
    assert len(list((tmp_path / "state").glob("block-*.safetensors"))) == 5
    monkeypatch.undo()
    with pytest.raises(ValueError, match="another quantization run"):
        quantize(model, calib, QuantConfig(**{**W4_ARGS, "iters": 3}), resume=tmp_path / "state")
    resumed = quantize(model, calib, QuantConfig(**W4_ARGS), resume=tmp_path / "state")
    expected = w4.state_dict()
    assert resumed.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in resumed.state_dict().items())
    blocks = resumed.quant_report["blocks"]
    assert [b["error"] for b in blocks] == [b["error"] for b in w4.quant_report["blocks"]]
    assert [b.get("resumed", False) for b in blocks] == [True] * 5 + [False] * (len(blocks) - 5)
    assert resumed.quant_report["seconds"] >= sum(b["seconds"] for b in blocks) - 0.1  # earlier runs' blocks counted


def test_activation_quantizers_are_calibrated_and_learned(model, calib, w8a8):
    acts = {n: m for n, m in w8a8.named_modules() if type(m).__name__ == "ActQuantizer"}
    assert any(n.endswith("attention.probs_quant") for n in acts) and any(n.endswith("attention.q_quant") for n in acts)
    assert not any("input_blocks.1.0.spade_norm" in n for n in acts)  # never called: no activation ranges
    assert all(m.enabled and m.scale.item() > 0 and m.scale.item() != 1.0 for m in acts.values())
    observed_only = quantize(
        model, calib, QuantConfig(weight_bits=8, act_bits=8, iters=0, quantize_attention=True, batch_size=4)
    )
    initial = {n: m.scale.item() for n, m in observed_only.named_modules() if n in acts}
    assert sum(acts[n].scale.item() != s for n, s in initial.items()) > len(acts) // 2  # LSQ moved the steps
    blocks = w8a8.quant_report["blocks"]
    # Relative squared errors; 8-bit noise on x_t alone costs a few % in this random-weight net.
    assert max(b["error"] for b in blocks) < 0.1 and all(b["error"] <= b["error_nearest"] for b in blocks)


# --- calibration sets ---------------------------------------------------------------------


def test_calibration_set_spreads_psnr_levels_and_covers_every_timestep(model, calib, scenes):
    assert len(calib) == 8 and calib.maps.shape == (4, 12, 16, 16)
    assert sorted(set(calib.t.tolist())) == [0, 250, 500, 750]
    assert calib.psnr_db.tolist() == [1.0, 1.0, 100.0, 100.0]
    for m in range(4):
        assert len(set(calib.t[calib.map_index == m].tolist())) == 2  # two timesteps, `every` apart, per map
    received_clean = transmit(sent_maps(calib, scenes), AWGN(100, table="gesco"), 12)  # cleanup, no noise
    deviation = (calib.maps - received_clean).abs().amax(dim=(1, 2, 3))
    assert deviation[[2, 3]].max() < 1e-3 < 0.3 < deviation[[0, 1]].min()  # 100 dB vs 1 dB
    again = build_calibration_set(model, scenes, CalibrationRecipe(**calib_kwargs()))
    assert torch.equal(again.x, calib.x) and torch.equal(again.maps, calib.maps)
    other_seed = build_calibration_set(model, scenes, CalibrationRecipe(**calib_kwargs(seed=1)))
    assert not torch.equal(other_seed.x, calib.x)
    fewer_maps_than_levels = build_calibration_set(
        model, scenes, CalibrationRecipe(**calib_kwargs(psnrs=PAPER_PSNRS, steps=2))
    )
    assert fewer_maps_than_levels.psnr_db.tolist() == [
        PAPER_PSNRS[i] for i in (0, 2, 4, 6)
    ]  # spread, not the lowest four
    summary = calib.summary()
    assert summary["psnr_db"] == [1.0, 100.0] and summary["timesteps"] == [0, 250, 500, 750] and summary["samples"] == 8


def test_calibration_set_saves_loads_and_refuses_another_model_shape(calib, tmp_path):
    calib.save(tmp_path / "c.safetensors")
    loaded = CalibrationSet.load(tmp_path / "c.safetensors")
    assert torch.equal(loaded.x, calib.x) and torch.equal(loaded.psnr_db, calib.psnr_db) and loaded.info == calib.info
    big = create_model(create_model("cpu-test").config.replace(image_hw=(32, 32)))
    with pytest.raises(ValueError, match=r"12-channel maps at 16x16, but the model takes 12-channel maps at 32x32"):
        quantize(big, loaded, QuantConfig(iters=1))
    save_tensors(tmp_path / "other.safetensors", {"a": torch.zeros(1)}, {"kind": "unet"})
    with pytest.raises(ValueError, match="not a calibration set"):
        CalibrationSet.load(tmp_path / "other.safetensors")


def test_interrupted_calibration_resumes_to_the_same_set(model, scenes, tmp_path, monkeypatch):
    kwargs = calib_kwargs(batch_size=2)
    expected = build_calibration_set(model, scenes, CalibrationRecipe(**kwargs))
    calls = []

    def fail_on_second_batch(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return transmit(*args, **kw)

    monkeypatch.setattr(calibration_module, "transmit", fail_on_second_batch)
    partial = tmp_path / "c.partial"
    with pytest.raises(KeyboardInterrupt):
        build_calibration_set(model, scenes, CalibrationRecipe(**kwargs), resume=partial)
    assert load_tensors(partial)[1]["batches_done"] == 1
    monkeypatch.undo()
    resumed = build_calibration_set(model, scenes, CalibrationRecipe(**kwargs), resume=partial)
    for key in ("x", "t", "map_index", "maps", "psnr_db"):
        assert torch.equal(getattr(resumed, key), getattr(expected, key)), key


def test_timestep_only_set_records_the_noiseless_receiver_maps(model, scenes):
    calib = build_calibration_set(
        model, scenes, CalibrationRecipe(**calib_kwargs(timestep_only=True, num_maps=2, steps=2, every=2))
    )
    assert calib.psnr_db is None and calib.summary()["timestep_only"]
    assert torch.equal(calib.maps, transmit(sent_maps(calib, scenes), AWGN(100, table="gesco"), 12))


# --- unsupported settings -----------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 9])
def test_unsupported_bit_widths_fail_with_one_clear_message(model, bits):
    with pytest.raises(ValueError, match=rf"weight_bits={bits} is not supported: choose an integer from 2 to 8"):
        quantize(model, None, QuantConfig(weight_bits=bits, iters=0))
    with pytest.raises(ValueError, match=rf"act_bits={bits} is not supported"):
        quantize(model, None, QuantConfig(act_bits=bits, iters=0))


def test_settings_that_need_a_calibration_set_or_an_existing_layer_are_refused(model):
    with pytest.raises(ValueError, match="act_bits=8 needs a calibration set"):
        quantize(model, None, QuantConfig(act_bits=8, iters=0))
    with pytest.raises(ValueError, match=r"iters=1000 \(AdaRound\) needs a calibration set"):
        quantize(model, None, QuantConfig())
    with pytest.raises(ValueError, match="keep_fp pattern 'outt' matches no Conv/Linear layer"):
        quantize(model, None, QuantConfig(iters=0, keep_fp=["outt"]))


# --- checkpoints --------------------------------------------------------------------------


def test_w8_tiny_reference_model_stays_within_one_percent_per_layer_and_reloads_identically(tiny, tmp_path):
    """Every W8 layer reproduces its fp32 output within 1 % on the reference inputs. End to end
    this random-weight net adds ~0.5 % per layer along its main path (2.4 % measured); trained
    weights stay within 1 % end to end (next test)."""
    net, io = tiny
    qnet = quantize(net, None, QuantConfig(weight_bits=8, iters=0))
    seen = {}
    hooks = [
        net.get_submodule(name).register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, (a[0], out)))
        for name, _ in quant_layers(qnet)
    ]
    try:
        with torch.no_grad():
            fp_cond, fp_uncond = net(io["x"], io["t"], io["y"]), net(io["x"], io["t"], torch.zeros_like(io["y"]))
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        layer_errors = {name: rel_err(qnet.get_submodule(name)(inp), out) for name, (inp, out) in seen.items()}
        q_cond, q_uncond = qnet(io["x"], io["t"], io["y"]), qnet(io["x"], io["t"], torch.zeros_like(io["y"]))
    assert len(layer_errors) > 60 and max(layer_errors.values()) <= 0.01
    assert 1e-4 < rel_err(q_cond, fp_cond) <= 0.03 and rel_err(q_uncond, fp_uncond) <= 0.03
    path = tmp_path / "w8.safetensors"
    save_quantized(qnet, path, note="test")
    tensors, meta = load_tensors(path)
    assert meta["kind"] == "quantized-unet" and meta["format_version"] == 1 and meta["weight_bits"] == 8
    assert meta["config"] == json.loads(json.dumps(net.config.to_dict())) and meta["provenance"]["note"] == "test"
    assert tensors["out.2.qweight"].dtype == torch.int8 and tensors["out.2.scale"].shape == (6,)
    assert tensors["out.2.zero_point"].dtype == torch.int8 and tensors["out.2.bias"].dtype == torch.float32
    assert meta["split_layers"]["output_blocks.0.0.skip_connection"] == 64
    assert tensors["output_blocks.0.0.skip_connection.scale"].shape == (2, 64)
    assert path.stat().st_size < 0.3 * sum(v.numel() * 4 for v in net.state_dict().values())
    loaded = load_quantized(path)
    with torch.no_grad():
        assert torch.equal(loaded(io["x"], io["t"], io["y"]), q_cond)


def test_w8_trained_demo_model_stays_within_one_percent_end_to_end():
    if not BUNDLED["camvid-demo"].is_file():
        pytest.skip("the trained camvid-demo weights are not bundled in this checkout yet")
    net = load_float_model("camvid-demo")
    scenes = SyntheticScenes(4, image_hw=net.config.image_hw)
    y = encode(torch.stack([scenes[i].label for i in range(4)]), net.config.num_classes)
    t = torch.tensor([10, 300, 600, 900])
    x = create_diffusion().q_sample(
        torch.stack([scenes[i].image for i in range(4)]),
        t,
        torch.randn(4, 3, *net.config.image_hw, generator=torch.Generator().manual_seed(0)),
    )
    qnet = quantize(net, None, QuantConfig(weight_bits=8, iters=0))
    with torch.no_grad():
        assert rel_err(qnet(x, t, y), net(x, t, y)) <= 0.01


def test_w4a8_checkpoint_packs_two_weights_per_byte_and_reloads_identically(w8a8, w4, calib, tmp_path):
    x, t, y = calib.batch(slice(None))
    for qmodel, bits in ((w4, 4), (w8a8, 8)):
        path = tmp_path / f"w{bits}.safetensors"
        save_quantized(qmodel, path)
        tensors, meta = load_tensors(path)
        layer = meta["layers"]["input_blocks.1.0.in_layers.2"]
        assert layer["packed"] == (bits == 4) and layer["weight_shape"] == [32, 32, 3, 3]
        assert tensors["input_blocks.1.0.in_layers.2.qweight"].dtype == (torch.uint8 if bits == 4 else torch.int8)
        assert tensors["input_blocks.1.0.in_layers.2.qweight"].numel() == 32 * 32 * 9 // (2 if bits == 4 else 1)
        assert meta["provenance"]["calibration"]["psnr_db"] == [1.0, 100.0]
        with torch.no_grad():
            assert torch.equal(load_quantized(path)(x, t, y), qmodel(x, t, y))


def test_truncated_tampered_or_foreign_checkpoints_are_refused_before_any_compute(w4, calib, tmp_path):
    path = tmp_path / "q.safetensors"
    save_quantized(w4, path)
    data = path.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="truncated"):
        load_quantized(tmp_path / "truncated.safetensors")
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF
    (tmp_path / "flipped.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="do not match the checksum"):
        load_quantized(tmp_path / "flipped.safetensors")
    tensors, meta = load_tensors(path)
    save_tensors(tmp_path / "relabelled.safetensors", tensors, {**meta, "weight_bits": 8})
    with pytest.raises(
        ValueError,
        match=r"wrong shape/dtype, first: time_embed.0.qweight \(2048,\) torch.uint8 "
        r"\(expected \(128, 32\) torch.int8\)",
    ):
        load_quantized(tmp_path / "relabelled.safetensors")
    del tensors["out.2.scale"]
    save_tensors(tmp_path / "missing.safetensors", tensors, meta)
    with pytest.raises(ValueError, match="1 missing, first: out.2.scale"):
        load_quantized(tmp_path / "missing.safetensors")
    calib.save(tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match="not a quantized model"):
        load_quantized(tmp_path / "c.safetensors")
    assert read_meta(path)["sha256"]


def test_quant_config_round_trips_through_a_dict_and_names_unknown_fields():
    config = QuantConfig(weight_bits=4, act_bits=8, keep_fp=["out"], beta=[10, 2], iters=5)
    assert config.keep_fp == ("out",) and config.beta == (10, 2)
    assert QuantConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match=r"unknown QuantConfig field\(s\) \['wbits'\]"):
        QuantConfig.from_dict({"wbits": 4})
    with pytest.raises(ValueError, match="warmup is the fraction"):
        QuantConfig(warmup=1.0)


def test_calibration_recipe_checks_itself_and_round_trips_through_a_dict():
    recipe = CalibrationRecipe(num_maps=4, psnrs=[1, 50], steps=4, every=2, guidance=2)
    assert recipe.psnrs == (1.0, 50.0) and recipe.guidance == 2.0
    assert CalibrationRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert CalibrationRecipe(timestep_only=True).psnrs is None  # a noiseless channel has no levels
    with pytest.raises(ValueError, match="every=5 exceeds steps=4"):
        CalibrationRecipe(steps=4, every=5)
    with pytest.raises(ValueError, match="psnrs is empty"):
        CalibrationRecipe(psnrs=())
