"""``qgesco calibrate`` and ``qgesco quantize`` end to end on a tiny model file: the files they
write hold what they claim, and bad settings fail with one line."""

from __future__ import annotations

import pytest
import torch

from qgesco.cli import main
from qgesco.fileio import load_tensors, tensors_sha256
from qgesco.models.checkpoint import create_model, load_float_model, save_model
from qgesco.quant import CalibrationSet, load_quantized

#: Tiny models: one thread avoids per-op thread synchronisation on shared cores (conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quant_cli")
    save_model(create_model("cpu-test", seed=0), tmp / "model.safetensors")
    save_model(
        create_model(create_model("cpu-test").config.replace(image_hw=(32, 32)), seed=0), tmp / "bigger.safetensors"
    )
    return tmp


@pytest.fixture(scope="module")
def calib_file(files):
    out = files / "calib.safetensors"
    rc = main(
        [
            "calibrate",
            "--model",
            str(files / "model.safetensors"),
            "--data",
            "synthetic:6",
            "--out",
            str(out),
            "--maps",
            "4",
            "--psnr",
            "1,100",
            "--steps",
            "4",
            "--every",
            "2",
            "--batch-size",
            "2",
        ]
    )
    assert rc == 0
    return out


def test_calibrate_writes_a_set_with_the_requested_recipe(files, calib_file, capsys):
    calib = CalibrationSet.load(calib_file)
    assert len(calib) == 8 and calib.maps.shape == (4, 12, 16, 16)
    assert sorted(set(calib.t.tolist())) == [0, 250, 500, 750] and sorted(calib.psnr_db.tolist()) == [1, 1, 100, 100]
    assert calib.info["settings"]["guidance"] == 2.0 and calib.info["provenance"]["data"] == "synthetic:6"
    assert not (files / "calib.safetensors.partial").exists()
    out = files / "clean.safetensors"
    assert (
        main(
            [
                "calibrate",
                "--model",
                str(files / "model.safetensors"),
                "--data",
                "synthetic:6",
                "--out",
                str(out),
                "--maps",
                "2",
                "--steps",
                "2",
                "--every",
                "2",
                "--timestep-only",
            ]
        )
        == 0
    )
    assert CalibrationSet.load(out).psnr_db is None
    assert "clean maps" in capsys.readouterr().out


def test_quantize_writes_a_w4a8_checkpoint_with_provenance(files, calib_file, capsys):
    out = files / "q.safetensors"
    rc = main(
        [
            "quantize",
            "--model",
            str(files / "model.safetensors"),
            "--calib",
            str(calib_file),
            "--wbits",
            "4",
            "--abits",
            "8",
            "--iters",
            "2",
            "--batch-size",
            "4",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    tensors, meta = load_tensors(out)
    assert meta["weight_bits"] == 4 and meta["act_bits"] == 8 and meta["layers"]["out.2"]["packed"]
    assert tensors["out.2.qweight"].dtype == torch.uint8 and tensors["out.2.input_quant.0.scale"].shape == ()
    provenance = meta["provenance"]
    assert provenance["iters"] == 2 and provenance["calib"] == str(calib_file) and provenance["seconds"] > 0
    assert provenance["calibration"]["psnr_db"] == [1.0, 100.0] and provenance["calibration"]["timesteps"] == [
        0,
        250,
        500,
        750,
    ]
    assert len(provenance["blocks"]) == 17 and not (files / "q.safetensors.resume").exists()
    assert (
        provenance["model_sha256"]
        == tensors_sha256(load_float_model(files / "model.safetensors").state_dict())
        != tensors_sha256(create_model("cpu-test", seed=1).state_dict())
    )
    calib = CalibrationSet.load(calib_file)
    with torch.no_grad():
        assert load_quantized(out)(*calib.batch(slice(0, 2))).shape == (2, 6, 16, 16)
    assert "W4A8" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--wbits", "9"], "--wbits=9 is not supported: choose an integer from 2 to 8"),
        (["--wbits", "1"], "--wbits=1 is not supported"),
        (["--abits", "8", "--iters", "0"], "act_bits=8 needs a calibration set"),
        (["--device", "tpu"], "--device 'tpu': use cpu, cuda or auto"),
        *([] if torch.cuda.is_available() else [(["--device", "cuda"], "no CUDA GPU is visible to torch")]),
    ],
)
def test_quantize_refuses_unsupported_settings_in_one_line(files, args, message, capsys):
    assert (
        main(["quantize", "--model", str(files / "model.safetensors"), "--out", str(files / "x.safetensors"), *args])
        == 2
    )
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (files / "x.safetensors").exists()


def test_quantize_refuses_a_calibration_set_recorded_for_another_model_shape(files, calib_file, capsys):
    rc = main(
        [
            "quantize",
            "--model",
            str(files / "bigger.safetensors"),
            "--calib",
            str(calib_file),
            "--iters",
            "1",
            "--out",
            str(files / "y.safetensors"),
        ]
    )
    assert rc == 2
    assert (
        "recorded for a model taking 12-channel maps at 16x16, but the model takes 12-channel maps at 32x32"
        in capsys.readouterr().err
    )
