"""Which objects are held back for review instead of being passed on de-identified.

Header de-identification cannot see text burned into the pixels or a face in a photograph.
Objects that may carry either are quarantined, by these rules (``docs/deid.md``):

1. ``BurnedInAnnotation`` is ``YES``, or ``RecognizableVisualFeatures`` is ``YES``;
2. always, whatever those flags say: encapsulated documents (PDF, CDA, STL, OBJ, MTL),
   video, photographs (VL Photographic, Dermoscopic) and surface scans, whose content
   itself identifies or whose flags are rarely reliable;
3. unless ``BurnedInAnnotation`` is explicitly ``NO``: ultrasound, secondary capture and
   other visible-light SOP classes, and the modalities where burned-in text is common
   (US, OT, SC, XC, ES, GM, SM, OP, DOC);
4. an object without a SOP Class UID (when in doubt, quarantine).

The reasons are short, fixed, PHI-free sentences, so that the per-run record can count
them.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import UID

__all__ = ["quarantine_reason"]

_ALWAYS_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF, CDA, STL, OBJ, MTL
)
_ALWAYS = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic
        "1.2.840.10008.5.1.4.1.1.77.1.2.1",  # Video Microscopic
        "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic
        "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic
        "1.2.840.10008.5.1.4.1.1.77.1.7",  # Dermoscopic Photography
        "1.2.840.10008.5.1.4.1.1.68.1",  # Surface Scan Mesh
        "1.2.840.10008.5.1.4.1.1.68.2",  # Surface Scan Point Cloud
    }
)
_UNLESS_NO_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.77.",  # visible light: endoscopy, microscopy, ophthalmic
)
_UNLESS_NO = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
        "1.2.840.10008.5.1.4.1.1.3",  # US Multi-frame (retired)
        "1.2.840.10008.5.1.4.1.1.3.1",  # US Multi-frame
        "1.2.840.10008.5.1.4.1.1.6",  # US (retired)
        "1.2.840.10008.5.1.4.1.1.6.1",  # US
        "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume
        "1.2.840.10008.5.1.4.1.1.6.3",  # Photoacoustic
    }
)
_UNLESS_NO_MODALITIES = frozenset({"US", "OT", "SC", "XC", "ES", "GM", "SM", "OP", "DOC"})


def _flag(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return str(value or "").strip().upper()


def _class_name(sop_class: str) -> str:
    name = UID(sop_class).name
    return name if name != sop_class else "an unknown SOP class"


def quarantine_reason(ds: Dataset) -> str | None:
    """Why ``ds`` must be held back for review, or ``None`` if it may pass (see module)."""
    burned_in = _flag(ds, "BurnedInAnnotation")
    if burned_in == "YES":
        return "BurnedInAnnotation is YES"
    if _flag(ds, "RecognizableVisualFeatures") == "YES":
        return "RecognizableVisualFeatures is YES"
    sop_class = str(ds.get("SOPClassUID") or "").strip()
    if not sop_class:
        return "no SOP Class UID: cannot tell whether the pixels carry identifiers"
    if sop_class in _ALWAYS or sop_class.startswith(_ALWAYS_PREFIXES):
        return f"{_class_name(sop_class)}: content may identify the patient"
    if burned_in == "NO":
        return None
    if sop_class in _UNLESS_NO or sop_class.startswith(_UNLESS_NO_PREFIXES):
        return f"{_class_name(sop_class)} without BurnedInAnnotation NO"
    modality = _flag(ds, "Modality")
    if modality in _UNLESS_NO_MODALITIES:
        return f"modality {modality} without BurnedInAnnotation NO"
    return None
