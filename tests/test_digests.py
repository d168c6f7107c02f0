"""Every model file qgesco loads is checked: the bundled ones against the digests shipped beside them
(``qgesco/assets/digests.json``; the W8 file carries its own), a damaged copy is refused with one line,
and a file without any digest loads with a one-line warning, or is refused when digests are required."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import qgesco
from qgesco.cli import main
from qgesco.fileio import UncheckedFileWarning, digests_required, load_tensors
from qgesco.metrics.segnet import WEIGHTS as SEGNET
from qgesco.models.checkpoint import BUNDLED, create_model, save_model

#: Every file the package ships: the demo models, the mIoU judge, the DeepJSCC baselines.
BUNDLED_FILES = {path.stem: path for path in sorted(SEGNET.parent.glob("*.safetensors"))}


def flip_one_bit(src, dst, tensor: str):
    """A copy of ``src`` with one exponent bit of the first element of the float ``tensor`` flipped."""
    data = bytearray(src.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    entry = json.loads(data[8 : 8 + header_len])[tensor]
    high_byte = {"F32": 3, "F16": 1, "BF16": 1}[entry["dtype"]]  # little endian: sign and high exponent bits
    data[8 + header_len + entry["data_offsets"][0] + high_byte] ^= 0x10
    dst.write_bytes(bytes(data))
    return dst


def first_float_tensor(path) -> str:
    with safe_open(str(path), framework="pt") as f:
        return next(k for k in sorted(f.keys()) if f.get_slice(k).get_dtype() in ("F32", "F16", "BF16"))


@pytest.mark.parametrize("name", BUNDLED_FILES)
def test_bundled_files_are_checked_and_a_flipped_copy_is_refused(name, tmp_path):
    path = BUNDLED_FILES[name]
    assert {BUNDLED["camvid-demo"].stem, BUNDLED["camvid-demo-w8"].stem, SEGNET.stem} <= set(BUNDLED_FILES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the pristine files carry or are shipped with their digests
        with digests_required():
            load_tensors(path)
    flipped = flip_one_bit(path, tmp_path / path.name, first_float_tensor(path))
    with pytest.raises(ValueError, match="do not match the checksum") as refused:
        load_tensors(flipped)
    assert "\n" not in str(refused.value) and str(flipped) in str(refused.value)


def test_a_flipped_copy_of_the_demo_model_is_one_line_in_the_cli(tmp_path, capsys):
    flipped = flip_one_bit(BUNDLED["camvid-demo"], tmp_path / "flipped.safetensors", "out.2.weight")
    rx = tmp_path / "rx.safetensors"
    label = tmp_path / "label.png"
    from PIL import Image

    Image.fromarray(torch.zeros(48, 64, dtype=torch.uint8).numpy()).save(label)
    assert main(["transmit", str(label), "--num-classes", "12", "--psnr", "100", "--out", str(rx)]) == 0
    capsys.readouterr()
    out = tmp_path / "o.png"
    assert main(["sample", str(rx), "--model", str(flipped), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "damaged copy of a file bundled with qgesco" in err
    assert not out.exists()


@pytest.fixture()
def undigested(tmp_path):
    """A model file as another tool (or qgesco before digests) would write it: our metadata, no sha256."""
    model = create_model("cpu-test", seed=0)
    save_model(model, tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["qgesco"])
    del meta["sha256"]
    path = tmp_path / "undigested.safetensors"
    save_file(model.state_dict(), str(path), metadata={"qgesco": json.dumps(meta)})
    return path


def test_an_undigested_file_is_warned_about_once_and_refused_when_digests_are_required(undigested, monkeypatch):
    with pytest.warns(UncheckedFileWarning, match="undigested.safetensors: .*no qgesco digest; loaded unchecked"):
        model = qgesco.load_model(undigested)
    assert isinstance(model, torch.nn.Module)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qgesco.load_model(undigested)  # once per file
    with pytest.raises(ValueError, match="carries no qgesco digest, and digests are required"):
        qgesco.load_model(undigested, require_digest=True)
    monkeypatch.setenv("QGESCO_REQUIRE_DIGEST", "1")
    with pytest.raises(ValueError, match="digests are required"):
        qgesco.load_model(undigested)


def test_cli_warns_in_one_line_and_require_digest_refuses(undigested, tmp_path):
    def run(*argv):
        code = "import sys; from qgesco.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)

    shutil.copy(undigested, tmp_path / "copy.safetensors")
    warned = run("bench", "--model", str(tmp_path / "copy.safetensors"), "--reps", "1", "--warmup", "0")
    assert warned.returncode == 0
    assert [line for line in warned.stderr.splitlines() if line] == [
        f"qgesco: warning: {tmp_path / 'copy.safetensors'}: this unet file (written before qgesco wrote digests) "
        "carries no qgesco digest; loaded unchecked (damage to it cannot be detected)"
    ]
    refused = run("--require-digest", "bench", "--model", str(tmp_path / "copy.safetensors"), "--reps", "1")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "digests are required" in refused.stderr
