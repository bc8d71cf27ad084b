"""De-identification throughput: radpilot vs dicognito vs deid, on the same files.

Each tool does the same work per file, timed end to end: read the file with pydicom,
de-identify it, write it to an output folder. Two workloads:

``ct``
    A generated CT series (``bench.gen_data``, 512 x 512, Explicit VR Little Endian,
    realistic header), ``--ct-count`` slices (default 100).
``pydicom-data``
    The pydicom-data files that radpilot passes on (CT, MR, CR, NM, SEG in many transfer
    syntaxes; the ultrasound and secondary-capture files it quarantines are left out so
    that all tools process the same set).

Every tool runs ``--repeats`` times per workload, interleaved, after one warm-up file;
the best time is kept.
radpilot also runs through ``deidentify_tree`` (its CLI path: walk, read, quarantine
check, write named by new UIDs, record). Prints a markdown table with files/s, MB/s and
each tool's speed relative to radpilot.

Run from the repository root::

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python -m bench.bench_deid
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import logging
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

if __package__ in (None, ""):  # `python bench/bench_deid.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gen_data import DataSpec, ensure_data
from radpilot.core.settings import DeidOptions
from radpilot.dicom.deid import Deidentifier, deidentify_tree, quarantine_reason
from radpilot.dicom.reading import configure_pydicom

KEY = b"benchmark-key-not-secret-0123456789"
Tool = Callable[[Path], Dataset]


def radpilot_tool() -> Tool:
    engine = Deidentifier(KEY, DeidOptions())

    def run(path: Path) -> Dataset:
        return engine.deidentify(pydicom.dcmread(path)).dataset

    return run


def dicognito_tool() -> Tool | None:
    if importlib.util.find_spec("dicognito") is None:
        return None
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer(seed="benchmark")

    def run(path: Path) -> Dataset:
        ds = pydicom.dcmread(path)
        anonymizer.anonymize(ds)
        return ds

    return run


def deid_tool() -> Tool | None:
    if importlib.util.find_spec("deid") is None:
        return None
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers
    from deid.logger import bot

    bot.level = 0  # deid prints a line per action otherwise
    recipe = DeidRecipe()  # its default "dicom" recipe (Basic Profile inspired)

    def run(path: Path) -> Dataset:
        with contextlib.redirect_stdout(io.StringIO()):
            (ds,) = replace_identifiers([str(path)], deid=recipe, save=False, remove_private=True)
        return ds  # type: ignore[no-any-return]

    return run


def pydicom_data_files() -> list[Path]:
    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    chosen = []
    for path in sorted(folder.glob("*.dcm")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, force=True)
        if (
            not caught
            and "SOPClassUID" in ds
            and "file_meta" in dir(ds)
            and ds.file_meta.get("TransferSyntaxUID")
            and quarantine_reason(ds) is None
        ):
            chosen.append(path)
    return chosen


def save(ds: Dataset, path: Path) -> None:
    """Write as a Part 10 file; deid's default recipe removes the SOP Instance UID
    (its output is then not a valid object), so that one is written without checks."""
    if "SOPInstanceUID" not in ds:
        ds.save_as(path, enforce_file_format=False)
        return
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def per_file(tool: Tool, files: list[Path]) -> Callable[[Path], None]:
    """One pass: read, de-identify and write every file with ``tool``."""
    tool(files[0])  # warm-up: imports, caches

    def run(out: Path) -> None:
        for index, path in enumerate(files):
            save(tool(path), out / f"{index}.dcm")

    return run


def tree(files: list[Path], work: Path) -> Callable[[Path], None]:
    """One pass of radpilot's ``deidentify_tree`` over links to ``files``."""
    src = work / "tree-in"
    src.mkdir(parents=True)
    for index, path in enumerate(files):
        (src / f"{index}.dcm").symlink_to(path.resolve())
    engine = Deidentifier(KEY, DeidOptions())

    def run(out: Path) -> None:
        record = deidentify_tree(src, out, engine, work / "tree-quarantine")
        if record.written + record.duplicates != len(files):
            raise RuntimeError("deidentify_tree did not write every file")

    return run


def rows(workload: str, files: list[Path], work: Path, repeats: int) -> Iterator[list[str]]:
    """Time every tool ``repeats`` times, interleaved so that drift hits all alike."""
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    makers: list[tuple[str, Tool | None]] = [
        ("radpilot", radpilot_tool()),
        ("dicognito 0.19.0", dicognito_tool()),
        ("deid 0.4.13", deid_tool()),
    ]
    runs = {name: per_file(tool, files) for name, tool in makers if tool is not None}
    runs["radpilot deidentify_tree"] = tree(files, work)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            started = time.perf_counter()
            run(out)
            best[name] = min(best[name], time.perf_counter() - started)
    reference = best["radpilot"]
    for name, _ in makers:
        if name not in runs:
            yield [workload, name, "not installed", "", "", ""]
    for name, seconds in best.items():
        yield [
            workload,
            name,
            str(len(files)),
            f"{len(files) / seconds:.1f}",
            f"{megabytes / seconds:.1f}",
            f"{reference / seconds:.2f}",
        ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the markdown table."""
    parser = argparse.ArgumentParser(description="De-identification throughput.")
    parser.add_argument("--ct-count", type=int, default=100, help="CT slices to generate.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder [temp].")
    args = parser.parse_args(argv)
    configure_pydicom()
    logging.getLogger("radpilot").setLevel(logging.WARNING)
    data_root = Path(__file__).resolve().parent / "out" / "deid-data"
    data = ensure_data(data_root, DataSpec(ct_count=args.ct_count, dx_count=0))
    workloads = [("ct", list(data.ct_files)), ("pydicom-data", pydicom_data_files())]
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        table = [["workload", "tool", "files", "files/s", "MB/s", "speed vs radpilot"]]
        for workload, files in workloads:
            if files:
                table.extend(rows(workload, files, Path(scratch) / workload, args.repeats))
    print("| " + " | ".join(table[0]) + " |")
    print("|" + "---|" * len(table[0]))
    for row in table[1:]:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
