"""Running a real Orthanc (the PACS peer) on free ports for a test."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import free_port, require_tool


class Orthanc:
    """An Orthanc 1.10 server with its own storage, DICOM and HTTP ports.

    Parameters
    ----------
    folder
        Storage and index directory (a temporary folder).
    modalities
        Orthanc's ``DicomModalities``: name -> [AET, host, port].
    extra
        More configuration (plugins, Lua scripts), merged over the defaults.
    running
        Start at once (else call :meth:`start`).
    """

    def __init__(
        self,
        folder: Path,
        modalities: dict[str, list[Any]] | None = None,
        *,
        extra: dict[str, Any] | None = None,
        running: bool = True,
    ) -> None:
        binary = require_tool("Orthanc")
        self.http_port, self.dicom_port = free_port(), free_port()
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "radpilot-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomModalities": modalities or {},
            "HttpServerEnabled": True,
            "Plugins": [],
            **(extra or {}),
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.binary, self.folder = binary, folder
        if running:
            self.start()

    def start(self) -> None:
        """Start (or start again, after :meth:`stop`) on the same ports and storage."""
        self.log = (self.folder / "orthanc.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, str(self.folder / "orthanc.json")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/system")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("Orthanc did not start") from None
                time.sleep(0.2)

    def _call(self, method: str, path: str, body: bytes | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return json.loads(response.read() or b"null")

    def get(self, path: str) -> Any:
        """GET a REST resource as JSON."""
        return self._call("GET", path)

    def post(self, path: str, body: bytes) -> Any:
        """POST raw bytes, return the JSON answer."""
        return self._call("POST", path, body)

    def stop(self) -> None:
        """Stop the server (its storage stays; :meth:`start` brings it back)."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.log.close()

    def sop_instance_uids(self) -> list[str]:
        """The SOP Instance UID of every instance Orthanc holds (repeats would show)."""
        uids = []
        for instance in self.get("/instances"):
            tags = self.get(f"/instances/{instance}/simplified-tags")
            uids.append(str(tags["SOPInstanceUID"]))
        return uids
