"""``qgesco evaluate`` on a tiny model (32x32, random weights, a few sampling steps) and on oracle
"models" whose quality is known: every image's inputs are independent of batch, rank and model
set; reruns skip and resumes reproduce images bit for bit; tables repeat the JSON; better models
score better; bad settings fail with one clear message."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from qgesco import load_model
from qgesco.cli import main
from qgesco.data import open_dataset
from qgesco.diffusion import create_diffusion
from qgesco.evaluate import chunks, describe, evaluate, image_path, shard
from qgesco.evaluate.report import cell
from qgesco.evaluate.runner import Scenes
from qgesco.evaluate.settings import IMAGE_SETTINGS, EvalSettings
from qgesco.models.checkpoint import create_model, save_model
from qgesco.models.presets import get_preset
from qgesco.quant import CalibrationRecipe, QuantConfig, build_calibration_set, quantize, save_quantized

#: Tiny models: one thread avoids per-op thread synchronisation on shared cores (conftest).
pytestmark = pytest.mark.usefixtures("one_thread")

CFG = get_preset("cpu-test").replace(image_size=32, image_hw=(32, 32))
#: The fixture run's settings; other runs reuse them to compare images.
RUN = dict(
    psnrs=(100.0, 10.0),
    sampler="ddpm2",
    images=5,
    batch_size=2,
    metrics=("lpips", "miou", "pixel"),
)


def _tiny_model() -> nn.Module:
    """The cpu-test UNet at 32x32 (LPIPS needs 32 pixels) with a non-zero output layer."""
    model = create_model(CFG, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.out.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """fp32, W8 calibrated on clean maps (timestep only), W4 calibrated with channel noise; and a CLI run
    of all three."""
    tmp = tmp_path_factory.mktemp("evaluate")
    model = _tiny_model()
    save_model(model, tmp / "fp32.safetensors")
    scenes = open_dataset("synthetic:4", image_hw=CFG.image_hw)
    for name, bits, timestep_only in (("w8t", 8, True), ("w4", 4, False)):
        calib = build_calibration_set(
            model, scenes, CalibrationRecipe(num_maps=2, psnrs=(10,), timestep_only=timestep_only, steps=2, every=1)
        )
        qmodel = quantize(model, calib, QuantConfig(weight_bits=bits, iters=0, weight_init="minmax"))
        save_quantized(qmodel, tmp / f"{name}.safetensors")
    run = tmp / "run"
    argv = [
        "evaluate",
        "--model",
        f"fp32={tmp / 'fp32.safetensors'}",
        "--model",
        f"W8t={tmp / 'w8t.safetensors'}",
        "--model",
        str(tmp / "w4.safetensors"),
        "--data",
        "synthetic:8",
        "--images",
        "5",
        "--psnr",
        "100,10",
        "--sampler",
        "ddpm",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--metrics",
        "lpips,miou,pixel",
        "--device",
        "cpu",
        "--out",
        str(run),
    ]
    assert main(argv) == 0
    return tmp


def _result(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


# ---------------------------------------------------------------- seeding and sharding


@pytest.mark.parametrize("count", [1, 7, 16, 17])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_chunks_and_shards_cover_every_image_once(count, batch_size):
    whole = chunks(count, batch_size)
    assert [c.start for c in whole] == list(range(0, count, batch_size)) and all(len(c) <= batch_size for c in whole)
    for world in (1, 2, 3, 5):
        parts = [shard(count, batch_size, rank, world) for rank in range(world)]
        assert sorted(i for part in parts for c in part for i in c) == list(range(count))
        assert (
            sorted((c for part in parts for c in part), key=lambda c: c.start) == whole
        )  # same chunks on any world size
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match="rank 2 outside 0..1"):
        shard(count, batch_size, 2, 2)


def test_inputs_per_image_do_not_depend_on_the_batch():
    dataset = open_dataset("synthetic:6", image_hw=CFG.image_hw)
    scenes = Scenes(
        dataset,
        CFG,
        EvalSettings("synthetic:4", seed=0, channel="awgn", noise_table="exact", cleanup="avgmax", compress=True),
    )
    batch, alone = scenes.received([1, 4, 5], 10.0), scenes.received([4], 10.0)
    assert torch.equal(batch[1], alone[0]) and torch.equal(scenes.x_T([5, 4])[1], scenes.x_T([4])[0])
    assert not torch.equal(scenes.received([4], 20.0), alone)  # another PSNR, other channel draws
    assert not torch.equal(scenes.x_T([4]), scenes.x_T([5]))
    raw = Scenes(dataset, CFG, dataclasses.replace(scenes.s, cleanup="none"))  # at 100 dB the map arrives intact
    assert torch.equal(raw.received([4], 100.0)[0].argmax(0), dataset[4].label)


# ---------------------------------------------------------------- the run folder


def test_tables_repeat_the_metrics_json(files):
    run = files / "run"
    result = _result(run)
    assert list(result["models"]) == ["fp32", "W8t", "w4"] and result["settings"]["reference"] == "fp32"
    table = (run / "table.md").read_text()
    section = table.split("## Table I\n")[1].split("##")[0]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in section.strip().splitlines()[2:]}
    for name, info in result["models"].items():
        expected = [cell(k, result["results"][name][p].get(k)) for p in ("100", "10") for k in ("lpips", "fid")]
        assert rows[name][3:] == expected
        assert (
            rows[name][0].split()[0] == str(info["weight_bits"])
            and rows[name][1].split()[0] == f"{info['size_mb']:.2f}"
        )
    assert rows["fp32"][3] == f"{result['results']['fp32']['100']['lpips']:.4f}" and rows["fp32"][4] == "–"
    assert rows["W8t"][0] == "8 (-75%)"
    ablation = table.split("## Table II: calibration set\n")[1].split("##")[0].strip().splitlines()[2:]
    assert [r.split("|")[1:3] for r in ablation] == [[" Timestep ", " W8t "], [" Noise + Timestep ", " w4 "]]
    assert result["models"]["W8t"]["calibration"] == "timestep" and result["models"]["fp32"]["calibration"] is None
    for name in result["models"]:
        for p in ("100", "10"):
            r = result["results"][name][p]
            assert r["n"] == 5 and 0 < r["lpips"] < 1 and 0 <= r["miou"] <= r["pixel_accuracy"] <= 1
            assert r["lpips"] == pytest.approx(np.mean(result["per_image"][name][p]["lpips"]), abs=1e-12)
    assert len(result["original"]["iou"]) == 12 and result["images"]["names"][0] == "synthetic_000000"
    for f in ("metrics_vs_psnr.png", "grid_psnr10.png", "run.json"):
        assert (run / f).stat().st_size > 0
    assert len(list((run / "images").rglob("*.png"))) == 5 * (1 + 3 * 2)


def test_rerun_skips_and_resume_reproduces_identical_images(files, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(files / "run", run)
    models = {"fp32": files / "fp32.safetensors", "W8t": files / "w8t.safetensors", "w4": files / "w4.safetensors"}
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (run / "images").rglob("*.png")}
    deleted = [image_path(run, "fp32", 2, 10.0), image_path(run, "w4", 3, 100.0), image_path(run, "w4", 4, 10.0)]
    for p in deleted:
        p.unlink()
    result = evaluate(models, EvalSettings("synthetic:8", **RUN), run, "cpu")
    for p, (data, mtime) in before.items():
        assert p.read_bytes() == data, f"{p} differs after resuming"
        assert p in deleted or p.stat().st_mtime_ns == mtime, f"{p} was rewritten"
    assert result["results"] == _result(files / "run")["results"]


def test_same_inputs_whatever_the_other_models(files, tmp_path):
    """Another model set, one PSNR, 4 images: the chunks [0, 1] and [2, 3] are the fixture's, so are their images."""
    fp32 = files / "fp32.safetensors"
    result = evaluate(
        {"A": fp32, "B": str(fp32)},
        EvalSettings("synthetic:8", **{**RUN, "psnrs": (10.0,), "images": 4}),
        tmp_path,
        "cpu",
    )
    assert result["results"]["A"] == result["results"]["B"]
    assert result["per_image"]["A"]["10"]["lpips"] == _result(files / "run")["per_image"]["fp32"]["10"]["lpips"][:4]
    for i in range(4):
        assert (
            image_path(tmp_path, "A", i, 10.0).read_bytes() == image_path(files / "run", "fp32", i, 10.0).read_bytes()
        )


# ---------------------------------------------------------------- metrics respond to quality


class ClassColourOracle(nn.Module):
    """Predicts the noise of an image that paints each pixel in its received class's colour, so
    deterministic sampling (guidance 1) returns exactly that picture: quality set by ``colours``."""

    def __init__(self, colours: torch.Tensor):
        super().__init__()
        self.config = CFG
        self.register_buffer("colours", colours)
        self.register_buffer("alphas_cumprod", torch.as_tensor(create_diffusion().alphas_cumprod, dtype=torch.float32))

    def forward(self, x, t, y):
        x0 = self.colours[y[:, : CFG.num_classes].argmax(1)].permute(0, 3, 1, 2)
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return torch.cat([eps, torch.zeros_like(eps)], 1)


def test_better_receivers_score_better(tmp_path):
    dataset = open_dataset("synthetic:6", image_hw=CFG.image_hw)
    sums, counts = torch.zeros(12, 3), torch.zeros(12)
    for s in (dataset[i] for i in range(len(dataset))):
        sums.index_add_(0, s.label.flatten(), s.image.flatten(1).T)
        counts += torch.bincount(s.label.flatten(), minlength=12)
    colours = sums / counts.clamp(min=1)[:, None]  # per-class mean colour: the best flat painting
    models = {
        "mean": ClassColourOracle(colours),
        "again": ClassColourOracle(colours),
        "wrong": ClassColourOracle(colours.roll(1, 0)),
    }
    result = evaluate(
        models,
        EvalSettings(
            "synthetic:6",
            psnrs=(100, -5),
            sampler="ddim3",
            guidance=1.0,
            batch_size=4,
            metrics=("lpips", "pixel", "miou"),
        ),
        tmp_path,
        "cpu",
    )
    r = result["results"]
    assert r["mean"] == r["again"]
    for p in ("100", "-5"):
        assert r["mean"][p]["lpips"] < r["wrong"][p]["lpips"]
        assert (
            r["mean"][p]["image_psnr"] > r["wrong"][p]["image_psnr"] + 2
            and r["mean"][p]["ssim"] > r["wrong"][p]["ssim"]
        )
    clean, noisy = r["mean"]["100"], r["mean"]["-5"]  # -5 dB: sigma 1.78 per symbol, many pixels change class
    assert clean["image_psnr"] > noisy["image_psnr"] + 1 and clean["pixel_accuracy"] > noisy["pixel_accuracy"] + 0.05
    assert result["models"]["mean"]["kind"] == "fp" and result["models"]["mean"]["source"] == "ClassColourOracle"


def test_describe_reports_bits_size_and_calibration(files):
    from qgesco.quant import load_quantized

    fp = describe(_tiny_model(), "memory")
    w8, w4 = (describe(load_quantized(files / f"{n}.safetensors"), n) for n in ("w8t", "w4"))
    assert (fp["weight_bits"], w8["weight_bits"], w4["weight_bits"]) == (32, 8, 4)
    assert (
        0.25 < w8["size_mb"] / fp["size_mb"] < 0.3
        and 0.125 < w4["size_mb"] / fp["size_mb"] < w8["size_mb"] / fp["size_mb"]
    )
    assert (
        fp["tflops"] > w8["tflops"] > w4["tflops"] > 0 and w8["tflops"] / fp["tflops"] > 0.25
    )  # attention stays float
    assert (w8["calibration"], w4["calibration"], fp["calibration"]) == ("timestep", "noise+timestep", None)
    assert fp["sha256"] == describe(_tiny_model(), "again")["sha256"] != w8["sha256"]


def _stored_tensor_bytes(path: Path) -> int:
    """Bytes of the tensor data a safetensors file stores, read from its header: the oracle for Table I."""
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    return sum(e["data_offsets"][1] - e["data_offsets"][0] for k, e in header.items() if k != "__metadata__")


def test_table_size_is_what_the_file_stores_whatever_the_backend(files, tmp_path, capsys):
    """The int8 backend holds its weights prepacked by oneDNN, invisible to ``state_dict``; Table I's size
    still equals the file's stored tensor bytes (within 1%), as does the weight-only backend's and ``info``'s."""
    path = files / "w8t.safetensors"
    models = {"int8": load_model(path, backend="int8"), "wo": load_model(path, backend="weight-only"), "file": path}
    assert models["int8"].runtime_backend[0] == "int8" and models["wo"].runtime_backend[0] == "weight-only"
    result = evaluate(
        {**models, "fp32": files / "fp32.safetensors"},
        EvalSettings("synthetic:2", **{**RUN, "images": 1, "psnrs": (100.0,), "metrics": ("pixel",)}),
        tmp_path / "run",
        "cpu",
    )
    for name in ("int8", "wo", "file"):
        assert result["models"][name]["size_mb"] * 1e6 == pytest.approx(_stored_tensor_bytes(path), rel=0.01)
    fp32 = result["models"]["fp32"]["size_mb"] * 1e6
    assert fp32 == pytest.approx(_stored_tensor_bytes(files / "fp32.safetensors"), rel=0.01)
    assert "| int8 | 8 (-75%) |" in (tmp_path / "run" / "table.md").read_text()
    assert main(["info", str(path)]) == 0
    stored = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("stored size"))
    assert float(stored.split()[2]) * 1e6 == pytest.approx(_stored_tensor_bytes(path), rel=0.01)


# ---------------------------------------------------------------- clear failures


def test_bad_settings_fail_with_one_clear_message(files, tmp_path, capsys):
    fp32 = files / "fp32.safetensors"
    run = tmp_path / "run"
    shutil.copytree(files / "run", run)
    with pytest.raises(ValueError, match=r"other settings \(sampler 'ddpm2' -> 'ddim3'\); use another --out"):
        evaluate({"fp32": fp32}, EvalSettings("synthetic:8", **{**RUN, "sampler": "ddim3"}), run, "cpu")
    with pytest.raises(ValueError, match=r"other settings \(guidance_window None -> \[500, 999\]\)"):
        evaluate({"fp32": fp32}, EvalSettings("synthetic:8", **RUN, guidance_window=(500, 999)), run, "cpu")
    with pytest.raises(ValueError, match=r"guidance_window \(999, 500\) must satisfy 0 <= t_lo <= t_hi"):
        evaluate({"fp32": fp32}, EvalSettings("synthetic:8", **RUN, guidance_window=(999, 500)), tmp_path / "x", "cpu")
    with pytest.raises(ValueError, match="model 'W8t' with other weights"):
        evaluate({"W8t": fp32}, EvalSettings("synthetic:8", **RUN), run, "cpu")
    with pytest.raises(ValueError, match="model name 'original'"):
        evaluate({"original": fp32}, EvalSettings("synthetic:8", **RUN), tmp_path / "x", "cpu")
    with pytest.raises(ValueError, match="synthetic:3 has 3 scenes; ask for 1..3"):
        evaluate({"fp32": fp32}, EvalSettings("synthetic:3", **RUN), tmp_path / "x", "cpu")
    with pytest.raises(ValueError, match="noise table 'gesco' has no level \\[7.0\\]"):
        evaluate(
            {"fp32": fp32},
            EvalSettings("synthetic:8", **{**RUN, "psnrs": (100, 7)}, noise_table="gesco"),
            tmp_path / "x",
            "cpu",
        )
    small = tmp_path / "small.safetensors"
    save_model(create_model("cpu-test", seed=0), small)
    with pytest.raises(
        ValueError, match=r"LPIPS needs images of at least 32x32 \(AlexNet.s pools\), these are 16x16; leave it out"
    ):
        evaluate({"fp32": small}, EvalSettings("synthetic:8", **RUN), tmp_path / "x", "cpu")
    with pytest.raises(ValueError, match="models 'fp32' and 'small' take different inputs"):
        evaluate({"fp32": fp32, "small": small}, EvalSettings("synthetic:8", **RUN), tmp_path / "x", "cpu")
    assert not (tmp_path / "x" / "images").exists()  # every check runs before any image is made
    rc = main(
        ["evaluate", "--model", str(fp32), "--model", str(fp32), "--data", "synthetic:3", "--out", str(tmp_path / "y")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "the name 'fp32' is taken; name models explicitly" in err[0]


def test_missing_inception_weights_fail_before_regenerating(files, tmp_path, monkeypatch):
    monkeypatch.setenv("QGESCO_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match="Run `qgesco fetch-weights`"):
        evaluate(
            {"fp32": files / "fp32.safetensors"},
            EvalSettings("synthetic:8", **{**RUN, "metrics": ("fid",)}),
            tmp_path / "x",
            "cpu",
        )
    assert not (tmp_path / "x" / "images").exists()


# ---------------------------------------------------------------- slow: FID and two ranks


def _inception_or_skip():
    from qgesco.metrics import FetchError, weights

    try:
        weights.fetch("inception-fid")
    except FetchError as e:
        pytest.skip(f"Inception weights not cached and not fetchable: {e}")


@pytest.mark.slow
def test_fid_and_kid_from_cached_folder_features(files, tmp_path, monkeypatch):
    _inception_or_skip()
    from qgesco.metrics import fid, fid_kid, folder_features, kid, weights

    cache = tmp_path / "cache"  # folder features land here, not in the user's cache
    cache.mkdir()
    (cache / "weights").symlink_to(weights.weights_dir(), target_is_directory=True)
    monkeypatch.setenv("QGESCO_CACHE", str(cache))
    run = tmp_path / "run"
    shutil.copytree(files / "run", run)  # the metrics choice does not touch the images: none is regenerated
    settings = {**RUN, "metrics": ("fid",)}
    result = evaluate({"fp32": files / "fp32.safetensors"}, EvalSettings("synthetic:8", **settings), run, "cpu")
    real, fake = (folder_features(run / "images" / f) for f in ("original", "fp32/psnr10"))
    r = result["results"]["fp32"]["10"]
    assert real.shape == (5, 2048) and r["fid"] == fid(fake, real) > 1 and (r["kid"], r["kid_std"]) == kid(fake, real)
    assert abs(fid(real, real)) < 1e-6
    monkeypatch.setattr(fid_kid, "InceptionFeatures", None)  # a rerun reads every set's features from the cache
    assert (
        evaluate({"fp32": files / "fp32.safetensors"}, EvalSettings("synthetic:8", **settings), run, "cpu")["results"]
        == result["results"]
    )


@pytest.mark.slow
def test_two_torchrun_ranks_give_the_single_process_result(files, tmp_path):
    run = tmp_path / "run"
    code = (
        f"import torch; torch.set_num_threads(1); from qgesco.evaluate import evaluate; "
        f"from qgesco.evaluate import EvalSettings; "
        f"evaluate({{'fp32': {str(files / 'fp32.safetensors')!r}}}, EvalSettings('synthetic:8', psnrs=(100.0, 10.0), "
        f"sampler='ddpm2', images=5, batch_size=2, metrics=('lpips', 'miou', 'pixel')), {str(run)!r}, 'cpu')"
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "--no-python", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    reference = files / "run"
    assert _result(run)["results"]["fp32"] == _result(reference)["results"]["fp32"] and _result(run)["world_size"] == 2
    for p in (run / "images" / "fp32").rglob("*.png"):
        assert p.read_bytes() == (reference / p.relative_to(run)).read_bytes()


def test_eval_settings_are_checked_and_resolved_when_made():
    s = EvalSettings("synthetic:4", psnrs=(30, 20), guidance_window=(500, 999))
    assert s.psnrs == (30.0, 20.0) and s.grid_psnr == 20.0 and s.guidance_window == (500, 999)
    assert list(s.to_dict())[-1] == "image_hw" and set(IMAGE_SETTINGS) <= set(s.to_dict())
    assert EvalSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s  # as run.json / metrics.json hold it
    with pytest.raises(ValueError, match=r"unknown EvalSettings field\(s\) \['out'\]"):
        EvalSettings.from_dict({"data": "synthetic:4", "out": "runs"})
    for bad, message in [
        ({"channel": "wifi"}, "unknown channel"),
        ({"psnrs": ()}, "at least one channel PSNR"),
        ({"batch_size": 0}, "batch_size"),
        ({"grid_psnr": 5.0}, "grid PSNR 5 dB"),
        ({"guidance_window": (0, 2000)}, "guidance_window"),
        ({"metrics": ("lpips", "bleu")}, r"unknown metrics \['bleu'\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            EvalSettings("synthetic:4", **bad)
