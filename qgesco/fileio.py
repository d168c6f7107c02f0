"""Atomic file writes and safetensors files that carry their own JSON metadata.

Every checkpoint, result table or picture this project writes goes through
:func:`atomic_path`: the data lands in a temporary file in the same folder and is
renamed over the target only once complete, so an interrupted run never leaves a
truncated file behind.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file


class Settings:
    """Base of the frozen settings dataclasses: :meth:`to_dict` gives JSON/YAML-ready values (tuples as
    lists), :meth:`from_dict` rebuilds one and names unknown keys; checking stays in each ``__post_init__``."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known fields: {', '.join(known)}")
        return cls(**data)


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Settings):
        return value.to_dict()
    return value


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the usual mode
        os.replace(tmp, path)
    except OSError as e:
        if e.filename not in (str(tmp), tmp):  # not ours to rename: an input's error, say, as it is
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None  # the user's name, not the hidden temporary one
    finally:
        tmp.unlink(missing_ok=True)


def cache_dir(*parts: str) -> Path:
    """The user cache folder (``$QGESCO_CACHE``, else ``$XDG_CACHE_HOME/qgesco``, else
    ``~/.cache/qgesco``), or a sub-folder of it; created on first use by the callers that write."""
    root = os.environ.get("QGESCO_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qgesco"
    return Path(root, *parts).expanduser()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


#: The ``kind`` of a model file: full precision (``save_model``) or quantized (``save_quantized``).
UNET_KIND = "unet"
QUANTIZED_KIND = "quantized-unet"
MODEL_KINDS = (UNET_KIND, QUANTIZED_KIND)

#: What to do about a damaged file, by the ``kind`` in its metadata.
_FIX = {
    UNET_KIND: "restore the file from a good copy, or re-create it (qgesco train)",
    QUANTIZED_KIND: "re-create it with qgesco quantize",
    "calibration-set": "re-create it with qgesco calibrate",
    "received-maps": "re-create it with qgesco transmit",
    "deepjscc": "restore it from git or re-create it with qgesco train-jscc (docs/semcom.md)",
}


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors``, in name order: the one
    content digest of the project (files, model identity, run fingerprints)."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (for files that are not ours to give metadata, such as ``state.pt``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def nonfinite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity."""
    return [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def require_finite(tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse to write NaN/inf weights: a file of them only ever produces black images."""
    bad = nonfinite(tensors)
    if bad:
        raise ValueError(
            f"{what}: {len(bad)} tensor(s) hold NaN or infinity (first: {', '.join(bad[:3])}); "
            "not saved: the model diverged or was built from damaged weights"
        )


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save tensors as safetensors with ``meta`` JSON-encoded under the metadata key ``qgesco``,
    plus ``sha256``: the digest of the tensors, which :func:`load_tensors` checks."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {**meta, "sha256": tensors_sha256(tensors)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"qgesco": json.dumps(meta)})


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``qgesco`` metadata of a safetensors file, with a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a .safetensors file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}); was it truncated or overwritten?") from None
    if "qgesco" not in meta:
        raise ValueError(f"{path}: safetensors file without qgesco metadata; it was not written by qgesco")
    try:
        meta = json.loads(meta["qgesco"])
    except ValueError as e:
        raise ValueError(
            f"{path}: its qgesco metadata are not valid JSON ({e}); the file was damaged: re-create it"
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(
            f"{path}: its qgesco metadata are a JSON {type(meta).__name__}, not an object; the file was not written "
            "by qgesco: re-create it"
        )
    return meta


def read_kind(path: str | os.PathLike, kinds: tuple[str | None, ...], what: str, fix: str) -> dict[str, Any]:
    """:func:`read_meta` of a file whose ``kind`` is one of ``kinds`` (``None`` among them admits a file that
    records no kind); any other is refused in one line,
    ``{path}: holds a 'x' file, not {what}; {fix}``, so every reader names a wrong file the same way."""
    meta = read_meta(path)
    if meta.get("kind") not in kinds:
        raise ValueError(f"{path}: holds a {meta.get('kind', 'unknown')!r} file, not {what}; {fix}")
    return meta


#: safetensors dtype names -> torch dtypes (the ones qgesco writes, and the usual others).
_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, read straight into its own memory: one copy of the weights.

    ``safe_open`` memory-maps the file and copies out of the mapping, so a big model is resident
    twice (mapped pages + copies) until the file is closed; ``readinto`` goes through the page
    cache, which the process's peak RSS does not count."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        start = 8 + size
        tensors = {}
        for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            a, b = entry["data_offsets"]
            flat = torch.empty(b - a, dtype=torch.uint8)
            f.seek(start + a)
            if f.readinto(flat.numpy()) != b - a:
                raise ValueError(f"{name}: file ends inside it")
            tensors[name] = flat.view(_DTYPES[entry["dtype"]]).reshape(entry["shape"])
    return tensors


class UncheckedFileWarning(UserWarning):
    """A file was loaded that carries no qgesco digest, so damage to it cannot be detected."""


_REQUIRE_DIGEST: contextvars.ContextVar[bool | None] = contextvars.ContextVar("require_digest", default=None)
_WARNED: set[str] = set()


@contextlib.contextmanager
def digests_required(required: bool = True) -> Iterator[None]:
    """Within the block, files without a qgesco digest are refused instead of loaded with a warning
    (``qgesco --require-digest``; ``QGESCO_REQUIRE_DIGEST=1`` sets the default)."""
    token = _REQUIRE_DIGEST.set(required)
    try:
        yield
    finally:
        _REQUIRE_DIGEST.reset(token)


def unchecked(path: str | os.PathLike, what: str) -> None:
    """A file with no digest of ours: refused when digests are required, else loaded with a
    warning (once per file), since nothing can tell whether it was damaged."""
    required = _REQUIRE_DIGEST.get()
    if required is None:
        required = os.environ.get("QGESCO_REQUIRE_DIGEST", "") not in ("", "0")
    if required:
        raise ValueError(
            f"{path}: {what} carries no qgesco digest, and digests are required (--require-digest / "
            "QGESCO_REQUIRE_DIGEST); re-save it with qgesco, or drop --require-digest to load it unchecked"
        )
    if str(path) not in _WARNED:
        _WARNED.add(str(path))
        warnings.warn(
            f"{path}: {what} carries no qgesco digest; loaded unchecked (damage to it cannot be detected)",
            UncheckedFileWarning,
            stacklevel=3,
        )


@functools.cache
def _bundled_digests() -> dict[str, str]:
    """Tensor digests of the bundled files that predate digests in files, by the sha256 of their
    metadata: a file that carries a bundled file's metadata claims to be that file."""
    known = json.loads((Path(__file__).resolve().parent / "assets" / "digests.json").read_text())
    return {entry["metadata_sha256"]: entry["tensors_sha256"] for entry in known.values()}


def _expected_digest(path: str | os.PathLike, meta: dict[str, Any]) -> str | None:
    if "sha256" in meta:
        return meta["sha256"]
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {})["qgesco"]
    return _bundled_digests().get(hashlib.sha256(raw.encode()).hexdigest())


def load_tensors(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load every tensor of a qgesco safetensors file plus its metadata, checked against the
    ``sha256`` written with it, or for the bundled files written before digests, the digest shipped
    beside them (``assets/digests.json``). Any other file without a digest loads with a warning,
    or is refused under :func:`digests_required`."""
    meta = read_meta(path)
    try:
        tensors = _read_tensors(path)
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as e:
        raise ValueError(f"{path}: corrupt safetensors file ({e}); re-create it") from None
    expected = _expected_digest(path, meta)
    if expected is None:
        unchecked(path, f"this {meta.get('kind', 'qgesco')} file (written before qgesco wrote digests)")
    elif tensors_sha256(tensors) != expected:
        fix = _FIX.get(meta.get("kind"), "delete it and re-create it with the qgesco command that wrote it")
        if "sha256" not in meta:
            fix = "it is a damaged copy of a file bundled with qgesco: use the bundled name or reinstall qgesco"
        raise ValueError(
            f"{path}: tensor data do not match the checksum written with the file: it was modified "
            f"or corrupted after saving; {fix}"
        )
    return {k: v.to(device) for k, v in tensors.items()}, meta
