"""``qgesco transmit`` on small PNGs written here: the files it writes hold the right numbers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from qgesco import channel as ch
from qgesco.cli import main
from qgesco.fileio import load_tensors


@pytest.fixture
def maps(tmp_path):
    labels = np.zeros((16, 20), dtype=np.uint8)
    labels[:8] = 3
    labels[8:, :10] = 7
    labels[8:, 10:] = 255
    instance = np.zeros((16, 20), dtype=np.uint16)
    instance[8:, 4:9] = 300
    Image.fromarray(labels).save(tmp_path / "label.png")
    Image.fromarray(instance).save(tmp_path / "inst.png")
    return tmp_path, torch.from_numpy(labels.astype(np.int64))[None], torch.from_numpy(instance.astype(np.int64))[None]


def test_clean_channel_writes_the_exact_model_input_preview_and_stats(maps, capsys):
    tmp, labels, instance = maps
    out, preview = tmp / "rx.safetensors", tmp / "rx.png"
    rc = main(
        [
            "transmit",
            str(tmp / "label.png"),
            "--instance",
            str(tmp / "inst.png"),
            "--num-classes",
            "12",
            "--ignore",
            "255",
            "--psnr",
            "100",
            "--noise-table",
            "gesco",
            "--filter",
            "none",
            "--out",
            str(out),
            "--preview",
            str(preview),
            "--stats",
        ]
    )
    assert rc == 0
    tensors, meta = load_tensors(out)
    expected = ch.encode(labels, 12, instance, ignore={255: None})
    assert expected.shape == (1, 13, 16, 20)
    assert torch.equal(tensors["y"], expected)
    assert torch.equal(tensors["labels"], ch.class_indices(labels, 12, {255: None}))
    assert meta["sigma"] == 0.0 and meta["classes_present"] == [3, 7] and meta["label_channels"] == 13
    picture = np.asarray(Image.open(preview))
    assert picture.shape == (16, 40, 3)
    assert (picture[:8] == [128, 64, 128]).all() and (picture[8:, 10:20] == 0).all()  # road, no class
    assert (picture[:, 20:][:, :10] == picture[:, :10]).all()  # received argmax = clean map here
    text = capsys.readouterr().out
    assert f"{13 * 320:,} real channel uses" in text
    assert f"{(2 + 1) * 320:,} real channel uses + 12 bits" in text
    assert "label map as PNG" in text and "instance map as PNG" in text


def test_noisy_run_is_seeded_and_keeps_absent_classes_zero(maps):
    tmp, labels, _ = maps
    args = [
        "transmit",
        str(tmp / "label.png"),
        "--num-classes",
        "12",
        "--ignore",
        "255:11",
        "--psnr",
        "5",
        "--channel",
        "rayleigh",
        "--block",
        "64",
        "--seed",
        "4",
    ]
    assert main(args + ["--out", str(tmp / "a.safetensors")]) == 0
    assert main(args + ["--out", str(tmp / "b.safetensors")]) == 0
    a, meta = load_tensors(tmp / "a.safetensors")
    b, _ = load_tensors(tmp / "b.safetensors")
    assert torch.equal(a["y"], b["y"]) and a["y"].shape == (1, 12, 16, 20)
    assert meta["classes_present"] == [3, 7, 11] and meta["channel"] == "rayleigh" and meta["block"] == 64
    absent = [c for c in range(12) if c not in (3, 7, 11)]
    assert torch.count_nonzero(a["y"][0, absent]) == 0
    assert torch.count_nonzero(a["y"][0, [3, 7, 11]] - ch.encode(labels, 12, ignore={255: 11})[0, [3, 7, 11]]) > 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--psnr", "nan"], "NaN"),
        (["--psnr", "10", "--num-classes", "5"], r"values 7 are outside 0\.\.4"),
        (["--psnr", "12", "--noise-table", "gesco"], "its levels are"),
        (["--psnr", "10", "--block", "8"], "--block"),
    ],
)
def test_bad_input_is_one_clear_line(maps, capsys, extra, message):
    tmp, _, _ = maps
    rc = main(
        [
            "transmit",
            str(tmp / "label.png"),
            "--num-classes",
            "12",
            "--ignore",
            "255",
            "--out",
            str(tmp / "x.safetensors"),
        ]
        + extra
    )
    err = capsys.readouterr().err
    assert rc == 2 and "qgesco transmit: error:" in err
    assert re.search(message, err)
    assert not (tmp / "x.safetensors").exists()
