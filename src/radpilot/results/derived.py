"""Enhancement results (denoised, super-resolved images) as a new, derived series.

Each source instance gets a copy with the model's pixels, in a new series of the same
study: new SOP and Series Instance UIDs (deterministic), Image Type DERIVED\\SECONDARY,
Derivation Description naming the model, Source Image Sequence pointing at the original,
the model added to Contributing Equipment. The copy keeps the source's IOD (a CT stays a
CT, with its geometry and windows), so every viewer hangs it next to the original. The
originals are never modified; the caller's datasets are not touched either.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from radpilot.dicom.writing import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from radpilot.models.prediction import ImageRef, Prediction
from radpilot.results.coding import text_value
from radpilot.results.common import (
    CHARSET,
    contributing_equipment,
    frame_count,
    index_sources,
    long_string,
    source_for,
)
from radpilot.results.context import ResultContext, ResultError, ResultKind
from radpilot.results.orientation import source_image_item

__all__ = ["build_derived_series", "stored_dtype"]

# Attributes that describe the original pixels or bytes and would be false on the copy.
_DROP = (
    "PixelData",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "IconImageSequence",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
    "DataSetTrailingPadding",
    "MACParametersSequence",
    "DigitalSignaturesSequence",
    "EncryptedAttributesSequence",
    "OriginalAttributesSequence",
)


_LOSSLESS = {
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
}


def stored_dtype(ds: Dataset) -> np.dtype[np.integer]:
    """The numpy dtype (little endian) of a greyscale image's stored values.

    Raises
    ------
    ResultError
        If Bits Allocated is not 8, 16 or 32.
    """
    bits = int(ds.BitsAllocated)
    if bits not in (8, 16, 32):
        raise ResultError(f"cannot write {bits}-bit pixels; only 8, 16 and 32 are supported")
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}").newbyteorder("<")


def _pixels(frames: npt.NDArray[np.generic], ds: Dataset) -> npt.NDArray[np.integer]:
    """``frames`` as the source's stored values, refusing values the source cannot hold."""
    dtype = stored_dtype(ds)
    bits = int(ds.get("BitsStored") or ds.BitsAllocated)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if dtype.kind == "i" else (0, 2**bits - 1)
    values = np.rint(frames) if np.issubdtype(frames.dtype, np.floating) else frames
    if values.size and (float(np.min(values)) < low or float(np.max(values)) > high):
        raise ResultError(
            f"enhanced values span [{np.min(values)}, {np.max(values)}], outside the source's "
            f"{bits}-bit range [{low}, {high}]; the runtime must map its output back to "
            "the source's stored-value range"
        )
    return np.ascontiguousarray(values.astype(dtype))


def _instances(prediction: Prediction) -> dict[str, list[tuple[int, ImageRef]]]:
    """Mask/enhanced frame indices grouped by source instance, in the prediction's order."""
    groups: dict[str, list[tuple[int, ImageRef]]] = {}
    for index, image in enumerate(prediction.images):
        groups.setdefault(image.sop_instance_uid, []).append((index, image))
    return groups


def _derived(
    source: Dataset,
    pixels: npt.NDArray[np.integer],
    images: list[ImageRef],
    index: int,
    ctx: ResultContext,
) -> Dataset:
    ds = Dataset()
    for element in source:
        if element.keyword not in _DROP and element.tag != Tag(0xFFFA, 0xFFFA):
            ds.add(copy.deepcopy(element))
    texts = (ctx.model_label, ctx.manufacturer)
    if not all(t.isascii() for t in texts):
        ds.SpecificCharacterSet = CHARSET
    ds.SOPInstanceUID = UID(ctx.uid("derived", index))
    ds.SeriesInstanceUID = UID(ctx.uid("derived-series"))
    ds.SeriesNumber = ctx.series_number(ResultKind.DERIVED)
    original = str(source.get("SeriesDescription") or "").strip()
    ds.SeriesDescription = long_string(f"AI-processed ({ctx.model_label}) {original}")
    ds.ImageType = ["DERIVED", "SECONDARY", *list(source.get("ImageType") or [])[2:]]
    ds.DerivationDescription = text_value(
        f"Processed by AI model {ctx.model_label} (weights sha256 {ctx.weights_sha256}); "
        "the original image is unchanged in its own series"
    )[:1024]
    ds.SourceImageSequence = [
        source_image_item(image, source, codes.DCM.SourceImageForImageProcessingOperation)
        for image in images
    ]
    ds.ContributingEquipmentSequence = [
        *copy.deepcopy(list(source.get("ContributingEquipmentSequence") or [])),
        contributing_equipment(ctx),
    ]
    syntax = source.file_meta.TransferSyntaxUID
    if syntax.is_compressed and not ds.get("LossyImageCompression"):
        # Once lossy, always lossy (PS3.3 C.7.6.1.1.5): say so on the copy too.
        ds.LossyImageCompression = "00" if syntax in _LOSSLESS else "01"
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW" if pixels.dtype.itemsize > 1 else "OB"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    return ds


def build_derived_series(
    prediction: Prediction, sources: Sequence[Dataset], ctx: ResultContext
) -> list[Dataset]:
    """One new instance per source image, holding the enhanced pixels, in a new series.

    Parameters
    ----------
    prediction
        Holds ``enhanced`` (frames, rows, cols) over ``images``, in the source's stored
        value range (floats are rounded).
    sources
        The original images (full datasets: everything but the pixels is copied).
    ctx
        The model and job: UIDs, series number, derivation text.

    Returns
    -------
    list[pydicom.Dataset]
        New datasets with file meta (Explicit VR Little Endian, uncompressed).

    Raises
    ------
    ResultError
        If there is no enhanced image, its shape does not fit the images, its values do
        not fit the source's bits, a source is colour, or a multi-frame source is only
        partly covered.
    """
    enhanced = prediction.enhanced
    if enhanced is None:
        raise ResultError(
            "the prediction has no enhanced image; build_derived_series is for "
            "enhancement models (task 'enhancement')"
        )
    by_uid = index_sources(sources)
    if enhanced.ndim != 3 or enhanced.shape[0] != len(prediction.images):
        raise ResultError(
            f"enhanced image has shape {enhanced.shape}; expected (frames, rows, cols) "
            f"with one frame per image ({len(prediction.images)})"
        )
    results = []
    for index, members in enumerate(_instances(prediction).values()):
        images = [image for _, image in members]
        source = source_for(images[0], by_uid)
        for image in images:
            source_for(image, by_uid)
        if int(source.get("SamplesPerPixel") or 1) != 1:
            raise ResultError("enhancement of colour images is not supported; use greyscale")
        shape = (int(source.Rows), int(source.Columns))
        if enhanced.shape[1:] != shape:
            raise ResultError(f"enhanced frames are {enhanced.shape[1:]}, the source is {shape}")
        order = sorted(members, key=lambda m: m[1].frame)
        if [image.frame for _, image in order] != list(range(1, frame_count(source) + 1)):
            raise ResultError(
                "the enhanced frames do not cover every frame of a source image once; a "
                "derived instance needs all of its frames"
            )
        pixels = _pixels(enhanced[[i for i, _ in order]], source)
        results.append(_derived(source, pixels, [image for _, image in order], index, ctx))
    return results
