"""End-to-end latency and throughput of the pipeline, against the bare model, in one run.

For each number of embedded workers (``--workers 1,2``) a fresh ``radpilot serve`` and a
fresh Orthanc (the PACS receiving results) are started. Then:

1. **Latency, radiographs**: each of ``--studies`` chest radiograph studies (real
   PneumoniaMNIST pixels, ``radpilot synth``, ``--dx-size`` px) is sent alone with dcmtk
   storescu, and the next one only after the previous SR is stored in Orthanc. Latency =
   last image received (radpilot's ``studies.last_received_at``) to SR stored in Orthanc
   (the C-STORE response for the SR, ``deliveries.delivered_at``), both on radpilot's
   clock, with the stages in between.
2. **Throughput**: all studies sent at once over one association; studies per minute from
   the first byte sent to the last SR stored in Orthanc.
3. **CT**: the 300-slice CT series of ``bench.gen_data`` through a 3D U-Net segmentation,
   latency as above (``--ct``; once per worker count).

The bare model: the same TorchScript networks, called in this process on the same
studies' preprocessed tensors (forward pass only), timed per study.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
from sqlalchemy import select

from bench import peers
from bench.pipeline_models import build_ct_model, build_cxr_model
from radpilot.data.synth import pneumoniamnist_cases, radiograph
from radpilot.models.package import ModelPackage
from radpilot.models.preprocess import prepare
from radpilot.models.registry import Registry
from radpilot.store import Database
from radpilot.store.models import Study
from radpilot.store.models_pipeline import Delivery, DeliveryStatus, Job, Result, ResultObject

QUIET = 0.5  # seconds a study must be quiet to count as complete (default 30)
REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "pipeline"
NPZ = REPO.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"
RULES = """\
rules:
  - name: chest-radiograph
    match: {Modality: "CR|DX", BodyPartExamined: CHEST}
    models: [cxr-bench]
  - name: ct
    match: {Modality: CT}
    models: [ct-bench]
    series: largest
"""


def _ts(value: dt.datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def prepare_dx(folder: Path, count: int, size: int) -> list[Path]:
    """Write ``count`` radiograph studies from PneumoniaMNIST's test split."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for case in pneumoniamnist_cases(NPZ, "test", count=count):
        path = folder / f"{case.source.replace('/', '-')}-{size}.dcm"
        if not path.exists():
            radiograph(case, size=size).save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def storescu(port: int, files: list[Path]) -> None:
    argv = ["storescu", "-aec", "RADPILOT", "-nh", "127.0.0.1", str(port), *map(str, files)]
    subprocess.run(argv, env=peers.dcmtk_env(), check=True, capture_output=True, timeout=600)


class Installation:
    """A fresh data dir with both models active, a radpilot serve and an Orthanc."""

    def __init__(self, root: Path, workers: int, models: list[Path]) -> None:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        self.root = root
        self.orthanc = peers.Orthanc(root / "orthanc", peers.ReceiverOptions())
        self.orthanc.start(concurrent=True)
        data = root / "rp"
        (root / "routing.yaml").write_text(RULES)
        self.db = Database(f"sqlite:///{data / 'radpilot.db'}")
        self.db.migrate()
        registry = Registry(self.db, data / "models")
        for package in models:
            version = registry.add(package, added_by="bench")
            registry.set_state(version.name, version.version, "active", actor="bench")
        self.dicom_port = peers.free_port()
        destination = {"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1"}
        env = {
            **peers.dcmtk_env(),
            "RADPILOT_DATA_DIR": str(data),
            "RADPILOT_DICOM_PORT": str(self.dicom_port),
            "RADPILOT_DICOM_HOST": "127.0.0.1",
            "RADPILOT_HTTP_PORT": str(peers.free_port()),
            "RADPILOT_ROUTING_RULES": str(root / "routing.yaml"),
            "RADPILOT_STUDY_QUIET_SECONDS": str(QUIET),
            "RADPILOT_WORKERS": str(workers),
            "RADPILOT_DESTINATIONS": json.dumps([{**destination, "port": self.orthanc.port}]),
            "RADPILOT_LOG_LEVEL": "WARNING",
        }
        radpilot = str(REPO / ".venv" / "bin" / "radpilot")
        self.server = peers.Child([radpilot, "serve"], log_path=root / "serve.log", env=env)
        deadline = time.monotonic() + 120
        while not peers.echo("RADPILOT", self.dicom_port):
            if time.monotonic() > deadline or not self.server.alive():
                raise RuntimeError(f"radpilot serve did not start:\n{self.server.log_tail()}")
            time.sleep(0.2)

    def sr_delivered(self, kind: str = "sr") -> dict[str, float]:
        """Study UID -> when its SR (or other ``kind``) was stored in Orthanc (epoch s)."""
        with self.db.session() as session:
            rows = session.execute(
                select(Study.study_instance_uid, Delivery.delivered_at)
                .join(Result, Result.study_pk == Study.id)
                .join(ResultObject, ResultObject.result_pk == Result.id)
                .join(Delivery, Delivery.object_pk == ResultObject.id)
                .where(ResultObject.kind == kind, Delivery.status == DeliveryStatus.DELIVERED)
            ).all()
        return {uid: _ts(at) for uid, at in rows if at is not None}

    def wait_delivered(self, uids: set[str], timeout: float, kind: str = "sr") -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while True:
            done = self.sr_delivered(kind)
            if uids <= set(done):
                return done
            if time.monotonic() > deadline or not self.server.alive():
                raise RuntimeError(f"SRs missing for {len(uids - set(done))} studies")
            time.sleep(0.05)

    def stages(self, uid: str) -> dict[str, float]:
        """Seconds per stage for one study, from radpilot's stamps."""
        with self.db.session() as session:
            study = session.scalars(select(Study).where(Study.study_instance_uid == uid)).one()
            job = session.scalars(select(Job).where(Job.study_pk == study.id)).one()
            result = session.scalars(select(Result).where(Result.study_pk == study.id)).one()
        delivered = self.sr_delivered()[uid]
        marks = [
            ("quiet window", study.last_received_at, study.completed_at),
            ("complete -> queued", study.completed_at, job.queued_at),
            ("queued -> model call", job.queued_at, job.inference_started_at),
            ("model call", job.inference_started_at, job.inference_ended_at),
            ("results written", job.inference_ended_at, result.stored_at),
        ]
        out = {name: _ts(b) - _ts(a) for name, a, b in marks if a is not None and b is not None}
        out["delivered to PACS"] = delivered - _ts(result.stored_at)
        out["end to end"] = delivered - _ts(study.last_received_at)
        return out

    def stop(self) -> None:
        self.server.stop(grace=30)
        self.orthanc.stop()
        self.db.dispose()


def bare_forward(package: Path, studies: list[list[Path]], repeats: int = 1) -> list[float]:
    """Seconds of the forward pass alone, per study, on radpilot's own preprocessing."""
    manifest = ModelPackage.open(package).manifest
    network = torch.jit.load(str(package / "model.pt"), map_location="cpu").eval()
    times = []
    for files in studies:
        datasets = [pydicom.dcmread(f) for f in files]
        batch = torch.from_numpy(np.stack([s.array for s in prepare(datasets, manifest.input)]))
        with torch.inference_mode():
            network(batch)  # warm
            start = time.perf_counter()
            for _ in range(repeats):
                network(batch)
            times.append((time.perf_counter() - start) / repeats)
    return times


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out_dir
    models = [build_cxr_model(out / "models" / "cxr")]
    if args.ct:
        models.append(build_ct_model(out / "models" / "ct"))
    dx = prepare_dx(out / "data" / f"dx-{args.dx_size}", args.studies, args.dx_size)
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in dx]
    ct_files: list[Path] = []
    if args.ct:
        from bench.gen_data import DataSpec, ensure_data

        ct_files = list(ensure_data(spec=DataSpec(dx_count=1)).ct_files)
    record: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "studies": len(dx),
        "dx_size": args.dx_size,
        "runs": [],
    }
    record["bare_forward_dx"] = bare_forward(models[0], [[f] for f in dx])
    if args.ct:
        record["bare_forward_ct"] = bare_forward(models[1], [ct_files])
    for workers in args.workers:
        inst = Installation(out / f"run-w{workers}", workers, models)
        try:
            run_record: dict[str, Any] = {
                "workers": workers,
                "latency": [],
                "loadavg_before": os.getloadavg(),
            }
            for path, uid in zip(dx, uids, strict=True):
                storescu(inst.dicom_port, [path])
                inst.wait_delivered({uid}, 120)
                # The key image (with the heatmap) follows the SR; let it go out before the
                # next study so that each latency is measured on an idle pipeline.
                inst.wait_delivered({uid}, 300, kind="sc")
                run_record["latency"].append(inst.stages(uid))
                took = run_record["latency"][-1]["end to end"]
                print(f"w{workers} latency {uid[-6:]}: {took:.3f} s", file=sys.stderr)
            if args.ct:
                ct_uid = str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).StudyInstanceUID)
                storescu(inst.dicom_port, ct_files)
                inst.wait_delivered({ct_uid}, 900)
                run_record["ct"] = inst.stages(ct_uid)
                print(f"w{workers} CT: {run_record['ct']}", file=sys.stderr)
        finally:
            inst.stop()
        # Throughput on a fresh installation: everything at once.
        inst = Installation(out / f"run-w{workers}-burst", workers, models[:1])
        try:
            started = time.time()
            storescu(inst.dicom_port, dx)
            done = inst.wait_delivered(set(uids), 3600)
            run_record["burst_seconds"] = max(done.values()) - started
        finally:
            inst.stop()
        run_record["loadavg_after"] = os.getloadavg()
        record["runs"].append(run_record)
    return record


def summarise(record: dict[str, Any]) -> str:
    fwd = record["bare_forward_dx"]
    lines = [
        f"bare DenseNet-121 forward, 1 radiograph: p50 {_pct(fwd, 50) * 1000:.0f} ms, "
        f"p95 {_pct(fwd, 95) * 1000:.0f} ms",
        "",
        f"| workers | radiograph end to end p50 / p95 (s) | after the {QUIET:g} s quiet window "
        "p50 / p95 (s) | model call p50 (s) | overhead vs bare forward (after quiet window, "
        "p50) | studies/min (burst of N) | CT end to end (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run_record in record["runs"]:
        lat = run_record["latency"]
        e2e = [s["end to end"] for s in lat]
        after = [s["end to end"] - s["quiet window"] for s in lat]
        call = [s["model call"] for s in lat]
        overhead = statistics.median(after) / statistics.median(fwd) - 1
        per_min = record["studies"] / run_record["burst_seconds"] * 60
        ct = run_record.get("ct", {}).get("end to end", float("nan"))
        lines.append(
            f"| {run_record['workers']} (load {run_record['loadavg_before'][0]:.1f}) | "
            f"{_pct(e2e, 50):.2f} / {_pct(e2e, 95):.2f} | "
            f"{_pct(after, 50):.2f} / {_pct(after, 95):.2f} | {_pct(call, 50):.3f} | "
            f"{overhead * 100:.0f} % | {per_min:.0f} | {ct:.1f} |"
        )
    stages = record["runs"][0]["latency"]
    lines += ["", "Stages, radiographs, 1 worker (p50 / p95, s):", ""]
    for name in stages[0]:
        values = [s[name] for s in stages]
        lines.append(f"- {name}: {_pct(values, 50):.3f} / {_pct(values, 95):.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--dx-size", type=int, default=1024)
    parser.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2])
    parser.add_argument("--ct", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out-dir", type=Path, default=OUT)
    args = parser.parse_args(argv)
    record = run(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = record["when"].replace(":", "")
    (args.out_dir / f"pipeline-{stamp}.json").write_text(json.dumps(record, indent=2))
    text = summarise(record)
    (args.out_dir / f"pipeline-{stamp}.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
