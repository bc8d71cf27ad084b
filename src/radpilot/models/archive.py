"""Safe extraction of package archives (.zip, .tar.gz / .tgz, .tar).

A package comes from a vendor or a training run and may be hostile: members with absolute
names, ``..`` parts or links that point outside the destination are refused before
anything is written, as are devices, FIFOs and archives that would unpack to more than
:data:`MAX_UNPACKED_BYTES`. Tar members are then written with Python's ``data`` filter,
which enforces the same rules a second time.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from radpilot.core.errors import ModelError

__all__ = ["ARCHIVE_SUFFIXES", "MAX_UNPACKED_BYTES", "extract", "is_archive"]

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
#: Refuse archives that would unpack to more than this (a zip bomb, or the wrong file).
MAX_UNPACKED_BYTES = 64 * 1024**3


def is_archive(path: Path) -> bool:
    """Whether ``path`` names a package archive by its suffix."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _check_name(archive: Path, name: str) -> PurePosixPath:
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and ":" in posix.parts[0]):
        raise ModelError(
            f"{archive.name}: member {name!r} would be written outside the package folder; "
            "refusing the archive (rebuild it with relative paths only)"
        )
    return posix


def _refuse_link(archive: Path, name: PurePosixPath, target: str) -> ModelError:
    return ModelError(
        f"{archive.name}: link {str(name)!r} points outside the package ({target!r}); "
        "refusing the archive"
    )


def _check_symlink(archive: Path, name: PurePosixPath, target: str) -> None:
    """A symbolic link's target is relative to the link's folder; it must stay inside."""
    if target.startswith("/"):
        raise _refuse_link(archive, name, target)
    depth = len(name.parent.parts)
    for part in PurePosixPath(target).parts:
        if part == "..":
            depth -= 1
        elif part not in (".", ""):
            depth += 1
        if depth < 0:
            raise _refuse_link(archive, name, target)


def _extract_zip(archive: Path, destination: Path) -> None:
    with zipfile.ZipFile(archive) as bundle:
        total = 0
        for info in bundle.infolist():
            name = _check_name(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ModelError(
                    f"{archive.name}: member {str(name)!r} is a symbolic link; "
                    "zip packages must hold plain files"
                )
            total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            raise ModelError(f"{archive.name}: would unpack to {total} bytes; refusing")
        bundle.extractall(destination)  # noqa: S202 - every member name was checked above


def _extract_tar(archive: Path, destination: Path) -> None:
    with tarfile.open(archive) as bundle:
        total = 0
        for member in bundle.getmembers():
            name = _check_name(archive, member.name)
            if member.issym():
                _check_symlink(archive, name, member.linkname)
            elif member.islnk():  # a hard link names another member, from the root
                _check_name(archive, member.linkname)
            elif not (member.isfile() or member.isdir()):
                raise ModelError(
                    f"{archive.name}: member {member.name!r} is a device or FIFO; refusing"
                )
            total += member.size
        if total > MAX_UNPACKED_BYTES:
            raise ModelError(f"{archive.name}: would unpack to {total} bytes; refusing")
        try:
            bundle.extractall(destination, filter="data")
        except tarfile.FilterError as exc:
            raise ModelError(f"{archive.name}: unsafe member refused ({exc})") from exc


def extract(archive: Path, destination: Path) -> None:
    """Unpack ``archive`` into the (empty) folder ``destination``.

    Raises
    ------
    ModelError
        If the archive is unreadable or holds an unsafe member; nothing is extracted
        then.
    """
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, destination)
        else:
            _extract_tar(archive, destination)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise ModelError(f"{archive.name}: not a readable archive ({exc})") from exc
