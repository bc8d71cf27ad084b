"""Delivery throughput: radpilot's :class:`CStoreSender` versus dcmtk ``storescu`` into Orthanc.

Both send the same files (by default the first 100 slices of the benchmark CT series, see
:mod:`bench.gen_data`) over one association to a fresh Orthanc with empty storage, in
alternating order within each repeat. ``storescu`` runs with ``TCP_NODELAY=1`` (Debian's
dcmtk leaves Nagle's algorithm on otherwise); radpilot sets ``TCP_NODELAY`` on its own
socket. ``--with-nagle`` adds plain pynetdicom without ``TCP_NODELAY`` for comparison;
``--raw`` lets radpilot stream the files' bytes (pynetdicom's ``STORE_SEND_CHUNKED_DATASET``)
instead of reading and re-encoding each data set.

Timing is the wall clock of the send alone (association to release; for storescu the
process run, which includes its start-up of about 0.05 s). A number counts only after
Orthanc's ``/statistics`` shows every image stored. The report gives the median images/s
per sender, radpilot's ratio to storescu, and the CPU seconds other processes used during
each measurement (this machine is shared; a busy neighbour makes numbers worse).

Run ``.venv/bin/python -m bench.bench_delivery --help`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pydicom
from pydicom.data import get_testdata_file
from pydicom.filereader import read_file_meta_info
from pydicom.uid import generate_uid
from pynetdicom import AE, _config

from bench import cpuwatch, gen_data, peers
from radpilot.core.settings import Destination
from radpilot.results.senders import CStoreSender, Verdict

SENDERS = ("radpilot", "storescu")


def send_radpilot(files: list[Path], port: int) -> None:
    node = Destination(name="bench", ae_title=peers.Orthanc.aet, port=port)
    outcomes = CStoreSender(node, "BENCHSCU", timeout=60).send(files)
    bad = [o for o in outcomes if o.verdict is not Verdict.DELIVERED]
    if bad:
        raise RuntimeError(f"radpilot: {len(bad)} not delivered, e.g. {bad[0].reason}")


def send_storescu(files: list[Path], port: int) -> None:
    argv = ["storescu", "-aec", peers.Orthanc.aet, "-aet", "BENCHSCU", "-nh"]
    argv += [peers.LOCALHOST, str(port), *map(str, files)]
    done = subprocess.run(argv, env=peers.dcmtk_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"storescu exited with {done.returncode}: {done.stderr[-500:]}")


def send_nagle(files: list[Path], port: int) -> None:
    """Plain pynetdicom, Nagle's algorithm left on: what the issue measured first."""
    ae = AE(ae_title="BENCHSCU")
    for pair in {
        (str(m.MediaStorageSOPClassUID), str(m.TransferSyntaxUID))
        for m in map(read_file_meta_info, files)
    }:
        ae.add_requested_context(*pair)
    assoc = ae.associate(peers.LOCALHOST, port, ae_title=peers.Orthanc.aet)
    if not assoc.is_established:
        raise RuntimeError("pynetdicom: association not established")
    try:
        for path in files:
            if int(assoc.send_c_store(path).get("Status", -1)) != 0:
                raise RuntimeError("pynetdicom: a C-STORE failed")
    finally:
        assoc.release()


def sr_copies(count: int, folder: Path) -> list[Path]:
    """``count`` copies of pydicom's test SR, each a new instance."""
    folder.mkdir(parents=True)
    source = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
    paths = []
    for n in range(count):
        source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        paths.append(folder / f"sr-{n:04d}.dcm")
        source.save_as(paths[-1], enforce_file_format=True)
    return paths


SEND = {"radpilot": send_radpilot, "storescu": send_storescu, "pynetdicom-nagle": send_nagle}


def measure(name: str, files: list[Path], workdir: Path, quiet_wait: float) -> dict[str, Any]:
    """One send of ``files`` by ``name`` into a fresh Orthanc."""
    rx = peers.Orthanc(workdir / f"orthanc-{name}", peers.ReceiverOptions())
    rx.start(concurrent=False)
    try:
        waited = cpuwatch.wait_until_quiet({os.getpgrp()}, limit=quiet_wait)
        before = cpuwatch.snapshot()
        started = time.perf_counter()
        SEND[name](files, rx.port)
        seconds = time.perf_counter() - started
        ours = {os.getpgrp()} | ({rx.child.pgid} if rx.child else set())
        foreign = cpuwatch.foreign_cpu_seconds(before, cpuwatch.snapshot(), ours)
        received = rx.received()
        if received != len(files):
            raise RuntimeError(f"{name}: Orthanc holds {received} of {len(files)} images")
    finally:
        rx.stop()
        shutil.rmtree(workdir / f"orthanc-{name}", ignore_errors=True)
    return {
        "sender": name,
        "images": len(files),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(files) / seconds, 1),
        "foreign_cpu_s": round(foreign, 2),
        "waited_for_quiet_s": round(waited, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    gen_data.add_spec_arguments(parser)
    parser.add_argument(
        "--set",
        choices=("ct", "dx", "sr"),
        default="ct",
        help="CT slices (0.5 MB), radiographs (2.1 MB) or structured reports (6 kB, copies of "
        "pydicom's test-SR.dcm with new UIDs) [default: %(default)s]",
    )
    parser.add_argument("--count", type=int, default=100, help="images sent [%(default)s]")
    parser.add_argument("--repeats", type=int, default=3, help="[default: %(default)s]")
    parser.add_argument("--with-nagle", action="store_true", help="add plain pynetdicom")
    parser.add_argument(
        "--raw",
        action="store_true",
        help="switch on pynetdicom's STORE_SEND_CHUNKED_DATASET: radpilot streams file bytes",
    )
    parser.add_argument("--quiet-wait", type=float, default=30.0, help="max s to wait")
    parser.add_argument("--json", type=Path, help="also write the records here")
    args = parser.parse_args(argv)
    if shutil.which("storescu") is None or shutil.which("Orthanc") is None:
        print("needs dcmtk (storescu) and Orthanc: apt-get install dcmtk orthanc", file=sys.stderr)
        return 1
    _config.STORE_SEND_CHUNKED_DATASET = args.raw  # this process is the application
    names = [*SENDERS, *(["pynetdicom-nagle"] if args.with_nagle else [])]
    records = []
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        if args.set == "sr":
            files = sr_copies(args.count, Path(tmp) / "sr")
        else:
            data = gen_data.ensure_data(args.data_dir, gen_data.spec_from_arguments(args))
            files = list(data.ct_files if args.set == "ct" else data.dx_files)[: args.count]
        for repeat in range(args.repeats):
            order = names if repeat % 2 == 0 else names[::-1]
            for name in order:
                record = measure(name, files, Path(tmp), args.quiet_wait)
                record["repeat"] = repeat
                records.append(record)
                print(
                    f"{name:>17}: {record['images_per_s']:7.1f} images/s "
                    f"(other processes used {record['foreign_cpu_s']:.1f} CPU-s)",
                    flush=True,
                )
        size_mb = sum(p.stat().st_size for p in files) / 1e6
    median = {
        name: statistics.median(r["images_per_s"] for r in records if r["sender"] == name)
        for name in names
    }
    print(
        f"\n{len(files)} {args.set} images ({size_mb:.1f} MB) into Orthanc over one "
        f"association, median of {args.repeats}:"
    )
    for name in names:
        print(f"  {name:>17}: {median[name]:7.1f} images/s")
    print(f"  radpilot / storescu: {median['radpilot'] / median['storescu']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"median": median, "records": records}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
