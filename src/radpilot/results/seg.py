"""A segmentation prediction as a DICOM Segmentation (highdicom), BINARY, one segment per label.

Only labels with at least one pixel set become segments (an empty segment tells a viewer
nothing and some reject it); frames with no pixel in any segment are left out, as highdicom
does by default. The segments name the model (Algorithm Identification Sequence: name,
version, family "Artificial Intelligence", parameters with the weight hash) and are
``AUTOMATIC``. Masks are over ``prediction.images``: either single-frame images of one
series, or every frame of one multi-frame image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from highdicom import AlgorithmIdentificationSequence
from highdicom.seg import (
    SegmentAlgorithmTypeValues,
    Segmentation,
    SegmentationTypeValues,
    SegmentDescription,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from radpilot.models.prediction import Prediction
from radpilot.results.coding import (
    label_concept,
    private_scheme_identification,
    segment_category,
    text_value,
)
from radpilot.results.common import (
    CHARSET,
    algorithm_parameters,
    building,
    contributing_equipment,
    frame_count,
    headers,
    index_sources,
    long_string,
    source_for,
)
from radpilot.results.context import ResultContext, ResultError, ResultKind

__all__ = ["build_seg", "has_segments"]


def has_segments(prediction: Prediction) -> bool:
    """Whether :func:`build_seg` has anything to write (some mask has a pixel set)."""
    return any(bool(np.any(mask)) for mask in prediction.masks.values())


def _ordered_sources(
    prediction: Prediction, by_uid: dict[str, Dataset]
) -> tuple[list[Dataset], list[int]]:
    """The source images for highdicom, and the order of mask frames that matches them."""
    datasets = [source_for(image, by_uid) for image in prediction.images]
    uids = [image.sop_instance_uid for image in prediction.images]
    if len(set(uids)) == 1 and frame_count(datasets[0]) > 1:
        frames = [image.frame for image in prediction.images]
        if sorted(frames) != list(range(1, frame_count(datasets[0]) + 1)):
            raise ResultError(
                "the masks cover only some frames of a multi-frame image; a SEG over a "
                "multi-frame image needs one mask frame for each of its frames"
            )
        return [datasets[0]], sorted(range(len(frames)), key=frames.__getitem__)
    if len(set(uids)) != len(uids) or any(frame_count(ds) > 1 for ds in datasets):
        raise ResultError(
            "the masks mix frames of multi-frame images with other images; segment "
            "either single-frame images of one series or every frame of one image"
        )
    if len({str(ds.SeriesInstanceUID) for ds in datasets}) != 1:
        raise ResultError(
            "the masks span several series; a DICOM SEG refers to one series, so run "
            "one build_seg per series"
        )
    return datasets, list(range(len(datasets)))


def _algorithm(ctx: ResultContext) -> AlgorithmIdentificationSequence:
    return AlgorithmIdentificationSequence(
        name=long_string(ctx.model_name),
        family=codes.cid7162.ArtificialIntelligence,
        version=long_string(ctx.model_version),
        source=long_string(ctx.manufacturer),
        parameters=algorithm_parameters(ctx),
    )


def build_seg(
    prediction: Prediction, sources: Sequence[Dataset], ctx: ResultContext
) -> Segmentation:
    """Write the prediction's masks as a BINARY DICOM Segmentation.

    Parameters
    ----------
    prediction
        Holds ``masks`` (label -> bool array (frames, rows, cols) over ``images``).
    sources
        The source images with pixel geometry (position, orientation, spacing); the
        SEG copies patient, study and frame of reference from them.
    ctx
        The model and job: UIDs, series number, algorithm identification.

    Returns
    -------
    highdicom.seg.Segmentation
        A pydicom Dataset with file meta, ready for ``dcmwrite(..., enforce_file_format=True)``.

    Raises
    ------
    ResultError
        If the prediction has no masks, no mask has any pixel set (check with
        :func:`has_segments` first), a mask's shape does not fit the images, or the
        images are not one series (or all frames of one multi-frame image), or
        highdicom refuses the sources.
    """
    if not prediction.masks:
        raise ResultError(
            "the prediction has no masks; build_seg is for segmentation results "
            "(write classification and detection results with build_sr)"
        )
    if not has_segments(prediction):
        raise ResultError(
            "no mask has any pixel set, so there is no segment to write; check "
            "has_segments(prediction) before calling build_seg"
        )
    by_uid = index_sources(sources)
    datasets, order = _ordered_sources(prediction, by_uid)
    rows, columns = int(datasets[0].Rows), int(datasets[0].Columns)
    labels = [label for label, mask in prediction.masks.items() if np.any(mask)]
    planes: list[npt.NDArray[np.bool_]] = []
    for label in labels:
        mask = np.asarray(prediction.masks[label], dtype=bool)
        if mask.shape != (len(prediction.images), rows, columns):
            raise ResultError(
                f"mask {label!r} has shape {mask.shape}; the images need "
                f"({len(prediction.images)}, {rows}, {columns})"
            )
        planes.append(mask[order])
    descriptions = [
        SegmentDescription(
            segment_number=number,
            segment_label=long_string(label) or f"segment {number}",
            segmented_property_category=segment_category(label),
            segmented_property_type=label_concept(label),
            algorithm_type=SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=_algorithm(ctx),
            tracking_uid=ctx.uid("seg-segment", number),
            tracking_id=long_string(label) or f"segment {number}",
        )
        for number, label in enumerate(labels, start=1)
    ]
    with building("SEG"):
        seg = Segmentation(
            source_images=headers(datasets),
            pixel_array=np.stack(planes, axis=-1),
            segmentation_type=SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=ctx.uid("seg-series"),
            series_number=ctx.series_number(ResultKind.SEG),
            sop_instance_uid=ctx.uid("seg"),
            instance_number=1,
            manufacturer=long_string(ctx.manufacturer),
            manufacturer_model_name=long_string(ctx.model_name),
            software_versions=long_string(ctx.model_version),
            device_serial_number=ctx.weights_sha256,
            content_label="AI_SEGMENTATION",
            content_description=long_string(text_value(f"AI {ctx.model_label}")),
            series_description=long_string(f"AI {ctx.model_label} SEG"),
            contributing_equipment=[contributing_equipment(ctx)],
            specific_character_set=CHARSET,
        )
        seg.CodingSchemeIdentificationSequence = [private_scheme_identification()]
        return seg
