"""Hostile input to the five API calls and the savers (issue 21): one clear ValueError before any
compute, never a NaN image or a NaN file."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import save_file

import qgesco
from qgesco.evaluate.settings import EvalSettings
from qgesco.fileio import UncheckedFileWarning, load_tensors
from qgesco.models.checkpoint import create_model, load_float_model, save_model
from qgesco.quant import CalibrationRecipe, CalibrationSet, QuantConfig, quantize, save_quantized
from qgesco.runtime import backend_line
from qgesco.runtime.bf16 import bf16_native
from qgesco.train.config import check_values, load_config
from qgesco.validate import output_file


@pytest.fixture(scope="module")
def net():
    return create_model("cpu-test", seed=0).eval()


@pytest.fixture(scope="module")
def qmodel(net):
    return quantize(net, None, QuantConfig(weight_bits=8, iters=0, weight_init="minmax"))


@pytest.fixture(scope="module")
def y():
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[:, 8:] = 5
    return qgesco.send(labels, 12, qgesco.AWGN(100), generator=torch.Generator().manual_seed(0))


def test_send_names_a_wrong_channel_or_class_count():
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    with pytest.raises(ValueError, match="channel must be a channel such as qgesco.AWGN"):
        qgesco.send(labels, 12, 10)
    with pytest.raises(ValueError, match="num_classes must be an integer"):
        qgesco.send(labels, 12.5, qgesco.AWGN(10))
    with pytest.raises(ValueError, match="labels must be a non-empty"):
        qgesco.send(labels[:0], 12, qgesco.AWGN(10))


@pytest.mark.parametrize(
    "bad, message",
    [
        ("name", "load it first: qgesco.load_model"),
        ("nan-map", "holds 1 NaN/inf"),
        ("empty", "is empty"),
        ("guidance", "guidance must be a finite number"),
        ("channels", "have 13 channels but the model takes 12"),
        ("generator", "generator must be a torch.Generator"),
    ],
)
def test_regenerate_refuses_bad_input_before_sampling(net, y, bad, message):
    model, maps, kwargs = net, y.clone(), {}
    if bad == "name":
        model = "camvid-demo"
    elif bad == "nan-map":
        maps[0, 0, 0, 0] = float("nan")
    elif bad == "empty":
        maps = maps[:0]
    elif bad == "guidance":
        kwargs["guidance"] = float("nan")
    elif bad == "channels":
        maps = torch.cat([maps, maps[:, :1]], 1)
    elif bad == "generator":
        kwargs["generator"] = 3
    with pytest.raises(ValueError, match=message):
        qgesco.regenerate(model, maps, sampler="ddim2", **kwargs)


def test_non_finite_model_output_stops_sampling_with_the_step(y):
    def broken(x, t, cond):
        return torch.full((x.shape[0], 6, *x.shape[2:]), float("nan"))

    with pytest.raises(RuntimeError, match=r"sampling produced NaN/inf before step 0"):
        qgesco.regenerate(broken, y, sampler="ddim2")


def test_savers_refuse_nan_weights_and_leave_no_file(qmodel, tmp_path):
    bad = create_model("cpu-test", seed=0)
    with torch.no_grad():
        bad.out[2].weight[0] = float("inf")
    with pytest.raises(ValueError, match="hold NaN or infinity.*out.2.weight"):
        save_model(bad, tmp_path / "bad.safetensors")
    broken = copy.deepcopy(qmodel)
    with torch.no_grad():
        next(v for k, v in broken.state_dict().items() if k.endswith("scale")).fill_(float("nan"))
    with pytest.raises(ValueError, match="hold NaN or infinity"):
        save_quantized(broken, tmp_path / "q.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_quantize_refuses_wrong_calibration_types_and_quantized_models(net, qmodel):
    with pytest.raises(ValueError, match="calib must be a CalibrationSet"):
        quantize(net, torch.zeros(3), QuantConfig(iters=0))
    with pytest.raises(ValueError, match="already quantized"):
        quantize(qmodel, None, QuantConfig(iters=0))


def test_calibration_refuses_nan_maps_and_sets_with_impossible_values(net, y, tmp_path):
    maps = torch.nn.functional.one_hot(torch.zeros(2, 16, 16, dtype=torch.long), 12).permute(0, 3, 1, 2).float()
    maps[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="maps holds 1 NaN/inf"):
        qgesco.build_calibration_set(net, maps, CalibrationRecipe(num_maps=2, steps=2, every=1))
    with pytest.raises(ValueError, match="build_calibration_set takes a qgesco UNetModel"):
        qgesco.build_calibration_set("camvid-demo", maps, CalibrationRecipe(num_maps=2, steps=2, every=1))
    x = torch.randn(2, 3, 16, 16)
    x[0, 0, 0, 0] = 1e30
    CalibrationSet(x, torch.tensor([10, 20]), torch.tensor([0, 1]), y, None, {}).save(tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match="'x' holds NaN/inf or values beyond"):
        CalibrationSet.load(tmp_path / "c.safetensors")


def test_every_tensor_file_carries_a_digest_checked_on_load(net, tmp_path):
    path = tmp_path / "m.safetensors"
    save_model(net, path)
    assert load_tensors(path)[1]["sha256"]
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"m.safetensors: tensor data do not match the checksum.*qgesco train"):
        load_float_model(path)
    legacy = tmp_path / "legacy.safetensors"  # written before digests: loads, with a warning (tests/test_digests.py)
    save_file({"a": torch.ones(2)}, legacy, metadata={"qgesco": json.dumps({"kind": "x"})})
    with pytest.warns(UncheckedFileWarning):
        assert torch.equal(load_tensors(legacy)[0]["a"], torch.ones(2))


def test_config_numbers_in_every_form(tmp_path):
    (tmp_path / "c.yaml").write_text("lr: 2e-4\nsteps: 1e3\nweight_decay: 1E-2\n")
    cfg = load_config(tmp_path / "c.yaml", {"ema_rate": "0.99"})
    assert (cfg.lr, cfg.steps, cfg.weight_decay, cfg.ema_rate) == (2e-4, 1000, 1e-2, 0.99)
    with pytest.raises(ValueError, match="lr: must be a finite number"):
        check_values(load_config(None, {"lr": float("inf")}))


def test_load_model_names_wrong_types_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="load_model takes a file path or a bundled name"):
        qgesco.load_model(123)
    with pytest.raises(FileNotFoundError, match="nope.safetensors: no such file"):
        qgesco.load_model(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("scale", [1e30, -1.0, 20.5])
def test_guidance_has_one_range_everywhere(net, y, scale):
    """1e30 made a saturated image with exit 0; negative scales were taken by sampling, refused by calibration."""
    with pytest.raises(ValueError, match="guidance scales go from 0"):
        qgesco.regenerate(net, y, sampler="ddim2", guidance=scale)
    with pytest.raises(ValueError, match="guidance scales go from 0"):
        qgesco.build_calibration_set(net, y, CalibrationRecipe(num_maps=2, steps=2, every=1, guidance=scale))
    with pytest.raises(ValueError, match="guidance scales go from 0"):
        EvalSettings(data="synthetic:2", guidance=scale)


def test_calibration_sets_hold_samples_at_the_diffusions_timesteps(y):
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"timesteps t must lie in \[0, 1000\), the diffusion's, got 10..5000"):
        CalibrationSet(x, torch.tensor([10, 5000]), torch.tensor([0, 1]), y, None)
    with pytest.raises(ValueError, match="it holds no samples"):
        CalibrationSet(x[:0], torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), y, None)


def test_a_plan_that_quantizes_nothing_is_refused(net):
    """--keep-fp '*' wrote a file labelled W8 whose layers were all float."""
    with pytest.raises(ValueError, match="keeps all .* layers in float: nothing would be quantized"):
        quantize(net, None, QuantConfig(iters=0, keep_fp=["*"]))


def test_quantized_runtime_line_counts_the_layers_that_run_int8(qmodel, tmp_path):
    save_quantized(qmodel, tmp_path / "q.safetensors")
    line = backend_line(tmp_path / "q.safetensors")
    layers = len(qmodel.quant_plan["layers"])
    if "runtime backend int8" in line:
        rest = "in bf16, the rest in fp32" if bf16_native() else "the rest in float"  # the weight-only ones
        assert f"of {layers} quantized layers on them, " in line and rest in line
    partial = quantize(create_model("cpu-test", seed=0).eval(), None, QuantConfig(iters=0, keep_fp=["out"]))
    save_quantized(partial, tmp_path / "p.safetensors")
    assert "1 layer(s) kept in float by the file (--keep-fp)" in backend_line(tmp_path / "p.safetensors")


def test_jpeg_figure_needs_the_photo_at_the_maps_size():
    """A 360x480 photo's JPEG bits were divided by a 48x64 map's pixels."""
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    with pytest.raises(ValueError, match="photos are 32x32 but the maps 16x16"):
        qgesco.channel.bandwidth(labels, 12, images=torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    same = qgesco.channel.bandwidth(labels, 12, images=torch.zeros(1, 3, 16, 16, dtype=torch.uint8))[0]
    assert same.jpeg_bits > 0


def test_outputs_may_not_be_inputs(tmp_path):
    (tmp_path / "in.png").write_bytes(b"x")
    (tmp_path / "link.png").symlink_to(tmp_path / "in.png")
    for out in ("in.png", "link.png", "./sub/../in.png"):
        with pytest.raises(ValueError, match="is the same file as LABEL"):
            output_file("--preview", tmp_path / out, (".png",), inputs={"LABEL": tmp_path / "in.png"})
    assert output_file("--preview", tmp_path / "out.png", (".png",), inputs={"LABEL": tmp_path / "in.png"})


@pytest.mark.parametrize("value", [2**63, -1, 1.5])
def test_seeds_are_what_torch_generators_take(value):
    with pytest.raises(ValueError, match="seed"):
        EvalSettings(data="synthetic:2", seed=value)


def test_load_model_on_cuda_without_a_gpu_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device cuda: no CUDA GPU is visible to torch; use cpu"):
        qgesco.load_model("camvid-demo", device="cuda")
