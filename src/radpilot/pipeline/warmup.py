"""Warming up the result writers before the first study arrives.

highdicom and pydicom load standard tables on first use (highdicom's IOD module maps from
JSON, pydicom's keyword dictionary): the first SR a process builds took 0.62 s here, the
next ones 0.03 s. Building and encoding one throwaway SR over a synthetic image at start
moves that cost out of the first study's latency.
"""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radpilot.models.prediction import Finding, ImageRef, Prediction
from radpilot.results.context import ResultContext
from radpilot.results.sr import build_sr

__all__ = ["warm_result_writers"]

_DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def _image() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = _DX, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "WARM-UP", "", "", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "", "", "", ""
    ds.StudyID, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "1", "DX", 1, 1
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.2, 0.2]
    ds.PixelData = np.zeros((8, 8), dtype=np.uint16).tobytes()
    return ds


def warm_result_writers() -> bytes:
    """Build and encode one SR for a synthetic radiograph; return its bytes (nothing is
    written anywhere)."""
    source = _image()
    image = ImageRef(str(source.SOPInstanceUID), _DX, str(source.SeriesInstanceUID))
    prediction = Prediction(
        task="classification",
        findings=[Finding("warm-up", 0.5, 0.5, "default", positive=True)],
        images=[image],
        key_image=image,
    )
    context = ResultContext(
        model_name="warm-up",
        model_version="0",
        weights_sha256="0" * 64,
        manufacturer="radpilot",
        task="classification",
        operating_point="default",
        result_key="warm-up",
    )
    buffer = io.BytesIO()
    build_sr(prediction, [source], context).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
