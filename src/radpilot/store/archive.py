"""The on-disk DICOM archive: write once, never overwrite, read back byte-identical.

Layout under the archive root::

    instances/ab/cd/<SOP Instance UID>.dcm   accepted files, exactly as accepted
    conflicts/<SOP Instance UID>/<sha256>.dcm  a different object arriving under a UID we
                                               already hold: kept aside, never overwriting
    pending/<SOP Instance UID>.dcm            hard links to accepted files not yet indexed
    tmp/                                      partial writes

A file is in ``instances/`` only after its bytes were fsynced, and it is placed there with
``link(2)``, which fails if the name exists, so two arrivals of one UID cannot overwrite
each other even when they race. The ``pending/`` link is created before the file is
acknowledged, so an instance accepted just before a crash is indexed at the next start.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from radpilot.core.errors import StorageError
from radpilot.core.settings import Settings

__all__ = [
    "Archive",
    "OutOfSpaceError",
    "PutOutcome",
    "PutResult",
    "archive_from_settings",
    "fsync_dir",
]

_SAFE_UID = re.compile(r"^[0-9][0-9.]{0,63}$")


class OutOfSpaceError(StorageError):
    """The archive's disk is below the configured free-space floor."""


class PutOutcome(enum.StrEnum):
    """What :meth:`Archive.put` did with the bytes it was given."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class PutResult:
    """The result of storing one instance."""

    outcome: PutOutcome
    relative_path: str
    sha256: str
    size: int


def file_name(sop_instance_uid: str) -> str:
    """The archive file name for a UID; UIDs that are not plain digits and dots are hashed."""
    if _SAFE_UID.match(sop_instance_uid) and ".." not in sop_instance_uid:
        return f"{sop_instance_uid}.dcm"
    return "x" + hashlib.sha256(sop_instance_uid.encode()).hexdigest() + ".dcm"


class Archive:
    """A write-once store of DICOM files keyed by SOP Instance UID.

    Parameters
    ----------
    root
        The archive directory; created if missing.
    fsync
        Flush each file to stable storage before reporting it as stored. Turn off only for
        throwaway installations.
    fsync_directories
        Also flush the directories that name it (needed on file systems that do not
        journal directory entries with the file, e.g. ext2 or some network file systems).
    min_free_bytes
        :meth:`put` raises :class:`OutOfSpaceError` when the disk has less free space.
    """

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        fsync_directories: bool = False,
        min_free_bytes: int = 0,
    ) -> None:
        self.root = root
        self.fsync = fsync
        self.fsync_directories = fsync_directories
        self._dirs: set[Path] = set()
        self.min_free_bytes = min_free_bytes
        for sub in ("instances", "conflicts", "pending", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._space_checked = 0.0
        self._space_ok = True
        self._lock = threading.Lock()

    # paths -------------------------------------------------------------------------
    def relative_path(self, sop_instance_uid: str) -> str:
        """Where the instance with this UID lies, relative to the archive root."""
        digest = hashlib.sha1(sop_instance_uid.encode(), usedforsecurity=False).hexdigest()
        return f"instances/{digest[:2]}/{digest[2:4]}/{file_name(sop_instance_uid)}"

    def path(self, relative_path: str) -> Path:
        """The absolute path of an archive-relative path, refusing escapes from the root."""
        full = (self.root / relative_path).resolve()
        if not full.is_relative_to(self.root.resolve()):
            raise StorageError(f"path {relative_path!r} is outside the archive")
        return full

    def read_bytes(self, relative_path: str) -> bytes:
        """The stored file, byte for byte."""
        return self.path(relative_path).read_bytes()

    def contains(self, sop_instance_uid: str) -> bool:
        """Whether an instance with this UID has been stored."""
        return (self.root / self.relative_path(sop_instance_uid)).exists()

    # writing -----------------------------------------------------------------------
    def check_space(self) -> None:
        """Raise :class:`OutOfSpaceError` if free space is below the floor (cached 2 s)."""
        if not self.min_free_bytes:
            return
        now = time.monotonic()
        if now - self._space_checked > 2.0:
            self._space_ok = shutil.disk_usage(self.root).free >= self.min_free_bytes
            self._space_checked = now
        if not self._space_ok:
            raise OutOfSpaceError(
                f"less than {self.min_free_bytes // 2**20} MiB free under {self.root}; "
                "free disk space or lower RADPILOT_MIN_FREE_DISK_MB"
            )

    def put(self, data: bytes, sop_instance_uid: str) -> PutResult:
        """Store ``data`` (a complete DICOM file) under ``sop_instance_uid``.

        Returns
        -------
        PutResult
            ``STORED`` for a new instance (and a ``pending/`` link for the indexer),
            ``DUPLICATE`` when identical bytes are already stored, ``CONFLICT`` when
            different bytes are stored under this UID (the new bytes are kept in
            ``conflicts/``).

        Raises
        ------
        OutOfSpaceError
            Below the free-space floor; nothing was written.
        OSError
            The disk refused the write; nothing partial is left behind.
        """
        self.check_space()
        digest = _digest(data)
        rel = self.relative_path(sop_instance_uid)
        final = self.root / rel
        tmp = self.root / "tmp" / f"{_TMP_PREFIX}-{os.getpid()}-{next(_tmp_numbers)}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        named = True  # tmp still names the file
        try:
            _write_all(fd, data)
            self._ensure_dir(final.parent)
            try:
                os.link(tmp, final)
            except FileExistsError:
                os.close(fd)
                fd = -1
                return self._second_copy(tmp, final, rel, digest.result(), len(data))
            pending = self.root / "pending" / final.name
            os.replace(tmp, pending)
            named = False
            if self.fsync:
                # One flush after both names exist. link(2) changed the inode (its link
                # count), so fsync of the file commits the journal transaction holding both
                # directory entries on journaling file systems (ext4, XFS). Elsewhere,
                # fsync_directories adds the two directory flushes POSIX asks for.
                os.fsync(fd)
                if self.fsync_directories:
                    fsync_dir(final.parent)
                    fsync_dir(pending.parent)
        finally:
            if fd >= 0:
                os.close(fd)
            if named:
                tmp.unlink(missing_ok=True)
        return PutResult(PutOutcome.STORED, rel, digest.result(), len(data))

    def _second_copy(self, tmp: Path, final: Path, rel: str, sha: str, size: int) -> PutResult:
        if _sha256_file(final) == sha:
            return PutResult(PutOutcome.DUPLICATE, rel, sha, size)
        conflict_dir = self.root / "conflicts" / final.stem
        conflict_dir.mkdir(parents=True, exist_ok=True)
        target = conflict_dir / f"{sha}.dcm"
        if not target.exists():
            os.replace(tmp, target)
            if self.fsync:
                _fsync_file(target)
                fsync_dir(conflict_dir)
        return PutResult(PutOutcome.CONFLICT, str(target.relative_to(self.root)), sha, size)

    def _ensure_dir(self, path: Path) -> None:
        if path not in self._dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path)

    # indexing hand-off -------------------------------------------------------------
    def pending(self) -> Iterator[Path]:
        """Files accepted but not yet confirmed as indexed, oldest first."""
        entries = sorted((self.root / "pending").iterdir(), key=lambda p: p.stat().st_mtime)
        yield from (p for p in entries if p.suffix == ".dcm")

    def pending_path(self, sop_instance_uid: str) -> Path:
        """The pending link for a UID (it may not exist)."""
        return self.root / "pending" / file_name(sop_instance_uid)

    def mark_indexed(self, sop_instance_uid: str) -> None:
        """Drop the pending link once the database holds the instance."""
        self.pending_path(sop_instance_uid).unlink(missing_ok=True)


def archive_from_settings(settings: Settings) -> Archive:
    """The installation's archive, as ``settings`` configure it."""
    return Archive(
        settings.archive_dir,
        fsync=settings.fsync,
        fsync_directories=settings.fsync_directories,
        min_free_bytes=settings.min_free_disk_mb * 2**20,
    )


# Names of partial writes: unique per process and call, and cheap (uuid4 reads the kernel's
# random source on every call). O_EXCL refuses a name that exists, e.g. one left by a
# process that had the same PID before.
_TMP_PREFIX = uuid.uuid4().hex[:12]
_tmp_numbers = itertools.count()

_HASH_ASIDE = 256 * 1024  # smaller data is hashed inline: a thread hand-off costs more
_hasher: ThreadPoolExecutor | None = None
_hasher_lock = threading.Lock()


def _digest(data: bytes) -> Future[str]:
    """The SHA-256 of ``data``, computed beside the write for large data.

    hashlib releases the GIL while it hashes large buffers and the write and fsync wait
    on the disk, so on a second core the hash costs the caller nothing (a 2 MB radiograph
    takes about 1.2 ms to hash here, which otherwise came on top of its fsync).
    """
    if len(data) < _HASH_ASIDE:
        done: Future[str] = Future()
        done.set_result(_sha256_hex(data))
        return done
    global _hasher
    with _hasher_lock:
        if _hasher is None:
            _hasher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="radpilot-hash")
    return _hasher.submit(_sha256_hex, data)


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_WRITE_CHUNK = 256 * 1024


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` at most ``_WRITE_CHUNK`` bytes per call.

    In an isolated test on the benchmark machine (Linux 6.18, ext4) one ``write(2)`` of
    2 MB into a new file took 5.7 ms (median of 100) and the same bytes in 256 KiB calls
    0.42 ms; another run of that test gave 0.42 ms for the single write too, and the
    C-STORE benchmark showed no difference beyond its spread (BENCHMARKS.md). The cause
    was not pinned down; small calls cost a few microseconds each.
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view[:_WRITE_CHUNK])
        view = view[written:]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries to stable storage (on ext4 and XFS this commits the
    journal transaction that also holds the directories created for them)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
