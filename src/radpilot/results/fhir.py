"""FHIR R4 pieces of the draft report: codings, quantities, Observations, the model Device.

:func:`radpilot.results.report.fhir_report` assembles them into a DiagnosticReport.
"""

from __future__ import annotations

from typing import Any

from radpilot.models.prediction import Finding, Measurement
from radpilot.results.coding import PRIVATE_SCHEME, label_concept, measurement_concept
from radpilot.results.context import ResultContext

__all__ = [
    "DEVICE_ID",
    "assessed",
    "coding",
    "device",
    "finding_observation",
    "measurement_observation",
    "quantity",
]

_SYSTEMS = {
    "SCT": "http://snomed.info/sct",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "LN": "http://loinc.org",
    PRIVATE_SCHEME: "urn:radpilot:codes",
}
_UCUM = "http://unitsofmeasure.org"
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DEVICE_ID = "model"


def assessed(finding: Finding) -> bool:
    """Whether an operating point was applied (so positive/negative means something)."""
    return finding.threshold is not None or finding.operating_point is not None


def coding(scheme: str, value: str, meaning: str) -> dict[str, str]:
    """A FHIR Coding for a DICOM-style (scheme, value, meaning) code."""
    return {
        "system": _SYSTEMS.get(scheme, f"urn:radpilot:{scheme}"),
        "code": value,
        "display": meaning,
    }


def quantity(value: float, unit: str = "1", display: str = "score") -> dict[str, Any]:
    """A FHIR Quantity in a UCUM unit (``1`` for scores)."""
    return {"value": float(value), "unit": display, "system": _UCUM, "code": unit}


def finding_observation(
    index: int, finding: Finding, subject: dict[str, Any], study: dict[str, Any]
) -> dict[str, Any]:
    """One finding as an Observation: score, POS/NEG where assessed, operating point."""
    concept = label_concept(finding.label)
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"finding-{index + 1}",
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "imaging",
                        "display": "Imaging",
                    }
                ]
            }
        ],
        "code": {
            "coding": [coding(concept.scheme_designator, concept.value, concept.meaning)],
            "text": finding.label,
        },
        "subject": subject,
        "device": {"reference": f"#{DEVICE_ID}"},
        "derivedFrom": [study],
        "valueQuantity": quantity(finding.score),
    }
    if assessed(finding):
        code, display = ("POS", "Positive") if finding.positive else ("NEG", "Negative")
        observation["interpretation"] = [
            {"coding": [{"system": _INTERPRETATION, "code": code, "display": display}]}
        ]
    components: list[dict[str, Any]] = []
    if finding.threshold is not None:
        components.append(
            {
                "code": {
                    "coding": [coding("DCM", "122411", "Threshold Value")],
                    "text": "operating point threshold",
                },
                "valueQuantity": quantity(finding.threshold),
            }
        )
    if finding.operating_point:
        components.append(
            {
                "code": {
                    "coding": [coding("DCM", "111081", "CAD Operating Point Description")],
                    "text": "operating point",
                },
                "valueString": finding.operating_point,
            }
        )
    if components:
        observation["component"] = components
    return observation


def measurement_observation(
    index: int, m: Measurement, subject: dict[str, Any], study: dict[str, Any]
) -> dict[str, Any]:
    """One measurement as an Observation with its UCUM unit."""
    concept = measurement_concept(m.name)
    return {
        "resourceType": "Observation",
        "id": f"measurement-{index + 1}",
        "status": "preliminary",
        "code": {
            "coding": [coding(concept.scheme_designator, concept.value, concept.meaning)],
            "text": m.name,
        },
        "subject": subject,
        "device": {"reference": f"#{DEVICE_ID}"},
        "derivedFrom": [study],
        "valueQuantity": quantity(m.value, m.unit, m.unit),
    }


def device(ctx: ResultContext) -> dict[str, Any]:
    """The model as a contained FHIR Device: manufacturer, name, version, weight hash."""
    return {
        "resourceType": "Device",
        "id": DEVICE_ID,
        "manufacturer": ctx.manufacturer,
        "deviceName": [{"name": ctx.model_name, "type": "model-name"}],
        "modelNumber": ctx.model_name,
        "type": {"text": f"AI model ({ctx.task})"},
        "version": [
            {"type": {"text": "model version"}, "value": ctx.model_version},
            {"type": {"text": "weights sha256"}, "value": ctx.weights_sha256},
        ],
    }
