"""Pieces every result writer shares: finding sources, naming the AI equipment, text rules."""

from __future__ import annotations

import copy
import datetime
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from highdicom import ContributingEquipment
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.tag import BaseTag, Tag

from radpilot import __version__
from radpilot.core.logging import ref
from radpilot.models.prediction import ImageRef
from radpilot.results.coding import text_value
from radpilot.results.context import ResultContext, ResultError

__all__ = [
    "CHARSET",
    "algorithm_parameters",
    "building",
    "contributing_equipment",
    "frame_count",
    "headers",
    "index_sources",
    "long_string",
    "source_for",
]

#: New objects are written in UTF-8: labels and model names are free text.
CHARSET = "ISO_IR 192"

_PIXEL_DATA = Tag(0x7FE0, 0x0010)
D = TypeVar("D", bound=Dataset)
_UID_LIKE = re.compile(r"\b\d+(?:\.\d+){3,}\b")

# Type 2 patient and study attributes that highdicom reads unconditionally; PACS data in
# the wild (and de-identified data) sometimes lacks them altogether.
_TYPE_2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def long_string(text: str, limit: int = 64) -> str:
    """``text`` as a valid LO (or SH, with ``limit=16``) value: one value, cut to fit."""
    return text_value(text).replace("\\", "/").strip()[:limit]


def frame_count(ds: Dataset) -> int:
    """Number of frames of an image (1 for single-frame images)."""
    return int(ds.get("NumberOfFrames") or 1)


def index_sources(sources: Sequence[Dataset]) -> dict[str, Dataset]:
    """Source images by SOP Instance UID, checked to be one study.

    Raises
    ------
    ResultError
        If ``sources`` is empty or spans several studies.
    """
    if not sources:
        raise ResultError(
            "no source images were passed; pass the datasets of every image in "
            "prediction.images (headers are enough for the SR)"
        )
    studies = {str(ds.StudyInstanceUID) for ds in sources}
    if len(studies) != 1:
        raise ResultError(
            f"source images span {len(studies)} studies; a result belongs to one study, "
            "so pass only that study's images"
        )
    return {str(ds.SOPInstanceUID): ds for ds in sources}


def _raw_copy(ds: Dataset, into: D, skip: BaseTag | None = None) -> D:
    """``into`` with a copy of each element of ``ds`` (but ``skip``); an element still raw
    stays raw: iterating would decode every value (a 300-slice series: 1.2 s of pydicom
    conversions, most of them of attributes nobody reads)."""
    for tag in ds.keys():  # noqa: SIM118 - iterating a Dataset decodes its elements
        if tag != skip:
            element = ds.get_item(tag)
            into[tag] = element if isinstance(element, RawDataElement) else copy.copy(element)
    return into


def headers(sources: Sequence[Dataset]) -> list[Dataset]:
    """Copies of the sources without pixel data, missing type 2 attributes present but empty.

    highdicom copies patient and study from these; an absent type 2 attribute becomes an
    empty one ("unknown"), as PS3.3 allows, instead of an AttributeError.
    """
    copies = []
    for ds in sources:
        header = _raw_copy(ds, Dataset(), skip=_PIXEL_DATA)
        for keyword in _TYPE_2:
            if keyword not in header:
                setattr(header, keyword, "")
        if hasattr(ds, "file_meta"):
            header.file_meta = _raw_copy(ds.file_meta, FileMetaDataset())
        copies.append(header)
    return copies


def source_for(image: ImageRef, by_uid: dict[str, Dataset]) -> Dataset:
    """The source dataset an :class:`ImageRef` names.

    Raises
    ------
    ResultError
        If the image is not among the sources, or its frame number does not exist.
    """
    ds = by_uid.get(image.sop_instance_uid)
    if ds is None:
        raise ResultError(
            f"the prediction refers to image {ref(image.sop_instance_uid)} (digest), which "
            "is not among the sources passed; pass every image in prediction.images"
        )
    frames = frame_count(ds)
    if not 1 <= image.frame <= frames:
        raise ResultError(
            f"the prediction refers to frame {image.frame} of image "
            f"{ref(image.sop_instance_uid)}, which has {frames} frame(s) (numbered from 1)"
        )
    return ds


def algorithm_parameters(ctx: ResultContext) -> dict[str, str]:
    """The parameters recorded with the algorithm identification (weights hash first)."""
    parameters = {"weights_sha256": ctx.weights_sha256, "task": ctx.task}
    if ctx.operating_point:
        parameters["operating_point"] = ctx.operating_point
    return parameters


def contributing_equipment(ctx: ResultContext) -> ContributingEquipment:
    """The model as Contributing Equipment (0018,A001): who made this object, and how.

    The weight hash goes in Device Serial Number (LO holds exactly 64 characters): the
    weights are what makes one copy of a model differ from another.
    """
    return ContributingEquipment(
        manufacturer=long_string(ctx.manufacturer),
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=long_string(ctx.model_name),
        software_versions=long_string(ctx.model_version),
        device_serial_number=ctx.weights_sha256,
        institution_name=long_string(ctx.institution_name) if ctx.institution_name else None,
        contribution_datetime=datetime.datetime.now(datetime.UTC),
        contribution_description=(
            f"AI result of model {text_value(ctx.model_label)} "
            f"(weights sha256 {ctx.weights_sha256}), written by radpilot {__version__}"
        )[:1024],
    )


@contextmanager
def building(what: str) -> Iterator[None]:
    """Turn highdicom's refusal of the sources into a :class:`ResultError`.

    Raises
    ------
    ResultError
        If the block raises ValueError, TypeError, AttributeError, KeyError or
        IndexError; UIDs in the message are masked (they may identify a study).
    """
    try:
        yield
    except ResultError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        reason = _UID_LIKE.sub("<uid>", str(exc))[:300]
        raise ResultError(
            f"could not build the {what} from these sources ({type(exc).__name__}: {reason}); "
            "check that they are complete image headers of one study"
        ) from exc
