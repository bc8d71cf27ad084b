"""C-STORE throughput: ``radpilot serve`` versus dcmtk ``storescp`` and Orthanc.

All receivers are fed by dcmtk ``storescu`` with the same data (see :mod:`bench.gen_data`):
a 300-slice CT series and 500 single-image radiographs, each sent over one association and
split over N concurrent associations (N concurrent storescu processes). Every measurement
starts a fresh receiver with empty storage, times the wall clock from the start of the
first storescu to the exit of the last, then checks that every image arrived before the
number counts. Receivers and workloads are interleaved within each repeat; the report
gives the median over repeats, MB/s, and radpilot's ratios to Orthanc and storescp.

Run ``python -m bench.cstore --help`` from the repository root.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

if not __package__:
    # Run as ``python bench/cstore.py``: make the ``bench`` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cpuwatch, gen_data, peers

__all__ = ["Workload", "main"]

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
BASELINES = ("orthanc", "storescp", "pynetdicom")
SET_LABELS = {"ct": "CT series", "dx": "radiographs"}


@dataclass(frozen=True, slots=True)
class Workload:
    """Files sent by ``associations`` concurrent storescu processes, one folder each."""

    key: str
    label: str
    parts: tuple[Path, ...]
    images: int
    bytes: int

    @property
    def associations(self) -> int:
        """Number of concurrent associations (storescu processes)."""
        return len(self.parts)


def _split(files: tuple[Path, ...], n: int, dest: Path) -> tuple[Path, ...]:
    """Hard-link `files` into `n` folders under `dest` in contiguous chunks."""
    shutil.rmtree(dest, ignore_errors=True)
    parts = []
    base, extra = divmod(len(files), n)
    start = 0
    for k in range(n):
        part = dest / f"part-{k + 1}"
        part.mkdir(parents=True)
        stop = start + base + (1 if k < extra else 0)
        for f in files[start:stop]:
            try:
                os.link(f, part / f.name)
            except OSError:  # another file system, or no hard links: copy instead
                shutil.copy2(f, part / f.name)
        parts.append(part)
        start = stop
    return tuple(parts)


def build_workloads(
    data: gen_data.DataSet, sets: list[str], associations: list[int], split_root: Path
) -> list[Workload]:
    """One workload per (data set, association count)."""
    workloads = []
    for name in sets:
        files = data.ct_files if name == "ct" else data.dx_files
        folder = data.ct_dir if name == "ct" else data.dx_dir
        size = data.ct_bytes if name == "ct" else data.dx_bytes
        for n in associations:
            if n > len(files):
                raise SystemExit(f"cstore: cannot split {len(files)} {name} files over {n}")
            parts = (folder,) if n == 1 else _split(files, n, split_root / f"{name}-{n}")
            noun = "association" if n == 1 else "concurrent associations"
            workloads.append(
                Workload(f"{name}-{n}", f"{SET_LABELS[name]}, {n} {noun}", parts, len(files), size)
            )
    return workloads


class MeasurementError(RuntimeError):
    """A measurement that produced no valid number."""


def _run_storescu(rx: peers.Receiver, wl: Workload, logs: Path, timeout: float) -> float:
    """Send the workload; return the wall-clock seconds from first start to last exit."""
    env = peers.dcmtk_env()
    children: list[peers.Child] = []
    started = time.perf_counter()
    try:
        for k, part in enumerate(wl.parts):
            argv = [
                "storescu",
                "-aet",
                "BENCHSCU",
                "-aec",
                rx.aet,
                "+sd",
                "+r",
                "-nh",
                peers.LOCALHOST,
                str(rx.port),
                str(part),
            ]
            children.append(peers.Child(argv, log_path=logs / f"storescu-{k + 1}.log", env=env))
        for child in children:
            remaining = max(0.1, timeout - (time.perf_counter() - started))
            try:
                child.wait(remaining)
            except subprocess.TimeoutExpired as exc:
                raise MeasurementError(f"storescu still running after {timeout:.0f} s") from exc
        seconds = time.perf_counter() - started
        failed = [c for c in children if c.popen.returncode != 0]
        if failed:
            c = failed[0]
            raise MeasurementError(
                f"{len(failed)} storescu exited non-zero ({c.popen.returncode}):\n{c.log_tail(8)}"
            )
        errors = sum(c.log_path.read_text(errors="replace").count("\nE: ") for c in children)
        if errors:
            raise MeasurementError(f"storescu logged {errors} errors; see {logs}")
        return seconds
    finally:
        for child in children:
            child.stop(grace=2.0)


def _wait_received(rx: peers.Receiver, expected: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    count = rx.received()
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        count = rx.received()
    return count


def measure(
    receiver: type[peers.Receiver],
    wl: Workload,
    options: peers.ReceiverOptions,
    work_root: Path,
    *,
    timeout: float,
    keep: bool,
    quiet_wait: float = 0.0,
) -> dict[str, Any]:
    """One measurement of one receiver on one workload, with a fresh receiver.

    With `quiet_wait` > 0, first wait up to that many seconds until other processes use
    under 10 % of a CPU. The CPU time other processes used while storescu ran is recorded
    as ``foreign_cpu_s``.
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"{receiver.name}-{wl.key}-", dir=work_root))
    rx = receiver(workdir, options)
    record: dict[str, Any] = {
        "receiver": receiver.name,
        "workload": wl.key,
        "associations": wl.associations,
        "images": wl.images,
        "bytes": wl.bytes,
    }
    try:
        if quiet_wait > 0:
            waited = cpuwatch.wait_until_quiet({os.getpgrp()}, limit=quiet_wait)
            record["waited_for_quiet_s"] = round(waited, 1)
        record["loadavg_before"] = os.getloadavg()[0]
        record["start_s"] = round(rx.start(concurrent=wl.associations > 1), 3)
        record["settings"] = rx.settings()
        cpu_before = cpuwatch.snapshot()
        seconds = _run_storescu(rx, wl, workdir, timeout)
        stored_at = time.perf_counter()
        ours = {os.getpgrp()} | ({rx.child.pgid} if rx.child else set())
        foreign = cpuwatch.foreign_cpu_seconds(cpu_before, cpuwatch.snapshot(), ours)
        record["foreign_cpu_s"] = round(foreign, 2)
        record["seconds"] = round(seconds, 4)
        received = _wait_received(rx, wl.images)
        record["received"] = received
        if received != wl.images:
            raise MeasurementError(f"{received} of {wl.images} images arrived")
        record["images_per_s"] = wl.images / seconds
        record["mb_per_s"] = wl.bytes / 1e6 / seconds
        extra = rx.after_store(wl.images, stored_at)
        record.update(extra)
        if "index_lag_s" in extra:
            record["images_per_s_indexed"] = wl.images / (seconds + extra["index_lag_s"])
    except peers.ReceiverError as exc:
        record["error"] = str(exc)
        record["receiver_failed"] = True
    except MeasurementError as exc:
        record["error"] = str(exc)
        record["receiver_failed"] = not rx.alive()
        if rx.child is not None:
            record["receiver_log_tail"] = rx.child.log_tail(10)
    finally:
        rx.stop()
        os.sync()  # storescp does not fsync: flush its writes before the next measurement
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
            os.sync()
    return record


# ------------------------------------------------------------------------------------------
# summary and report


def _disturbed(rec: dict[str, Any]) -> bool:
    """Other processes used more than 10 % of a CPU while this measurement ran."""
    return bool(rec.get("foreign_cpu_s", 0.0) > 0.1 * rec.get("seconds", 0.0))


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Median (and range) over repeats per ``receiver/workload``."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        if "discarded" in rec:
            continue
        groups.setdefault(f"{rec['receiver']}/{rec['workload']}", []).append(rec)
    summary: dict[str, dict[str, Any]] = {}
    for key, recs in groups.items():
        ok = [r for r in recs if "images_per_s" in r]
        entry: dict[str, Any] = {
            "runs": len(recs),
            "ok": len(ok),
            "disturbed": sum(1 for r in ok if _disturbed(r)),
            "errors": [r["error"] for r in recs if "error" in r],
        }
        if ok:
            ips = [r["images_per_s"] for r in ok]
            entry.update(
                images_per_s=statistics.median(ips),
                images_per_s_min=min(ips),
                images_per_s_max=max(ips),
                mb_per_s=statistics.median(r["mb_per_s"] for r in ok),
                seconds=statistics.median(r["seconds"] for r in ok),
            )
            lags = [r["index_lag_s"] for r in ok if "index_lag_s" in r]
            if lags:
                entry["index_lag_s"] = statistics.median(lags)
                entry["images_per_s_indexed"] = statistics.median(
                    r["images_per_s_indexed"] for r in ok if "images_per_s_indexed" in r
                )
        summary[key] = entry
    return summary


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "not run"
    if "images_per_s" not in entry:
        return "failed"
    mark = " *" if entry.get("disturbed") else ""
    return f"{entry['images_per_s']:,.0f} img/s · {entry['mb_per_s']:,.0f} MB/s{mark}"


def markdown(
    workloads: list[Workload], receivers: list[str], summary: dict[str, dict[str, Any]]
) -> str:
    """The results as Markdown tables (medians)."""
    ratio_cols = [
        (r, b) for r in receivers if r.startswith("radpilot") for b in BASELINES if b in receivers
    ]
    head = ["workload", "images", "MB", *receivers, *(f"{r} / {b}" for r, b in ratio_cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for wl in workloads:
        row = [wl.label, str(wl.images), f"{wl.bytes / 1e6:,.1f}"]
        row += [_cell(summary.get(f"{r}/{wl.key}")) for r in receivers]
        for r, b in ratio_cols:
            num, den = summary.get(f"{r}/{wl.key}", {}), summary.get(f"{b}/{wl.key}", {})
            if "images_per_s" in num and "images_per_s" in den:
                row.append(f"{num['images_per_s'] / den['images_per_s']:.2f}x")
            else:
                row.append("-")
        lines.append("| " + " | ".join(row) + " |")
    if any(e.get("disturbed") for e in summary.values()):
        lines += [
            "",
            "\\* some repeats ran while other processes used more than 10 % of a CPU "
            "(`foreign_cpu_s` in the JSON)",
        ]
    indexed = [
        (r, wl)
        for r in receivers
        for wl in workloads
        if "index_lag_s" in summary.get(f"{r}/{wl.key}", {})
    ]
    if indexed:
        lines += [
            "",
            "| receiver | workload | index caught up after the last ack | "
            "images/s including indexing |",
            "|---|---|---|---|",
        ]
        for r, wl in indexed:
            e = summary[f"{r}/{wl.key}"]
            lines.append(
                f"| {r} | {wl.label} | {e['index_lag_s']:.2f} s | "
                f"{e['images_per_s_indexed']:,.0f} |"
            )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# environment record


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError as exc:
        return f"unknown ({exc})"
    return "unknown"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        return None
    return None


def _filesystem(path: Path) -> str:
    best, fstype = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            mount = fields[1]
            if str(path).startswith(mount) and len(mount) > len(best):
                best, fstype = mount, f"{fields[2]} on {fields[0]} ({mount})"
    except OSError as exc:
        return f"unknown ({exc})"
    return fstype


def _git_commit() -> dict[str, Any]:
    # Read-only; GIT_OPTIONAL_LOCKS=0 stops `git status` from refreshing the index.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        status = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    return {"commit": head.stdout.strip(), "uncommitted_changes": bool(status.stdout.strip())}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(work_root: Path) -> dict[str, Any]:
    """Machine, tools and versions, recorded with the results."""
    usage = shutil.disk_usage(work_root)
    return {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "memory_gib": _mem_total_gib(),
        "work_dir": str(work_root),
        "work_fs": _filesystem(work_root.resolve()),
        "disk_free_gb": round(usage.free / 1e9, 1),
        "python": platform.python_version(),
        "dcmtk": peers.tool_version(["storescu", "--version"]),
        "orthanc": peers.tool_version(["Orthanc", "--version"]),
        "pynetdicom": _version("pynetdicom"),
        "pydicom": _version("pydicom"),
        "radpilot": _version("radpilot"),
        "git": _git_commit(),
        "TCP_NODELAY": "1 for storescu, storescp, Orthanc and radpilot",
    }


# ------------------------------------------------------------------------------------------
# command line


def _terminate(signum: int, frame: FrameType | None) -> None:
    del frame
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop children


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cstore",
        description="C-STORE throughput into radpilot serve, dcmtk storescp and Orthanc, "
        "all fed by dcmtk storescu (TCP_NODELAY=1 everywhere).",
        epilog="Results: a Markdown table on stdout, JSON and Markdown under --out-dir.",
    )
    parser.add_argument(
        "--receivers",
        type=_csv,
        default=["storescp", "orthanc", "radpilot"],
        help="comma-separated, of: "
        + ", ".join(peers.RECEIVERS)
        + " [default: storescp,orthanc,radpilot]",
    )
    parser.add_argument(
        "--sets", type=_csv, default=["ct", "dx"], help="data sets to send: ct, dx [default: ct,dx]"
    )
    parser.add_argument(
        "--associations",
        type=lambda v: [int(x) for x in _csv(v)],
        default=[1, 4],
        help="concurrent associations per workload, one workload each [default: 1,4]",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="measurements per receiver and workload; the median is "
        "reported [default: %(default)s]",
    )
    parser.add_argument(
        "--max-pdu",
        type=int,
        default=None,
        help="max receive PDU for storescp (-pdu), Orthanc (MaximumPduLength) and the "
        "minimal pynetdicom receiver, 4096..131072 [default: theirs, 16384 / 16382]; "
        "radpilot keeps its own (RADPILOT_MAX_PDU_SIZE, via --radpilot-env)",
    )
    parser.add_argument(
        "--radpilot",
        type=Path,
        default=REPO / ".venv" / "bin" / "radpilot",
        help="the radpilot executable [default: %(default)s]",
    )
    parser.add_argument(
        "--radpilot-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for radpilot serve (repeatable)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60.0,
        help="seconds a receiver may take to answer C-ECHO [default: 60]",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds one workload may take [default: %(default)s]",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=OUT / "work",
        help="receivers' storage, emptied after each measurement [default: %(default)s]",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=OUT, help="where results are written [default: %(default)s]"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="before each measurement, wait up to this many seconds until other processes "
        "use under 10%% of a CPU; 0 to skip [default: %(default)s]",
    )
    parser.add_argument(
        "--retry-disturbed",
        type=int,
        default=2,
        help="measure again, up to this many times, when other processes used more than "
        "10%% of a CPU meanwhile; the discarded runs stay in the JSON [default: %(default)s]",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep what the receivers stored (and their logs)"
    )
    gen_data.add_spec_arguments(parser)
    return parser


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    unknown = [r for r in args.receivers if r not in peers.RECEIVERS]
    if unknown:
        parser.error(
            f"unknown receiver(s) {', '.join(unknown)}; choose from {', '.join(peers.RECEIVERS)}"
        )
    bad_sets = [s for s in args.sets if s not in SET_LABELS]
    if bad_sets:
        parser.error(f"unknown set(s) {', '.join(bad_sets)}; choose from ct, dx")
    if args.repeats < 1 or args.retry_disturbed < 0 or any(n < 1 for n in args.associations):
        parser.error("--repeats and --associations must be at least 1, --retry-disturbed 0 or more")
    if args.max_pdu is not None and not 4096 <= args.max_pdu <= 131072:
        parser.error("--max-pdu must be within 4096..131072 (storescp's and Orthanc's range)")
    for item in args.radpilot_env:
        if "=" not in item:
            parser.error(f"--radpilot-env {item!r}: write KEY=VALUE")
    for tool in ("storescu", "echoscu", "storescp", "Orthanc"):
        needed = tool in ("storescu", "echoscu") or tool.lower() in args.receivers
        if needed and shutil.which(tool) is None:
            parser.error(
                f"{tool} not found on PATH; install Debian's dcmtk / orthanc packages "
                "or leave that receiver out with --receivers"
            )


def _executable(path: Path) -> Path:
    """An absolute path: a bare name is looked up on PATH, a relative path made absolute."""
    if len(path.parts) == 1:
        found = shutil.which(str(path))
        if found:
            return Path(found)
    return path.resolve()


def _warm_page_cache(files: tuple[Path, ...]) -> None:
    """Read the inputs once so that no measurement pays for the first disk read."""
    for f in files:
        with f.open("rb") as fh:
            while fh.read(1 << 20):
                continue


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate or find the data, measure everything, write and return the results."""
    data = gen_data.ensure_data(args.data_dir, gen_data.spec_from_arguments(args))
    args.work_dir.mkdir(parents=True, exist_ok=True)
    workloads = build_workloads(data, args.sets, args.associations, args.data_dir.parent / "split")
    options = peers.ReceiverOptions(
        max_pdu=args.max_pdu,
        radpilot=_executable(args.radpilot),
        radpilot_env=dict(item.split("=", 1) for item in args.radpilot_env),
        start_timeout=args.start_timeout,
    )
    skipped: dict[str, str] = {}
    for name in args.receivers:
        if name.startswith("radpilot") and not os.access(options.radpilot, os.X_OK):
            skipped[name] = f"{options.radpilot} is not an executable; skipped"
    _warm_page_cache(data.ct_files + data.dx_files)
    load = os.getloadavg()[0]
    if load > 0.5:
        print(
            f"cstore: warning: load average {load:.2f} before starting; other work on this "
            "machine will make the numbers noisy (each record keeps its loadavg_before)",
            file=sys.stderr,
        )

    results: dict[str, Any] = {
        "benchmark": "cstore",
        "environment": environment(args.work_dir),
        "data": {
            "root": str(data.root),
            "spec": asdict(data.spec),
            "ct_bytes": data.ct_bytes,
            "dx_bytes": data.dx_bytes,
            "sha256": data.sha256,
        },
        "storescu": "storescu -aet BENCHSCU -aec AET +sd +r -nh 127.0.0.1 PORT DIR",
        "repeats": args.repeats,
        "workloads": [
            {
                "key": w.key,
                "label": w.label,
                "images": w.images,
                "bytes": w.bytes,
                "associations": w.associations,
            }
            for w in workloads
        ],
        "receivers": args.receivers,
        "records": [],
        "skipped": skipped,
        "complete": False,
    }
    records: list[dict[str, Any]] = results["records"]
    total = args.repeats * len(workloads) * len(args.receivers)
    done = 0
    run_dir = Path(tempfile.mkdtemp(prefix="cstore-", dir=args.work_dir))
    try:
        for repeat in range(1, args.repeats + 1):
            for wl in workloads:
                for name in args.receivers:
                    done += 1
                    if name in skipped:
                        continue
                    for attempt in range(1, args.retry_disturbed + 2):
                        rec = measure(
                            peers.RECEIVERS[name],
                            wl,
                            options,
                            run_dir,
                            timeout=args.timeout,
                            keep=args.keep,
                            quiet_wait=args.quiet_wait,
                        )
                        rec["repeat"], rec["attempt"] = repeat, attempt
                        again = _disturbed(rec) and attempt <= args.retry_disturbed
                        if again:
                            rec["discarded"] = "other processes were busy; measured again"
                        records.append(rec)
                        _progress(done, total, rec)
                        if not again:
                            break
                    if rec.get("receiver_failed"):
                        skipped[name] = f"failed in {wl.key} repeat {repeat}: {rec['error']}"
                        print(f"cstore: skipping {name} from now on", file=sys.stderr)
        results["complete"] = True
    finally:
        peers.stop_all_children()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        results["summary"] = summarize(records)
        results["markdown"] = markdown(workloads, args.receivers, results["summary"])
        _write(results, args.out_dir)
    return results


def _progress(done: int, total: int, rec: dict[str, Any]) -> None:
    head = f"[{done}/{total}] {rec['receiver']:<16} {rec['workload']:<6} r{rec['repeat']}"
    if "images_per_s" in rec:
        line = (
            f"{head} {rec['images']} images in {rec['seconds']:.2f} s = "
            f"{rec['images_per_s']:,.0f} img/s, {rec['mb_per_s']:,.0f} MB/s"
        )
        if "index_lag_s" in rec:
            line += f"; index caught up {rec['index_lag_s']:.2f} s later"
        if "index_error" in rec:
            line += f"; INDEX: {rec['index_error']}"
        if _disturbed(rec):
            line += f" (other processes used {rec['foreign_cpu_s']:.1f} CPU-s meanwhile)"
        if "discarded" in rec:
            line += ": discarded, again"
    else:
        line = f"{head} FAILED: {rec.get('error', '?').splitlines()[0]}"
    print(line, file=sys.stderr, flush=True)


def _write(results: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = out_dir / f"cstore-{stamp}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out_dir / f"cstore-{stamp}.md").write_text(results["markdown"])
    print(f"cstore: results in {json_path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; exit status 1 if any measurement failed."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_args(args, parser)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        results = run(args)
    except KeyboardInterrupt:
        print("cstore: interrupted; receivers stopped, partial results written", file=sys.stderr)
        return 130
    finally:
        peers.stop_all_children()
    env = results["environment"]
    print(
        f"C-STORE throughput, median of {args.repeats}; {env['nproc']} cores "
        f"({env['cpu_model']}), kernel {env['kernel']}, {env['date_utc']}\n"
    )
    print(results["markdown"])
    for name, why in results["skipped"].items():
        print(f"- {name}: {why}")
    failed = [r for r in results["records"] if "error" in r]
    return 1 if failed or results["skipped"] else 0


if __name__ == "__main__":
    sys.exit(main())
