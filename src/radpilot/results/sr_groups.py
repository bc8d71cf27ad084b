"""TID 1501 / TID 1410 measurement groups of the SR: one per finding, box, measurement set.

See :mod:`radpilot.results.sr` for the layout of the whole report.
"""

from __future__ import annotations

import numpy as np
from highdicom.sr import (
    AlgorithmIdentification,
    GraphicTypeValues,
    ImageRegion,
    Measurement,
    MeasurementsAndQualitativeEvaluations,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    RelationshipTypeValues,
    SourceImageForMeasurement,
    SourceImageForMeasurementGroup,
    SourceImageForRegion,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from radpilot.models.prediction import Box, Finding, ImageRef, Prediction
from radpilot.results.coding import (
    SCORE,
    UNITLESS,
    label_concept,
    measurement_concept,
    presence_concept,
    text_value,
    unit_concept,
)
from radpilot.results.common import algorithm_parameters, frame_count, source_for
from radpilot.results.context import ResultContext, ResultError

__all__ = ["box_group", "finding_group", "measurement_group"]


def _frames(image: ImageRef, ds: Dataset) -> list[int] | None:
    # Frame numbers are only meaningful (and only allowed) for multi-frame images.
    return [image.frame] if frame_count(ds) > 1 else None


def _algorithm(ctx: ResultContext) -> AlgorithmIdentification:
    parameters = [f"{k}={v}" for k, v in algorithm_parameters(ctx).items()]
    return AlgorithmIdentification(
        name=text_value(ctx.model_name),
        version=text_value(ctx.model_version),
        parameters=parameters,
        manufacturer=text_value(ctx.manufacturer),
    )


def _score(
    value: float,
    algorithm: AlgorithmIdentification,
    images: list[ImageRef],
    by_uid: dict[str, Dataset],
) -> Measurement:
    references = [
        SourceImageForMeasurement(
            referenced_sop_class_uid=image.sop_class_uid,
            referenced_sop_instance_uid=image.sop_instance_uid,
            referenced_frame_numbers=_frames(image, source_for(image, by_uid)),
        )
        for image in images
    ]
    return Measurement(
        name=SCORE,
        value=float(value),
        unit=UNITLESS,
        algorithm_id=algorithm,
        referenced_images=references or None,
    )


def finding_group(
    index: int,
    finding: Finding,
    prediction: Prediction,
    by_uid: dict[str, Dataset],
    ctx: ResultContext,
) -> MeasurementsAndQualitativeEvaluations:
    """TID 1501 group for one finding: score, threshold, operating point, presence.

    Raises
    ------
    ResultError
        If the key image (or an image) of the prediction is not among the sources.
    """
    concept = label_concept(finding.label)
    algorithm = _algorithm(ctx)
    shown = [prediction.key_image] if prediction.key_image else list(prediction.images)
    measurements = [_score(finding.score, algorithm, shown, by_uid)]
    if finding.threshold is not None:
        measurements.append(
            Measurement(name=codes.DCM.ThresholdValue, value=finding.threshold, unit=UNITLESS)
        )
    assessed = finding.threshold is not None or finding.operating_point is not None
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=ctx.uid("sr-finding", index), identifier=text_value(finding.label)
        ),
        finding_type=concept,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[
            QualitativeEvaluation(concept, presence_concept(finding.positive, assessed))
        ],
        source_images=[
            SourceImageForMeasurementGroup(
                referenced_sop_class_uid=image.sop_class_uid,
                referenced_sop_instance_uid=image.sop_instance_uid,
                referenced_frame_numbers=_frames(image, source_for(image, by_uid)),
            )
            for image in shown
        ]
        or None,
    )
    operating_point = finding.operating_point
    if operating_point:
        # TID 1501 is extensible; DCM 111081 names the operating point as CAD SR does.
        group[0].ContentSequence.append(
            TextContentItem(
                name=codes.DCM.CADOperatingPointDescription,
                value=text_value(operating_point),
                relationship_type=RelationshipTypeValues.CONTAINS,
            )
        )
    return group


def box_group(
    index: int, box: Box, by_uid: dict[str, Dataset], ctx: ResultContext
) -> PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410 group for one box: a closed POLYLINE on its image, with the box's score.

    Raises
    ------
    ResultError
        If the box's image is not among the sources.
    """
    ds = source_for(box.image, by_uid)
    x0, x1 = sorted((box.x0, box.x1))
    y0, y1 = sorted((box.y0, box.y1))
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=float)
    region = ImageRegion(
        graphic_type=GraphicTypeValues.POLYLINE,
        graphic_data=corners,
        source_image=SourceImageForRegion(
            referenced_sop_class_uid=box.image.sop_class_uid,
            referenced_sop_instance_uid=box.image.sop_instance_uid,
            referenced_frame_numbers=_frames(box.image, ds),
        ),
    )
    concept = label_concept(box.label)
    algorithm = _algorithm(ctx)
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=ctx.uid("sr-box", index), identifier=text_value(f"{box.label} region {index + 1}")
        ),
        referenced_region=region,
        finding_type=concept,
        algorithm_id=algorithm,
        measurements=[Measurement(name=SCORE, value=float(box.score), unit=UNITLESS)],
        qualitative_evaluations=[QualitativeEvaluation(concept, presence_concept(True, True))],
    )


def measurement_group(
    prediction: Prediction, by_uid: dict[str, Dataset], ctx: ResultContext
) -> MeasurementsAndQualitativeEvaluations:
    """TID 1501 group holding every measurement (TID 300), each with unit and image.

    Raises
    ------
    ResultError
        If a unit is not UCUM or a measurement's image is not among the sources.
    """
    algorithm = _algorithm(ctx)
    measurements = []
    for m in prediction.measurements:
        try:
            unit = unit_concept(m.unit)
        except ValueError as exc:
            raise ResultError(f"measurement {m.name!r}: {exc}") from exc
        images = []
        if m.image is not None:
            images.append(
                SourceImageForMeasurement(
                    referenced_sop_class_uid=m.image.sop_class_uid,
                    referenced_sop_instance_uid=m.image.sop_instance_uid,
                    referenced_frame_numbers=_frames(m.image, source_for(m.image, by_uid)),
                )
            )
        measurements.append(
            Measurement(
                name=measurement_concept(m.name),
                value=float(m.value),
                unit=unit,
                algorithm_id=algorithm,
                referenced_images=images or None,
            )
        )
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=ctx.uid("sr-measurements"), identifier="measurements"
        ),
        algorithm_id=algorithm,
        measurements=measurements,
    )
