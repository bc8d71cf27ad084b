"""A prediction as a DICOM Comprehensive SR: a TID 1500 Measurement Report (highdicom).

Layout of the content tree (PS3.16 TID 1500)::

    Imaging Measurement Report
      language, observation context: device observer = the model (TID 1004)
      procedure reported (CID 100, from the modality)
      Image Library: one entry per source image (TID 1600)
      Imaging Measurements
        Measurement Group per finding (TID 1501)
          tracking identifier = the label, tracking UID (deterministic)
          finding = the label's concept; algorithm identification (TID 4019)
          Score (NUM, unit 1), Threshold Value (NUM, unit 1) for the operating point
          CAD Operating Point Description (TEXT) = the operating point's name
          qualitative evaluation: <label> = Present / Absent / Presence Undetermined
          source image(s): the key image, or all images
        Measurement Group per box (TID 1410): closed POLYLINE on its image, score
        Measurement Group for measurements: one NUM per measurement, UCUM unit, image

ComprehensiveSR rather than Comprehensive3DSR: every coordinate radpilot writes is a
2D pixel coordinate (SCOORD), and Comprehensive SR is the class PACS and viewers support
most widely. A model that reports patient coordinates (SCOORD3D) would need the 3D class.
"""

from __future__ import annotations

from collections.abc import Sequence

from highdicom.sr import (
    CodedConcept,
    ComprehensiveSR,
    DeviceObserverIdentifyingAttributes,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from radpilot.models.prediction import Prediction
from radpilot.results.coding import private_scheme_identification, text_value
from radpilot.results.common import (
    CHARSET,
    building,
    contributing_equipment,
    headers,
    index_sources,
    long_string,
    source_for,
)
from radpilot.results.context import ResultContext, ResultError, ResultKind
from radpilot.results.library import library_headers
from radpilot.results.sr_groups import box_group, finding_group, measurement_group

__all__ = ["build_sr"]

_Group = MeasurementsAndQualitativeEvaluations | PlanarROIMeasurementsAndQualitativeEvaluations

_PROCEDURES = {
    "CT": codes.cid100.CTUnspecifiedBodyRegion,
    "MR": codes.cid100.MRIUnspecifiedBodyRegion,
    "PT": codes.cid100.PETUnspecifiedBodyRegion,
    "NM": codes.cid100.NMUnspecifiedBodyRegion,
    **{m: codes.cid100.XRUnspecifiedBodyRegion for m in ("CR", "DX", "MG", "RF", "XA", "IO")},
}


def _procedure(sources: Sequence[Dataset]) -> CodedConcept:
    code = _PROCEDURES.get(str(sources[0].get("Modality", "")), codes.SCT.ImagingProcedure)
    return CodedConcept.from_code(code)


def build_sr(
    prediction: Prediction, sources: Sequence[Dataset], ctx: ResultContext
) -> ComprehensiveSR:
    """Write a prediction as a TID 1500 Comprehensive SR in the sources' study.

    Parameters
    ----------
    prediction
        What the model said; every image it refers to must be among ``sources``.
    sources
        The source images (headers suffice): patient and study attributes are copied
        from the first, and all are listed as evidence and in the image library.
    ctx
        The model and job; names the device observer and gives the UIDs.

    Returns
    -------
    highdicom.sr.ComprehensiveSR
        A pydicom Dataset with file meta, ready for ``dcmwrite(..., enforce_file_format=True)``.

    Raises
    ------
    ResultError
        If the prediction has nothing to report (no findings, boxes or measurements),
        refers to an image not in ``sources``, the sources span several studies, or a
        measurement unit is not UCUM, or highdicom refuses the sources.
    """
    by_uid = index_sources(sources)
    if not (prediction.findings or prediction.boxes or prediction.measurements):
        raise ResultError(
            "the prediction has no findings, boxes or measurements: there is nothing for "
            "an SR to say (enhancement results are written with build_derived_series)"
        )
    for image in [*prediction.images, *([prediction.key_image] if prediction.key_image else [])]:
        source_for(image, by_uid)
    with building("SR"):
        groups: list[_Group] = [
            finding_group(i, f, prediction, by_uid, ctx) for i, f in enumerate(prediction.findings)
        ]
        groups += [box_group(i, box, by_uid, ctx) for i, box in enumerate(prediction.boxes)]
        if prediction.measurements:
            groups.append(measurement_group(prediction, by_uid, ctx))
        observer = ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
                uid=ctx.device_uid,
                name=text_value(ctx.model_label),
                manufacturer_name=text_value(ctx.manufacturer),
                model_name=text_value(ctx.model_name),
                serial_number=ctx.weights_sha256,
            ),
        )
        context = ObservationContext(observer_device_context=observer)

        def measurement_report(probe_all: bool) -> MeasurementReport:
            return MeasurementReport(
                observation_context=context,
                procedure_reported=_procedure(sources),
                imaging_measurements=groups,
                referenced_images=library_headers(sources, probe_all=probe_all),
            )

        try:
            report = measurement_report(probe_all=False)
        except (ValueError, TypeError, AttributeError, KeyError):  # a slice unlike the first
            report = measurement_report(probe_all=True)
        sr = ComprehensiveSR(
            evidence=headers(sources),
            content=report[0],
            series_instance_uid=ctx.uid("sr-series"),
            series_number=ctx.series_number(ResultKind.SR),
            sop_instance_uid=ctx.uid("sr"),
            instance_number=1,
            manufacturer=long_string(ctx.manufacturer),
            is_complete=True,
            is_final=False,  # PRELIMINARY: an AI result until a radiologist confirms it
            is_verified=False,
            institution_name=long_string(ctx.institution_name) if ctx.institution_name else None,
            contributing_equipment=[contributing_equipment(ctx)],
            series_description=long_string(f"AI {ctx.model_label} SR"),
            specific_character_set=CHARSET,
        )
        sr.CodingSchemeIdentificationSequence = [private_scheme_identification()]
        return sr
