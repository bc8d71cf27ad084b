"""The C-STORE receivers under test, started and stopped as child processes.

Each receiver runs in its own process group (``start_new_session``) so that stopping it
also stops what it forked (``storescp --fork`` children); every child still alive when
the interpreter exits is killed by an ``atexit`` hook, including after Ctrl-C.

Every dcmtk-based program gets ``TCP_NODELAY=1`` in its environment: Debian's dcmtk
leaves Nagle's algorithm on otherwise, which caps storescu -> storescp near 20 images/s.
"""

from __future__ import annotations

import abc
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

__all__ = [
    "RECEIVERS",
    "Child",
    "Orthanc",
    "Radpilot",
    "Receiver",
    "ReceiverError",
    "ReceiverOptions",
    "StoreScp",
    "dcmtk_env",
    "echo",
    "free_port",
    "stop_all_children",
]

LOCALHOST = "127.0.0.1"


class ReceiverError(RuntimeError):
    """A receiver did not start, or died, or could not be asked what it received."""


def dcmtk_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for dcmtk programs (and Orthanc): ``TCP_NODELAY=1`` added."""
    env = dict(os.environ if base is None else base)
    env["TCP_NODELAY"] = "1"
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send `sig` to a process group; False when no process of the group is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


class Child:
    """A child process in its own process group, with stdout and stderr in a log file."""

    _live: ClassVar[set[Child]] = set()

    def __init__(
        self,
        argv: list[str],
        *,
        log_path: Path,
        env: dict[str, str],
        cwd: Path | None = None,
    ) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError:
            self._log.close()
            raise
        self.pgid = self.popen.pid  # leader of its new session and process group
        Child._live.add(self)

    def alive(self) -> bool:
        """Whether the group leader is still running."""
        return self.popen.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the leader to exit and return its status."""
        return self.popen.wait(timeout)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the whole group, SIGKILL what is left after `grace` seconds."""
        if self.alive():
            _signal_group(self.pgid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.pgid, signal.SIGKILL)
                self.popen.wait()
        # Forked children (storescp --fork) may outlive their leader.
        _signal_group(self.pgid, signal.SIGKILL)
        self._log.close()
        Child._live.discard(self)
        return self.popen.returncode

    def log_tail(self, lines: int = 15) -> str:
        """The end of the child's output, for error messages."""
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join(text.splitlines()[-lines:])


def stop_all_children() -> None:
    """Stop every child still running (registered with ``atexit``)."""
    for child in list(Child._live):
        child.stop(grace=3.0)


atexit.register(stop_all_children)


def echo(aet: str, port: int, *, timeout: float = 5.0) -> bool:
    """One C-ECHO with dcmtk's ``echoscu``; True on success."""
    try:
        result = subprocess.run(
            [
                "echoscu",
                "-aet",
                "BENCHSCU",
                "-aec",
                aet,
                "-to",
                "5",
                "-ta",
                "5",
                LOCALHOST,
                str(port),
            ],
            env=dcmtk_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def _http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http://127.0.0.1 only
        return json.loads(response.read())


@dataclass(frozen=True, slots=True)
class ReceiverOptions:
    """Settings shared by all receivers of one benchmark run."""

    max_pdu: int | None = None
    """storescp ``-pdu``, Orthanc ``MaximumPduLength``, minimal pynetdicom ``--max-pdu``;
    None keeps their defaults (16384, 16384, 16382). radpilot keeps its own setting."""
    radpilot: Path = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "radpilot"
    """Made absolute before use: radpilot runs with its work dir as current directory."""
    radpilot_env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 60.0


class Receiver(abc.ABC):
    """One receiver process with its own storage under `workdir`."""

    name: ClassVar[str]
    aet: ClassVar[str]

    def __init__(self, workdir: Path, options: ReceiverOptions) -> None:
        self.workdir = workdir
        self.options = options
        self.port = 0
        self.http_port = 0
        self.concurrent = False
        self.child: Child | None = None

    @abc.abstractmethod
    def _launch(self, *, concurrent: bool) -> Child:
        """Start the process (not yet ready) on ``self.port``."""

    @abc.abstractmethod
    def received(self) -> int:
        """How many instances the receiver holds now."""

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """What matters for comparing it: fsync, PDU size, concurrency mode."""

    def _ready(self) -> bool:
        return echo(self.aet, self.port)

    def start(self, *, concurrent: bool) -> float:
        """Start and wait until C-ECHO succeeds; return the seconds it took.

        Raises
        ------
        ReceiverError
            If the process exits or does not answer within ``options.start_timeout``.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.concurrent = concurrent
        started = time.monotonic()
        try:
            self.child = self._launch(concurrent=concurrent)
        except OSError as exc:
            raise ReceiverError(f"{self.name}: cannot start: {exc}") from exc
        deadline = started + self.options.start_timeout
        while time.monotonic() < deadline:
            if not self.child.alive():
                raise ReceiverError(
                    f"{self.name} exited with status {self.child.popen.returncode} while "
                    f"starting; its output:\n{self.child.log_tail()}"
                )
            if self._ready():
                return time.monotonic() - started
            time.sleep(0.1)
        raise ReceiverError(
            f"{self.name} did not answer C-ECHO on port {self.port} within "
            f"{self.options.start_timeout:.0f} s; its output:\n{self.child.log_tail()}"
        )

    def after_store(self, expected: int, stored_at: float) -> dict[str, Any]:
        """Extra measurements once all images were acknowledged (none by default)."""
        del expected, stored_at
        return {}

    def stop(self) -> None:
        """Stop the process group (idempotent)."""
        if self.child is not None:
            self.child.stop()

    def alive(self) -> bool:
        """Whether the receiver process is still running."""
        return self.child is not None and self.child.alive()


def _count_files(root: Path, pattern: str = "*") -> int:
    if not root.is_dir():
        return 0
    return sum(1 for p in root.rglob(pattern) if p.is_file())


class StoreScp(Receiver):
    """dcmtk ``storescp``: single-process for one association, ``--fork`` for several.

    In its default single-process mode storescp serves one association at a time (others
    wait in the listen backlog); ``--fork`` gives each association its own process.
    It writes each file and answers; it never calls fsync.
    """

    name = "storescp"
    aet = "STORESCP"

    def _launch(self, *, concurrent: bool) -> Child:
        out = self.workdir / "received"
        out.mkdir()
        argv = [
            "storescp",
            "--fork" if concurrent else "--single-process",
            "-aet",
            self.aet,
            "-od",
            str(out),
        ]
        if self.options.max_pdu:
            argv += ["-pdu", str(self.options.max_pdu)]
        argv.append(str(self.port))
        return Child(argv, log_path=self.workdir / "storescp.log", env=dcmtk_env())

    def received(self) -> int:
        return _count_files(self.workdir / "received")

    def settings(self) -> dict[str, Any]:
        return {
            "mode": "--fork" if self.concurrent else "--single-process",
            "fsync": False,
            "max_pdu": self.options.max_pdu or 16384,
            "TCP_NODELAY": "1",
        }


class Orthanc(Receiver):
    """Orthanc with a config of its own: storage and SQLite index in the work dir."""

    name = "orthanc"
    aet = "ORTHANC"
    sync_storage: ClassVar[bool] = True

    def _config(self) -> dict[str, Any]:
        return {
            "Name": "radpilot-bench",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "SyncStorageArea": self.sync_storage,
            "DicomThreadsCount": 4,  # Orthanc 1.10's default, written out to be recorded
            "MaximumPduLength": self.options.max_pdu or 16384,
            "StorageCompression": False,
            "SaveJobs": False,
            "Plugins": [],
            "DicomModalities": {},
        }

    def _launch(self, *, concurrent: bool) -> Child:
        del concurrent  # Orthanc serves several associations with DicomThreadsCount threads
        self.http_port = free_port()
        config = self.workdir / "orthanc.json"
        config.write_text(json.dumps(self._config(), indent=2))
        return Child(
            ["Orthanc", str(config)],
            log_path=self.workdir / "orthanc.log",
            env=dcmtk_env(),
            cwd=self.workdir,
        )

    def _ready(self) -> bool:
        try:
            _http_json(f"http://{LOCALHOST}:{self.http_port}/system", timeout=2.0)
        except (OSError, ValueError):
            return False
        return echo(self.aet, self.port)

    def received(self) -> int:
        try:
            stats = _http_json(f"http://{LOCALHOST}:{self.http_port}/statistics")
        except (OSError, ValueError) as exc:
            raise ReceiverError(f"orthanc: GET /statistics failed: {exc}") from exc
        return int(stats["CountInstances"])

    def settings(self) -> dict[str, Any]:
        config = self._config()
        keep = (
            "SyncStorageArea",
            "DicomThreadsCount",
            "MaximumPduLength",
            "StorageCompression",
            "DicomCheckCalledAet",
        )
        return {**{k: config[k] for k in keep}, "TCP_NODELAY": "1"}


class OrthancNoSync(Orthanc):
    """Orthanc with ``SyncStorageArea: false`` (no fsync per file), to show its cost."""

    name = "orthanc-nosync"
    sync_storage = False


class Radpilot(Receiver):
    """``radpilot serve``: acknowledges after fsync, indexes in the background.

    It runs with the RADPILOT_* variables of the calling environment removed (defaults
    only), plus ``--radpilot-env`` settings, in its own data dir under the work dir.
    """

    name = "radpilot"
    aet = "RADPILOT"
    extra_env: ClassVar[dict[str, str]] = {}

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in dcmtk_env().items() if not k.startswith("RADPILOT_")}
        env["RADPILOT_DICOM_HOST"] = LOCALHOST
        env["RADPILOT_HTTP_PORT"] = str(self.http_port)  # in case serve starts the web app
        env.update(self.extra_env)
        env.update(self.options.radpilot_env)
        return env

    @property
    def data_dir(self) -> Path:
        """The installation directory given to ``--data-dir``."""
        return self.workdir / "radpilot-data"

    def _launch(self, *, concurrent: bool) -> Child:
        del concurrent
        self.http_port = free_port()
        argv = [
            str(self.options.radpilot),
            "--data-dir",
            str(self.data_dir),
            "serve",
            "--dicom-port",
            str(self.port),
            "--ae-title",
            self.aet,
        ]
        return Child(
            argv, log_path=self.workdir / "radpilot.log", env=self._env(), cwd=self.workdir
        )

    def _ready(self) -> bool:
        """C-ECHO answered and start-up finished (receiver processes listening, warm-up
        done, heap frozen), so that no start-up work overlaps the measurement: the main
        receiver answers C-ECHO while a second receiver process may still be importing."""
        if not echo(self.aet, self.port):
            return False
        try:
            text = (self.workdir / "radpilot.log").read_text(errors="replace")
        except OSError:
            return False
        return "start-up done" in text

    def received(self) -> int:
        return _count_files(self.data_dir / "archive" / "instances", "*.dcm")

    def settings(self) -> dict[str, Any]:
        env = self._env()
        return {
            "fsync": env.get("RADPILOT_FSYNC", "default (true)"),
            "max_pdu": env.get("RADPILOT_MAX_PDU_SIZE", "default"),
            "env": {k: v for k, v in env.items() if k.startswith("RADPILOT_")},
            "TCP_NODELAY": "1",
        }

    # -- index catch-up ------------------------------------------------------------------

    def inventory_instances(self) -> tuple[int | None, str]:
        """Instances counted by ``radpilot inventory --format json``, or None and why."""
        argv = [
            str(self.options.radpilot),
            "--data-dir",
            str(self.data_dir),
            "inventory",
            "--format",
            "json",
        ]
        try:
            result = subprocess.run(
                argv,
                env=self._env(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"inventory did not run: {exc}"
        if result.returncode != 0:
            return None, f"inventory exited {result.returncode}: {_last_words(result.stderr)}"
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            return None, f"inventory output is not JSON: {exc}"
        count = _instance_total(report)
        if count is None:
            keys = sorted(report) if isinstance(report, dict) else type(report).__name__
            return None, f"no instance total found in inventory JSON (top level: {keys})"
        return count, "ok"

    def after_store(self, expected: int, stored_at: float) -> dict[str, Any]:
        """Time until the background indexer has caught up with what was acknowledged.

        Primary signal: ``archive/pending/`` (links to files not yet indexed) is empty.
        Then, if ``radpilot inventory --format json`` works, its instance total is recorded.
        """
        pending = self.data_dir / "archive" / "pending"
        timeout = 600.0
        result: dict[str, Any] = {}
        if pending.is_dir():
            while time.perf_counter() - stored_at < timeout:
                with os.scandir(pending) as entries:
                    if next(entries, None) is None:
                        break
                if not self.alive():
                    result["index_error"] = "radpilot exited while indexing"
                    return result
                time.sleep(0.02)
            else:
                result["index_error"] = f"pending/ not empty after {timeout:.0f} s"
                return result
            result["index_lag_s"] = time.perf_counter() - stored_at
            result["index_signal"] = "archive/pending empty"
        count, why = self.inventory_instances()
        result["inventory_instances"] = count
        result["inventory_status"] = why
        if count is not None and count != expected and "index_lag_s" in result:
            result["index_error"] = (
                f"pending/ is empty but the inventory counts {count} of {expected}"
            )
        if "index_lag_s" not in result and count is not None:
            # No pending/ folder: poll the inventory instead (coarser: one CLI run per poll).
            while count is not None and count < expected:
                if time.perf_counter() - stored_at > timeout:
                    result["index_error"] = f"inventory below {expected} after {timeout:.0f} s"
                    return result
                count, why = self.inventory_instances()
            if count is not None:
                result["index_lag_s"] = time.perf_counter() - stored_at
                result["index_signal"] = "inventory --format json"
                result["inventory_instances"] = count
        return result


class RadpilotNoSync(Radpilot):
    """``radpilot serve`` with ``RADPILOT_FSYNC=false``, to show the cost of fsync."""

    name = "radpilot-nosync"
    extra_env: ClassVar[dict[str, str]] = {"RADPILOT_FSYNC": "false"}


class RadpilotTwoProcesses(Radpilot):
    """``radpilot serve`` with ``RADPILOT_RECEIVER_PROCESSES=2`` (two processes, one port)."""

    name = "radpilot-2proc"
    extra_env: ClassVar[dict[str, str]] = {"RADPILOT_RECEIVER_PROCESSES": "2"}


class MinimalPynetdicom(Receiver):
    """``bench/minimal_scp.py``: pynetdicom writing files, nothing else (a reference)."""

    name = "pynetdicom"
    aet = "PYNETDICOM"

    def _launch(self, *, concurrent: bool) -> Child:
        del concurrent
        out = self.workdir / "received"
        out.mkdir()
        script = Path(__file__).with_name("minimal_scp.py")
        argv = [
            sys.executable,
            str(script),
            "--port",
            str(self.port),
            "--ae-title",
            self.aet,
            "--out",
            str(out),
        ]
        if self.options.max_pdu:
            argv += ["--max-pdu", str(self.options.max_pdu)]
        return Child(argv, log_path=self.workdir / "pynetdicom.log", env=dcmtk_env())

    def received(self) -> int:
        return _count_files(self.workdir / "received", "*.dcm")

    def settings(self) -> dict[str, Any]:
        return {"fsync": False, "max_pdu": self.options.max_pdu or 16382, "index": None}


def _last_words(text: str) -> str:
    """The last line of a message with words in it (Typer frames errors in a box)."""
    for line in reversed(text.splitlines()):
        words = line.strip(" \u2502\u2500\u256d\u256e\u2570\u256f|")
        if any(c.isalnum() for c in words):
            return words.strip()
    return "(no output)"


def _instance_total(report: Any) -> int | None:
    """Find the total instance count in an inventory report of unknown exact shape."""
    if not isinstance(report, dict):
        return None
    for key in ("instances", "instance_count", "n_instances", "num_instances"):
        value = report.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    for key in ("totals", "total", "summary"):
        found = _instance_total(report.get(key))
        if found is not None:
            return found
    return None


_ALL: tuple[type[Receiver], ...] = (StoreScp, Orthanc, Radpilot, OrthancNoSync, RadpilotNoSync,
                                    RadpilotTwoProcesses, MinimalPynetdicom)  # fmt: skip
RECEIVERS: dict[str, type[Receiver]] = {cls.name: cls for cls in _ALL}


def tool_version(argv: list[str]) -> str:
    """First line of a tool's ``--version`` output, or why there is none."""
    if shutil.which(argv[0]) is None:
        return f"{argv[0]}: not found"
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=20, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]}: {exc}"
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[0].strip() if lines else f"{argv[0]}: no output"
