"""Generate the benchmark's DICOM data, deterministically.

Two sets, written as Explicit VR Little Endian Part 10 files:

``ct/``
    One CT study with one axial series of 300 slices, 512 x 512, 16 bits allocated /
    12 stored, with a realistic header (RescaleSlope/Intercept, ImagePositionPatient
    stepping 1 mm, PixelSpacing, KVP, ConvolutionKernel ...) and a chest/abdomen phantom
    made of ellipses with plausible Hounsfield units plus noise: about 157 MB.
``dx/``
    500 chest radiographs (Digital X-Ray Image Storage - For Presentation), each its own
    patient and study, 1024 x 1024 by default (16 allocated / 12 stored), about 2.1 MB each.

The same parameters always give byte-identical files (fixed seed, UIDs derived with
:func:`pydicom.uid.generate_uid` from fixed entropy), and ``manifest.json`` records the
parameters, counts, sizes and a SHA-256 over all files. A second call with the same
parameters finds the manifest and the files and returns without writing anything.

Run ``python -m bench.gen_data --help``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

__all__ = ["DataSet", "DataSpec", "default_data_dir", "ensure_data", "main"]

# Bump when the content of the generated files changes, so old data is regenerated.
GENERATOR_VERSION = 1
SEED = 20240601
_ENTROPY = "radpilot-bench-cstore"
_NUMPY_FLOAT = np.float32


def default_data_dir() -> Path:
    """``bench/out/data`` next to this file (git-ignored)."""
    return Path(__file__).resolve().parent / "out" / "data"


@dataclass(frozen=True, slots=True)
class DataSpec:
    """What to generate."""

    ct_count: int = 300
    ct_size: int = 512
    dx_count: int = 500
    dx_rows: int = 1024
    dx_cols: int = 1024
    seed: int = SEED
    generator_version: int = GENERATOR_VERSION


@dataclass(frozen=True, slots=True)
class DataSet:
    """Generated data on disk."""

    root: Path
    spec: DataSpec
    ct_files: tuple[Path, ...]
    dx_files: tuple[Path, ...]
    ct_bytes: int
    dx_bytes: int
    sha256: str

    @property
    def ct_dir(self) -> Path:
        """Folder of the CT series."""
        return self.root / "ct"

    @property
    def dx_dir(self) -> Path:
        """Folder of the radiographs."""
        return self.root / "dx"


def _uid(*parts: object) -> UID:
    return generate_uid(entropy_srcs=[_ENTROPY, *(str(p) for p in parts)])


def _file_meta(sop_class: UID, sop_instance: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    if a <= 0 or b <= 0:
        return np.zeros(x.shape, dtype=bool)
    result: np.ndarray = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0
    return result


# --------------------------------------------------------------------------------------
# CT


def _ct_slice_hu(
    index: int, count: int, size: int, grid: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Hounsfield units of one axial slice of the phantom (head end first)."""
    x, y = grid
    s = size / 512.0  # geometry is designed for 512 x 512 and scales with the matrix
    t = index / max(count - 1, 1)  # 0 at the lung apices, 1 at the kidneys
    hu = np.full(x.shape, -1000.0, dtype=_NUMPY_FLOAT)
    body_a = (150 + 25 * np.sin(np.pi * t)) * s
    body_b = (110 + 12 * np.sin(np.pi * t)) * s
    cx, cy = 256 * s, 265 * s
    hu[_ellipse(x, y, cx, cy, body_a, body_b)] = -100.0  # subcutaneous fat
    hu[_ellipse(x, y, cx, cy, body_a - 12 * s, body_b - 12 * s)] = 40.0  # muscle, soft tissue
    if t < 0.62:  # lungs, widest in the middle of the chest
        p = np.sin(np.pi * t / 0.62) ** 0.5
        for side in (-1, 1):
            hu[_ellipse(x, y, cx + side * 70 * s, cy - 10 * s, 52 * p * s, 78 * p * s)] = -850.0
    if 0.28 < t < 0.6:  # heart
        p = np.sin(np.pi * (t - 0.28) / 0.32)
        hu[_ellipse(x, y, cx + 18 * s, cy + 5 * s, 58 * p * s, 48 * p * s)] = 45.0
    if t > 0.5:  # liver, then kidneys
        p = min(1.0, (t - 0.5) / 0.15)
        hu[_ellipse(x, y, cx - 55 * s, cy - 5 * s, 85 * p * s, 70 * p * s)] = 60.0
    if t > 0.78:
        for side in (-1, 1):
            hu[_ellipse(x, y, cx + side * 75 * s, cy + 45 * s, 22 * s, 32 * s)] = 150.0
    hu[_ellipse(x, y, cx + 5 * s, cy + 40 * s, 13 * s, 13 * s)] = 180.0  # aorta, contrast
    hu[_ellipse(x, y, cx, cy + 78 * s, 22 * s, 20 * s)] = 700.0  # vertebral body, cortex
    hu[_ellipse(x, y, cx, cy + 78 * s, 17 * s, 15 * s)] = 250.0  # cancellous bone
    return hu


def _ct_dataset(index: int, spec: DataSpec, grid: tuple[np.ndarray, np.ndarray]) -> Dataset:
    size = spec.ct_size
    rng = np.random.default_rng([spec.seed, 1, index])
    hu = _ct_slice_hu(index, spec.ct_count, size, grid)
    hu += rng.standard_normal(hu.shape, dtype=_NUMPY_FLOAT) * 12.0
    stored = np.clip(np.rint(hu + 1024.0), 0, 4095).astype("<u2")

    study_uid = _uid("ct", "study")
    sop_uid = _uid("ct", "instance", index)
    pixel_spacing = 350.0 / size
    z = -50.0 - index * 1.0  # head first supine: z decreases toward the feet

    ds = Dataset()
    ds.file_meta = _file_meta(CTImageStorage, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceCreationDate = "20240601"
    ds.InstanceCreationTime = "101500"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240601"
    ds.StudyTime = "101000"
    ds.SeriesTime = "101200"
    ds.AcquisitionTime = ds.ContentTime = f"1012{index // 60 % 60:02d}.{index % 60:02d}0000"
    ds.AccessionNumber = "BENCHCT0001"
    ds.Modality = "CT"
    ds.Manufacturer = "Synthetic Phantom Co."
    ds.InstitutionName = "radpilot benchmark hospital"
    ds.ReferringPhysicianName = "REFERRER^BENCH"
    ds.StationName = "CT01"
    ds.StudyDescription = "CT CHEST ABDOMEN WITH CONTRAST"
    ds.SeriesDescription = "Axial 1.0 Standard"
    ds.ManufacturerModelName = "Phantom 64"
    ds.PatientName = "BENCH^CT"
    ds.PatientID = "BENCHCT0001"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.PatientAge = "064Y"
    ds.BodyPartExamined = "CHEST"
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500.0"
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = "bench-1"
    ds.ReconstructionDiameter = "350.0"
    ds.DistanceSourceToDetector = "1085.6"
    ds.DistanceSourceToPatient = "595.0"
    ds.GantryDetectorTilt = "0.0"
    ds.TableHeight = "160.0"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "250"
    ds.Exposure = "125"
    ds.FilterType = "BODY FILTER"
    ds.GeneratorPower = "30"
    ds.FocalSpots = "1.2"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = _uid("ct", "series")
    ds.StudyID = "1"
    ds.SeriesNumber = "2"
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = str(index + 1)
    ds.ImagePositionPatient = [-175.0, -175.0, z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.FrameOfReferenceUID = _uid("ct", "frame")
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = f"{z:.1f}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.PixelSpacing = [pixel_spacing, pixel_spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.LossyImageCompression = "00"
    ds.PixelData = stored.tobytes()
    return ds


# --------------------------------------------------------------------------------------
# DX


def _dx_pixels(index: int, spec: DataSpec, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """A PA chest radiograph phantom (MONOCHROME2: bone bright, lungs dark)."""
    x, y = grid
    rows, cols = spec.dx_rows, spec.dx_cols
    rng = np.random.default_rng([spec.seed, 2, index])
    sx, sy = cols / 1024.0, rows / 1024.0
    scale = rng.uniform(0.88, 1.08)
    cx = cols / 2 + rng.uniform(-40, 40) * sx
    cy = rows / 2 + rng.uniform(-30, 30) * sy
    img = np.full(x.shape, 350.0, dtype=_NUMPY_FLOAT)  # direct exposure around the body
    body = _ellipse(x, y, cx, cy + 60 * sy, 430 * scale * sx, 520 * scale * sy)
    img[body] = 2300.0
    img[body & (y > cy + 330 * scale * sy)] = 2650.0  # abdomen below the diaphragm
    lungs = np.zeros(x.shape, dtype=bool)
    for side in (-1, 1):
        lungs |= _ellipse(
            x, y, cx + side * 190 * scale * sx, cy - 20 * sy, 150 * scale * sx, 310 * scale * sy
        )
    img[lungs] = 1000.0 + rng.uniform(-80, 80)
    ribs = np.sin(2 * np.pi * (y + 0.0007 * (x - cx) ** 2 / sx) / (72 * scale * sy)) > 0.55
    img[lungs & ribs] += 380.0
    img[_ellipse(x, y, cx, cy + 20 * sy, 85 * scale * sx, 390 * scale * sy)] = 2750.0
    heart_a, heart_b = rng.uniform(150, 200) * scale * sx, 140 * scale * sy
    img[_ellipse(x, y, cx + 60 * sx, cy + 190 * sy, heart_a, heart_b)] = 2550.0
    img += rng.standard_normal(img.shape, dtype=_NUMPY_FLOAT) * 35.0
    pixels: np.ndarray = np.clip(np.rint(img), 0, 4095).astype("<u2")
    return pixels


def _dx_dataset(index: int, spec: DataSpec, grid: tuple[np.ndarray, np.ndarray]) -> Dataset:
    pixels = _dx_pixels(index, spec, grid)
    sop_uid = _uid("dx", "instance", index)
    day = 1 + index % 28
    spacing = 0.4 * 1024 / max(spec.dx_rows, spec.dx_cols)  # a 41 cm field

    ds = Dataset()
    ds.file_meta = _file_meta(DigitalXRayImageStorageForPresentation, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceCreationDate = f"202405{day:02d}"
    ds.InstanceCreationTime = "090000"
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = f"202405{day:02d}"
    ds.StudyTime = ds.SeriesTime = f"{8 + index % 10:02d}{index % 60:02d}00"
    ds.AcquisitionTime = ds.ContentTime = ds.StudyTime
    ds.AccessionNumber = f"BENCHDX{index + 1:05d}"
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "Synthetic Phantom Co."
    ds.InstitutionName = "radpilot benchmark hospital"
    ds.ReferringPhysicianName = "REFERRER^BENCH"
    ds.StationName = "DX01"
    ds.StudyDescription = "XR CHEST PA"
    ds.SeriesDescription = "PA"
    ds.ManufacturerModelName = "Phantom DR"
    ds.PatientName = f"BENCH^DX{index + 1:05d}"
    ds.PatientID = f"BENCHDX{index + 1:05d}"
    ds.PatientBirthDate = f"{1940 + index % 60}0{1 + index % 9}15"
    ds.PatientSex = "MF"[index % 2]
    ds.BodyPartExamined = "CHEST"
    ds.KVP = "120"
    ds.DeviceSerialNumber = "0002"
    ds.SoftwareVersions = "bench-1"
    ds.DistanceSourceToDetector = "1800.0"
    ds.DistanceSourceToPatient = "1650.0"
    ds.ExposureTime = "8"
    ds.XRayTubeCurrent = "320"
    ds.Exposure = "3"
    ds.ExposureInuAs = 2560
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.DetectorType = "SCINTILLATOR"
    ds.ViewPosition = "PA"
    ds.StudyInstanceUID = _uid("dx", "study", index)
    ds.SeriesInstanceUID = _uid("dx", "series", index)
    ds.StudyID = "1"
    ds.SeriesNumber = "1"
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = "1"
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.dx_rows
    ds.Columns = spec.dx_cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    ds.PixelData = pixels.tobytes()
    return ds


# --------------------------------------------------------------------------------------


def _grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:rows, 0:cols].astype(_NUMPY_FLOAT)
    return x, y


def _write(ds: Dataset, path: Path) -> tuple[int, str]:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    path.write_bytes(data)
    return len(data), hashlib.sha256(data).hexdigest()


def _ct_names(spec: DataSpec) -> Iterator[str]:
    return (f"CT_{i + 1:04d}.dcm" for i in range(spec.ct_count))


def _dx_names(spec: DataSpec) -> Iterator[str]:
    return (f"DX_{i + 1:05d}.dcm" for i in range(spec.dx_count))


def _load_existing(root: Path, spec: DataSpec) -> DataSet | None:
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"gen_data: ignoring unreadable {manifest_path}: {exc}", file=sys.stderr)
        return None
    if manifest.get("spec") != asdict(spec):
        return None
    ct_files = tuple(root / "ct" / name for name in _ct_names(spec))
    dx_files = tuple(root / "dx" / name for name in _dx_names(spec))
    on_disk = {p.name for p in (root / "ct").glob("*.dcm")} | {
        p.name for p in (root / "dx").glob("*.dcm")
    }
    if on_disk != {p.name for p in ct_files + dx_files}:
        return None
    ct_bytes = sum(p.stat().st_size for p in ct_files)
    dx_bytes = sum(p.stat().st_size for p in dx_files)
    if (ct_bytes, dx_bytes) != (manifest.get("ct_bytes"), manifest.get("dx_bytes")):
        return None
    return DataSet(root, spec, ct_files, dx_files, ct_bytes, dx_bytes, manifest["sha256"])


def ensure_data(
    root: Path | None = None, spec: DataSpec | None = None, *, force: bool = False
) -> DataSet:
    """Return the benchmark data under `root`, generating it if missing or different.

    Parameters
    ----------
    root
        Output folder [default: :func:`default_data_dir`]; ``ct/``, ``dx/`` and
        ``manifest.json`` inside it are replaced when regenerating.
    spec
        What to generate [default: ``DataSpec()``].
    force
        Regenerate even when matching data exists.

    Returns
    -------
    DataSet
        The files, their total sizes and the combined SHA-256.
    """
    root = (root or default_data_dir()).resolve()
    spec = spec or DataSpec()
    if not force:
        existing = _load_existing(root, spec)
        if existing is not None:
            return existing
    started = time.monotonic()
    for sub in ("ct", "dx"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)
    (root / "manifest.json").unlink(missing_ok=True)
    digest = hashlib.sha256()
    ct_files: list[Path] = []
    dx_files: list[Path] = []
    ct_bytes = dx_bytes = 0

    grid = _grid(spec.ct_size, spec.ct_size)
    for i, name in enumerate(_ct_names(spec)):
        path = root / "ct" / name
        size, sha = _write(_ct_dataset(i, spec, grid), path)
        ct_files.append(path)
        ct_bytes += size
        digest.update(f"ct/{name} {sha}\n".encode())
    grid = _grid(spec.dx_rows, spec.dx_cols)
    for i, name in enumerate(_dx_names(spec)):
        path = root / "dx" / name
        size, sha = _write(_dx_dataset(i, spec, grid), path)
        dx_files.append(path)
        dx_bytes += size
        digest.update(f"dx/{name} {sha}\n".encode())

    data = DataSet(
        root, spec, tuple(ct_files), tuple(dx_files), ct_bytes, dx_bytes, digest.hexdigest()
    )
    manifest = {
        "spec": asdict(spec),
        "ct_count": len(ct_files),
        "dx_count": len(dx_files),
        "ct_bytes": ct_bytes,
        "dx_bytes": dx_bytes,
        "sha256": data.sha256,
        "pydicom": pydicom.__version__,
        "numpy": np.__version__,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(
        f"gen_data: wrote {len(ct_files)} CT ({ct_bytes / 1e6:.1f} MB) and {len(dx_files)} DX "
        f"({dx_bytes / 1e6:.1f} MB) to {root} in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return data


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the data-shape options shared by ``gen_data`` and ``cstore``."""
    d = DataSpec()
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="where the data lives [default: %(default)s]",
    )
    parser.add_argument(
        "--ct-count",
        type=int,
        default=d.ct_count,
        help="CT slices in the series [default: %(default)s]",
    )
    parser.add_argument(
        "--dx-count",
        type=int,
        default=d.dx_count,
        help="single-image radiograph studies [default: %(default)s]",
    )
    parser.add_argument(
        "--dx-size",
        type=int,
        nargs=2,
        metavar=("ROWS", "COLS"),
        default=(d.dx_rows, d.dx_cols),
        help="radiograph matrix [default: %(default)s]",
    )


def spec_from_arguments(args: argparse.Namespace) -> DataSpec:
    """The :class:`DataSpec` named by the options of :func:`add_spec_arguments`."""
    if args.ct_count < 1 or args.dx_count < 1:
        raise SystemExit("gen_data: --ct-count and --dx-count must be at least 1")
    rows, cols = args.dx_size
    return DataSpec(ct_count=args.ct_count, dx_count=args.dx_count, dx_rows=rows, dx_cols=cols)


def main(argv: list[str] | None = None) -> int:
    """Command line: generate (or find) the data and print its summary as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.gen_data",
        description="Generate the C-STORE benchmark's CT series and radiographs "
        "(deterministic; skipped when matching data exists).",
    )
    add_spec_arguments(parser)
    parser.add_argument("--force", action="store_true", help="regenerate even if present")
    args = parser.parse_args(argv)
    data = ensure_data(args.data_dir, spec_from_arguments(args), force=args.force)
    summary = {
        "root": str(data.root),
        "ct": {"count": len(data.ct_files), "bytes": data.ct_bytes},
        "dx": {"count": len(data.dx_files), "bytes": data.dx_bytes},
        "sha256": data.sha256,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
