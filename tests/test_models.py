"""The network equals the published GESCO/SDM code: state-dict manifest and tiny-model outputs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from qgesco.cli import main
from qgesco.fileio import save_tensors
from qgesco.models import UNetConfig, config_from_official_flags, from_official_flags
from qgesco.models.checkpoint import (
    BUNDLED,
    create_model,
    load_float_model,
    load_official_checkpoint,
    open_source,
    resolve_source,
    save_model,
)
from qgesco.models.costs import model_costs
from qgesco.models.presets import get_preset
from qgesco.models.unet import UNetModel
from qgesco.quant.swap import PLAN_KEYS
from qgesco.runtime.costs import stored_bytes


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def tiny(reference_dir):
    flags = json.loads((reference_dir / "tiny_unet_config.json").read_text())["builder_config"]
    model = from_official_flags(**flags).eval()
    model.load_state_dict(load_file(reference_dir / "tiny_unet_weights.safetensors"), strict=True)
    return flags, model, load_file(reference_dir / "tiny_unet_io.safetensors")


def test_state_dict_matches_published_cityscapes_manifest(reference_dir):
    manifest = json.loads((reference_dir / "gesco_cityscapes_state_dict.json").read_text())
    with torch.device("meta"):
        model = from_official_flags(**manifest["builder_config"])
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(k, list(s)) for k, s in manifest["state_dict"]]
    assert sum(v.numel() for v in model.state_dict().values()) == manifest["num_parameters"] == 674_707_206


def test_published_preset_is_the_manifest_config(reference_dir):
    manifest = json.loads((reference_dir / "gesco_cityscapes_state_dict.json").read_text())
    assert get_preset("gesco-cityscapes-256") == config_from_official_flags(
        **manifest["builder_config"], image_hw=(256, 512)
    )


def test_tiny_model_reproduces_reference_outputs(tiny):
    _, model, io = tiny
    with torch.no_grad():
        assert rel_err(model(io["x"], io["t"], io["y"]), io["out_cond"]) <= 1e-5
        assert rel_err(model(io["x"], io["t"], torch.zeros_like(io["y"])), io["out_uncond"]) <= 1e-5


def test_affine_spade_norm_would_break_the_reference(tiny):
    """The SPADE GroupNorm must be parameter-free: an affine one changes the outputs."""
    _, model, io = tiny
    block = model.output_blocks[0][0].in_norm.norm
    block.affine = True
    block.weight = torch.nn.Parameter(torch.full((block.num_channels,), 1.5))
    block.bias = torch.nn.Parameter(torch.full((block.num_channels,), 0.1))
    try:
        with torch.no_grad():
            assert rel_err(model(io["x"], io["t"], io["y"]), io["out_cond"]) > 1e-3
    finally:
        block.affine, block.weight, block.bias = False, None, None


def test_official_checkpoint_loads_with_prefix_and_strict(tiny, tmp_path):
    flags, model, io = tiny
    path = tmp_path / "ema.pt"
    torch.save({f"model.{k}": v for k, v in model.state_dict().items()}, path)
    loaded = load_official_checkpoint(path, **flags).eval()
    with torch.no_grad():
        assert rel_err(loaded(io["x"], io["t"], io["y"]), io["out_cond"]) <= 1e-5


def test_official_checkpoint_mismatch_names_keys_and_flag(tiny, tmp_path):
    flags, model, _ = tiny
    path = tmp_path / "ema.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match=r"(?s)mis-shaped.*num_classes/no_instance"):
        load_official_checkpoint(path, **{**flags, "num_classes": 20})
    with pytest.raises(ValueError, match=r"(?s)unexpected.*learn_sigma|learn_sigma"):
        load_official_checkpoint(path, **{**flags, "learn_sigma": False})


@pytest.mark.parametrize(
    "flags, name",
    [
        ({"image_size": 32, "num_classes": 35, "bogus_flag": 1}, "bogus_flag"),
        (
            {"image_size": 32, "num_classes": 35, "attention_resolutions": "7", "channel_mult": "1,2"},
            "attention_resolutions",
        ),
        ({"image_size": 32, "num_classes": 0, "channel_mult": "1,2"}, "num_classes"),
        ({"image_size": 32, "num_classes": -3, "channel_mult": "1,2"}, "num_classes"),
        ({"image_size": 48, "num_classes": 35}, "channel_mult"),
        ({"image_size": 32, "num_classes": 35, "channel_mult": "1,2", "num_channels": 48}, "norm_groups.*num_channels"),
        ({"image_size": 32, "num_classes": 35, "channel_mult": "1,2", "num_head_channels": 24}, "num_head_channels"),
        ({"image_size": 32, "num_classes": 35, "channel_mult": "1,2", "num_heads": 0}, "num_heads"),
        ({"image_size": 32, "num_classes": 35, "channel_mult": "1,2", "dropout": 1.0}, "dropout"),
        ({"image_size": 32, "num_classes": 35, "channel_mult": "1,2", "learn_sigma": "maybe"}, "learn_sigma.*bool"),
        ({"image_size": "3.5", "num_classes": 35, "channel_mult": "1,2"}, "image_size.*int"),
        ({"image_size": 32, "num_classes": 35, "channel_mult": "1,2", "dropout": "x"}, "dropout.*float"),
        ({"image_size": 32, "num_classes": 35, "channel_mult": "1,2", "image_hw": (32, 31)}, "image_hw"),
    ],
)
def test_bad_flags_raise_value_error_naming_the_flag(flags, name):
    with pytest.raises(ValueError, match=name):
        from_official_flags(class_cond=True, num_channels=flags.pop("num_channels", 32), **flags)


def test_flags_accept_command_line_strings():
    cfg = config_from_official_flags(
        image_size="32",
        num_classes="35",
        num_channels="32",
        channel_mult="1,2",
        class_cond="True",
        learn_sigma="true",
        resblock_updown="False",
    )
    assert (cfg.image_size, cfg.num_classes, cfg.learn_sigma, cfg.resblock_updown) == (32, 35, True, False)


def test_wrong_map_channels_is_a_clear_error():
    model = from_official_flags(image_size=32, num_classes=12, num_channels=32, channel_mult="1,2", class_cond=True)
    with pytest.raises(ValueError, match="13"):
        model(torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long), torch.zeros(1, 12, 32, 32))


def test_safetensors_roundtrip_keeps_config_and_outputs(tmp_path):
    cfg = get_preset("cpu-test")
    model = from_official_flags(
        image_size=16,
        num_classes=12,
        num_channels=32,
        channel_mult="1,2",
        class_cond=True,
        learn_sigma=True,
        no_instance=True,
        attention_resolutions="8",
    )
    torch.nn.init.normal_(model.out[2].weight)
    path = tmp_path / "m.safetensors"
    save_model(model, path, steps=7)
    loaded = load_float_model(path, channels_last=False)
    assert loaded.config == model.config and loaded.config != cfg
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([3, 900]), torch.rand(2, 12, 16, 16)
    with torch.no_grad():
        expected = model.eval()(x, t, y)
        assert torch.equal(loaded(x, t, y), expected)
        fast = load_float_model(path)  # the default channels_last layout: same function, other kernels
        assert fast.out[2].weight.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fast(x, t, y), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_norm_groups_reach_every_groupnorm_and_keep_the_parameters():
    cfg = get_preset("cpu-test")

    def groups(model):
        return {m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)}

    published, regrouped = UNetModel(cfg), UNetModel(cfg.replace(norm_groups=8))
    assert groups(published) == {32} and groups(regrouped) == {8}
    assert {k: v.shape for k, v in published.state_dict().items()} == {
        k: v.shape for k, v in regrouped.state_dict().items()
    }
    assert UNetConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "norm_groups"}).norm_groups == 32
    with pytest.raises(ValueError, match="norm_groups: 24 groups do not divide"):
        cfg.replace(norm_groups=24)


def test_config_json_roundtrip():
    cfg = get_preset("gesco-cityscapes-256")
    assert UNetConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="unknown model config field"):
        UNetConfig.from_dict({**cfg.to_dict(), "extra": 1})


def test_published_costs_match_the_paper():
    c = model_costs(get_preset("gesco-cityscapes-256"))
    assert c.params == 674_707_206 and round(stored_bytes(get_preset("gesco-cityscapes-256")) / 1e6, 1) == 2698.8
    assert round(c.flops_forward / 1e12, 2) == 6.96 and round(c.flops_guided_step / 1e12, 1) == 13.9
    assert abs(sum(c.flops_by_module.values()) - c.flops_forward) < 1e-6 * c.flops_forward


def test_info_cli_prints_the_published_figures(capsys):
    assert main(["info", "gesco-cityscapes-256"]) == 0
    out = capsys.readouterr().out
    for text in ("674,707,206", "2,698.8 MB", "6.96 TFLOP", "13.91 TFLOP"):
        assert text in out


def test_one_resolver_turns_model_arguments_into_files_and_configs(tmp_path, capsys):
    """A bundled name is its file, a path is itself, a preset has a config and no file; anything else is
    one error naming what would have been accepted, and a file of another kind is not a model."""
    assert resolve_source("camvid-demo-w8") == BUNDLED["camvid-demo-w8"]
    save_model(create_model("cpu-test", seed=0), tmp_path / "m.safetensors")
    assert resolve_source(tmp_path / "m.safetensors") == tmp_path / "m.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors: no such file.*camvid-demo-w8"):
        resolve_source(tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="preset 'cpu-test' has no bundled weights"):
        resolve_source("cpu-test")
    preset, quantized = open_source("cpu-test"), open_source("camvid-demo-w8")
    assert preset.path is None and preset.config == get_preset("cpu-test") and not preset.quantized
    assert quantized.path == BUNDLED["camvid-demo-w8"] and quantized.quantized
    assert quantized.config == get_preset("camvid-demo")
    with pytest.raises(FileNotFoundError, match="bundled model .* or preset .*cpu-test"):
        open_source("no-such-model")
    save_tensors(tmp_path / "maps.safetensors", {"y": torch.zeros(1)}, {"kind": "received-maps"})
    with pytest.raises(ValueError, match="holds a 'received-maps' file, not a model"):
        open_source(tmp_path / "maps.safetensors")
    assert main(["info", "camvid-demo-w8"]) == 0  # a bundled file: its stored bytes, from the one counter
    plan = {k: quantized.meta[k] for k in PLAN_KEYS}
    assert f"{stored_bytes(quantized.config, plan) / 1e6:,.2f} MB (W8" in capsys.readouterr().out
