"""Finding DICOM objects in what a user points ``radpilot ingest`` at.

Folders (recursive), single files, DICOMDIR (the files it references) and zip archives
(including zips inside folders). Each object is yielded as a :class:`Source` that reads its
bytes on demand, so an archive of any size is streamed, one file at a time.
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

__all__ = ["Source", "collect_sources", "count_sources"]


@dataclass(frozen=True, slots=True)
class Source:
    """One candidate object: where it came from and how to read it."""

    origin: str
    read: Callable[[], bytes]


def _file(path: Path) -> Source:
    return Source(str(path), path.read_bytes)


def _zip_members(path: Path) -> Iterator[Source]:
    """Members of a zip, read from one open archive (consume each before the next)."""
    with zipfile.ZipFile(path) as archive:
        names = sorted(info.filename for info in archive.infolist() if not info.is_dir())
        for name in names:
            if Path(name).name.upper() == "DICOMDIR":
                continue  # an index of the other members, not an instance
            yield Source(f"{path}!{name}", functools.partial(archive.read, name))


def count_sources(paths: list[Path]) -> int:
    """How many sources :func:`collect_sources` will yield, without reading any file."""
    return sum(1 for _ in collect_sources(paths))


def _dicomdir_files(path: Path) -> list[Source]:
    """The files a DICOMDIR references (the DICOMDIR itself is an index, not an instance).

    Raises
    ------
    InvalidDicomError
        If ``path`` is not a readable DICOMDIR.
    """
    fileset = pydicom.dcmread(path)
    records = fileset.get("DirectoryRecordSequence", [])
    root = path.parent
    sources = []
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        sources.append(_file(root.joinpath(*parts)))
    return sources


def collect_sources(paths: list[Path]) -> Iterator[Source]:
    """Every candidate object under ``paths``, in a stable order.

    Raises
    ------
    FileNotFoundError
        If a given path does not exist.
    """
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(2, "no such file or folder", str(path))
    for path in paths:
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield from _expand(Path(folder) / name, in_folder=True)
        else:
            yield from _expand(path, in_folder=False)


def _expand(path: Path, *, in_folder: bool) -> Iterator[Source]:
    if path.name.upper() == "DICOMDIR":
        if in_folder:
            return  # the walk finds the referenced files itself
        try:
            yield from _dicomdir_files(path)
        except (InvalidDicomError, OSError, ValueError):
            yield _file(path)  # let the intake report what is wrong with it
        return
    if path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
        yield from _zip_members(path)
        return
    yield _file(path)
