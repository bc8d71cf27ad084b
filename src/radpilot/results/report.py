"""Draft report snippets for reporting systems: plain text and FHIR R4 JSON.

A RIS or reporting tool that does not read DICOM SR fetches these: the plain text can be
pasted into a report draft, the FHIR DiagnosticReport (status ``preliminary``) carries the
same findings as contained Observations, one per finding and measurement, each with its
score as a ``valueQuantity`` and POS/NEG as interpretation where an operating point was
applied. The model appears as a contained Device with its version and weight hash. The
patient is referenced by identifier only (the pseudonymous ID radpilot holds), the study
by its Study Instance UID (``urn:dicom:uid`` / ``urn:oid:``), as FHIR ImagingStudy does.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from typing import Any

from radpilot.models.prediction import Finding, Prediction
from radpilot.results.context import ResultContext
from radpilot.results.fhir import (
    assessed,
    coding,
    device,
    finding_observation,
    measurement_observation,
)

__all__ = ["DISCLAIMER", "StudyInfo", "fhir_report", "report_text"]

DISCLAIMER = "Preliminary AI result, to be confirmed by a radiologist."


@dataclass(frozen=True)
class StudyInfo:
    """The study a report is about, as the database indexes it (no names, no birth dates)."""

    study_instance_uid: str
    accession_number: str | None
    patient_id: str  # the pseudonymous patient identifier radpilot holds
    study_date: str | None  # DICOM DA, YYYYMMDD
    modality: str | None


def _date(value: str | None) -> str | None:
    try:
        return datetime.datetime.strptime(value or "", "%Y%m%d").date().isoformat()
    except ValueError:
        return None


def _finding_line(finding: Finding) -> str:
    if assessed(finding):
        verdict = "POSITIVE" if finding.positive else "negative"
        if finding.critical and finding.positive:
            verdict = "CRITICAL, POSITIVE"
        parts = [f"score {finding.score:.2f}"]
        if finding.operating_point:
            parts.append(f'operating point "{finding.operating_point}"')
        if finding.threshold is not None:
            parts.append(f"threshold {finding.threshold:.2f}")
        return f"  - {finding.label}: {verdict} ({', '.join(parts)})"
    return f"  - {finding.label}: score {finding.score:.2f} (no operating point applied)"


def report_text(prediction: Prediction, ctx: ResultContext, study: StudyInfo) -> str:
    """A plain-text draft report snippet for a RIS or reporting tool.

    Parameters
    ----------
    prediction
        The result to describe.
    ctx
        The model: its name, version and weight hash are stated.
    study
        Modality, date and accession number are stated; the patient is not named.

    Returns
    -------
    str
        Lines separated by ``\\n``, ending with the statement that it is preliminary.
    """
    lines = [
        f"AI DRAFT REPORT - {DISCLAIMER}",
        f"Model: {ctx.model_label} ({ctx.task}; weights sha256 {ctx.weights_sha256[:12]})",
    ]
    described = [p for p in (study.modality, _date(study.study_date)) if p]
    if study.accession_number:
        described.append(f"accession {study.accession_number}")
    if described:
        lines.append(f"Study: {', '.join(described)}")
    if prediction.findings:
        lines.append("Findings:")
        lines += [_finding_line(f) for f in prediction.findings]
    if prediction.boxes:
        lines.append(f"Regions marked: {len(prediction.boxes)}")
        lines += [f"  - {b.label}: score {b.score:.2f}" for b in prediction.boxes]
    if prediction.measurements:
        lines.append("Measurements:")
        lines += [f"  - {m.name}: {m.value:g} {m.unit}" for m in prediction.measurements]
    segmented = [label for label, mask in prediction.masks.items() if mask.any()]
    if segmented:
        lines.append(f"Segmented: {', '.join(segmented)}")
    if prediction.enhanced is not None:
        lines.append("Processed images: a derived series next to the originals")
    if not (prediction.findings or prediction.boxes or prediction.measurements or segmented):
        lines.append("No findings reported by the model.")
    lines.append(f"{DISCLAIMER} Not for primary diagnosis.")
    return "\n".join(lines) + "\n"


def fhir_report(prediction: Prediction, ctx: ResultContext, study: StudyInfo) -> dict[str, Any]:
    """A FHIR R4 DiagnosticReport (preliminary) with contained Observations and Device.

    Parameters
    ----------
    prediction
        The result to describe.
    ctx
        The model (contained Device) and the deterministic report id.
    study
        The study (``imagingStudy`` by Study Instance UID) and the patient identifier.

    Returns
    -------
    dict
        JSON-ready (``json.dumps`` works on it) ``DiagnosticReport`` resource.
    """
    subject = {
        "type": "Patient",
        "identifier": {"system": "urn:radpilot:patient-id", "value": study.patient_id},
    }
    imaging_study = {
        "type": "ImagingStudy",
        "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{study.study_instance_uid}"},
    }
    observations = [
        finding_observation(i, f, subject, imaging_study) for i, f in enumerate(prediction.findings)
    ] + [
        measurement_observation(i, m, subject, imaging_study)
        for i, m in enumerate(prediction.measurements)
    ]
    text = report_text(prediction, ctx, study)
    headline = prediction.headline
    conclusion = (
        f"AI {ctx.model_label}: "
        + (f"{headline.label} score {headline.score:.2f}" if headline else "no findings")
        + f". {DISCLAIMER}"
    )
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": ctx.uid("fhir-report"),
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{ctx.uid('fhir-report')}"}],
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "RAD",
                        "display": "Radiology",
                    }
                ]
            }
        ],
        "code": {
            "coding": [coding("LN", "18748-4", "Diagnostic imaging study")],
            "text": f"AI result: {ctx.model_label}",
        },
        "subject": subject,
        "issued": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "imagingStudy": [imaging_study],
        "conclusion": conclusion,
        "presentedForm": [
            {
                "contentType": "text/plain; charset=utf-8",
                "language": "en",
                "title": "AI draft report (preliminary)",
                "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
            }
        ],
    }
    if study.accession_number:
        report["identifier"].append(
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "code": "ACSN",
                            "display": "Accession ID",
                        }
                    ]
                },
                "value": study.accession_number,
            }
        )
    effective = _date(study.study_date)
    if effective:
        report["effectiveDateTime"] = effective
    if observations:
        report["contained"] = [device(ctx), *observations]
        report["result"] = [{"reference": f"#{o['id']}"} for o in observations]
    return report
