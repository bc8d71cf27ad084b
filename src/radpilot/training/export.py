"""TorchScript export whose bytes depend only on the network and its weights.

``torch.jit.save`` writes a zip that differs between two saves of the same weights:

- ``.data/serialization_id`` is random;
- traced module types are named ``___torch_mangle_N``, ``N`` a process-wide counter, so
  the second export in a process gets other names (and other file names) than the first;
- the ``*.debug_pkl`` files hold the Python call stack of the trace (file paths, line
  numbers of radpilot, MONAI and the virtual environment).

So the module is traced twice (the first trace only makes every type name already
taken, so the second names *all* its types with a counter), the counters are renumbered
0, 1, 2... in their order, the debug records are left out (error messages lose the
Python source line, nothing else), the serialization id is derived from the content, and
the zip is written with fixed timestamps and 64-byte aligned records (as PyTorch's own
writer aligns them). The result is loaded back and checked against the module before it
is written. Same seed + data + machine => same SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn
from torch.jit._trace import TracerWarning  # not re-exported by torch.jit's stubs

from radpilot.core.errors import ModelError

__all__ = ["export_torchscript", "rewrite_archive"]

_MANGLE = re.compile(rb"___torch_mangle_(\d+)")
_EPOCH = (1980, 1, 1, 0, 0, 0)
_ALIGN = 64


def _quiet() -> warnings.catch_warnings[None]:
    """Silence exactly what tracing says about itself.

    PyTorch 2.13 deprecates TorchScript (``torch.export`` is the successor; radpilot's
    runtime loads TorchScript, which is what vendors ship). MONAI's heads guard against NaN
    with Python ``if``s; the trace drops those guards (the runtime checks every output for
    NaN itself) and would warn about each.
    """
    context = warnings.catch_warnings()
    context.__enter__()
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
    warnings.filterwarnings("ignore", category=TracerWarning)
    return context


def _trace(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    traced: torch.jit.ScriptModule = torch.jit.trace(  # type: ignore[no-untyped-call]
        module, example, check_trace=False, _store_inputs=False
    )
    return traced


def _renumber(entries: dict[str, bytes]) -> dict[str, bytes]:
    numbers = sorted(
        {
            int(m)
            for data in [*entries.values(), *(n.encode() for n in entries)]
            for m in _MANGLE.findall(data)
        }
    )
    mapping = {str(old).encode(): str(new).encode() for new, old in enumerate(numbers)}

    def fix(data: bytes) -> bytes:
        return _MANGLE.sub(lambda m: b"___torch_mangle_" + mapping[m.group(1)], data)

    return {fix(name.encode()).decode(): fix(data) for name, data in entries.items()}


def _aligned_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            header = buffer.tell() + 30 + len(name.encode())
            pad = (-(header + 4)) % _ALIGN
            info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # "FB", as PyTorch pads
            archive.writestr(info, data)
    return buffer.getvalue()


def rewrite_archive(data: bytes) -> bytes:
    """A TorchScript zip rewritten deterministically (see the module docstring).

    Raises
    ------
    ModelError
        If ``data`` is not a TorchScript archive.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = {
                info.filename: archive.read(info)
                for info in archive.infolist()
                if not info.filename.endswith(".debug_pkl")
            }
    except zipfile.BadZipFile as exc:
        raise ModelError(f"not a TorchScript archive ({exc})") from exc
    entries = _renumber(entries)
    ids = [name for name in entries if name.endswith(".data/serialization_id")]
    digest = hashlib.sha256()
    for name in sorted(entries):
        if name not in ids:
            digest.update(name.encode() + b"\0" + hashlib.sha256(entries[name]).digest())
    for name in ids:
        entries[name] = str(int(digest.hexdigest()[:32], 16)).zfill(40)[-40:].encode()
    return _aligned_zip(entries)


def export_torchscript(
    module: nn.Module, example: torch.Tensor, path: Path, *, atol: float = 1e-4
) -> None:
    """Trace ``module`` (eval mode) on ``example`` and write it deterministically.

    Raises
    ------
    ModelError
        If the written module does not reproduce the module's output on ``example``.
    """
    module = module.eval()
    quiet = _quiet()
    try:
        with torch.no_grad():
            expected = module(example)
            _trace(module, example)  # takes every type name, so that the next trace mangles all
            raw = io.BytesIO()
            torch.jit.save(_trace(module, example), raw)
            data = rewrite_archive(raw.getvalue())
            loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")  # type: ignore[no-untyped-call]
            again = loaded(example)
    finally:
        quiet.__exit__(None, None, None)
    if again.shape != expected.shape or not torch.allclose(again, expected, atol=atol, rtol=1e-4):
        raise ModelError(
            "the exported TorchScript module does not reproduce the network's output "
            "(a data-dependent branch the trace could not follow?); export stopped"
        )
    path.write_bytes(data)
