"""Driving dcmtk's command-line tools (the independent DICOM stack in our tests)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import pydicom

from tests.conftest import require_tool

# Nagle's algorithm otherwise caps dcmtk near 20 images/s here (see PEERS.md).
ENV = {**os.environ, "TCP_NODELAY": "1"}


def storescu_config(files: Iterable[Path], target: Path) -> tuple[Path, list[Path]]:
    """Write a storescu ``--config-file`` proposing each file's own SOP class and syntax.

    Without it storescu proposes uncompressed syntaxes and converts, or fails on codecs it
    lacks; with it, every file travels in its own transfer syntax, as a modality sends it.
    Returns the config path and the files dcmtk will be asked to send (readable by pydicom).
    """
    pairs: dict[tuple[str, str], None] = {}
    sendable = []
    unsendable: list[tuple[Path, str]] = []
    for path in files:
        try:
            meta = pydicom.filereader.read_file_meta_info(path)
            pair = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        except (pydicom.errors.InvalidDicomError, OSError, AttributeError) as exc:
            unsendable.append((path, type(exc).__name__))  # dcmtk would refuse it too
        else:
            pairs[pair] = None
            sendable.append(path)
    syntaxes = sorted({ts for _, ts in pairs})
    lines = ["[[TransferSyntaxes]]"]
    for i, ts in enumerate(syntaxes):
        lines += [f"[TS{i}]", f"TransferSyntax1 = {ts}"]
    lines.append("[[PresentationContexts]]")
    lines.append("[PCS]")
    for n, (sop, ts) in enumerate(pairs, start=1):
        lines.append(f"PresentationContext{n} = {sop}\\TS{syntaxes.index(ts)}")
    lines += ["[[Profiles]]", "[Default]", "PresentationContexts = PCS"]
    target.write_text("\n".join(lines) + "\n")
    assert len(pairs) <= 128, "a DICOM association allows 128 presentation contexts"
    return target, sendable


def storescu(
    port: int,
    files: list[Path],
    *,
    config: Path | None = None,
    called: str = "RADPILOT",
    calling: str = "STORESCU",
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Send ``files`` over one association; ``-nh``: go on after a failed file."""
    args = [require_tool("storescu"), "-aec", called, "-aet", calling, "-nh"]
    if config is not None:
        args += ["-xf", str(config), "Default"]
    args += ["127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(
        args, env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


def echoscu(port: int, called: str = "RADPILOT", calling: str = "ECHOSCU") -> bool:
    """Whether a C-ECHO to ``port`` succeeds."""
    result = subprocess.run(
        [
            require_tool("echoscu"),
            "-aec",
            called,
            "-aet",
            calling,
            "-to",
            "5",
            "127.0.0.1",
            str(port),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


class StoreSCP:
    """dcmtk's ``storescp`` in bit-preserving mode: a reference of what was sent."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                require_tool("storescp"),
                "+B",
                "+uf",
                "+xa",
                "-od",
                str(folder),
                "-aet",
                "STORESCP",
                str(port),
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while not echoscu(port, called="STORESCP"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("storescp did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server."""
        self.process.terminate()
        self.process.wait(timeout=10)
