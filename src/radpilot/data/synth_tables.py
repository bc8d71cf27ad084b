"""The tables header variety draws from: devices, protocols, sites.

Vendor, model and software strings are spelled as those vendors' devices write them in
DICOM headers (Manufacturer, ManufacturerModelName, SoftwareVersions); the sites and
their fleets are invented. ``NEW_DEVICES`` and ``NEW_PROTOCOLS`` are used only by drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CT_ADULT",
    "CT_CHILD",
    "DEFAULT_DEVICES",
    "DEFAULT_PROTOCOLS",
    "DEVICES",
    "NEW_DEVICES",
    "NEW_PROTOCOLS",
    "SITES",
    "XRAY_ADULT",
    "XRAY_CHILD",
    "Device",
    "Drift",
    "Protocol",
    "Site",
    "SynthModality",
]


class SynthModality(StrEnum):
    """The DICOM Modality defined terms synth writes."""

    CR = "CR"
    DX = "DX"
    CT = "CT"


class Drift(StrEnum):
    """A shift in the header distribution, for drift-detection tests."""

    NEW_SCANNER = "new-scanner"  # a device no baseline site has
    NEW_PROTOCOL = "new-protocol"  # a protocol no baseline study uses


@dataclass(frozen=True)
class Device:
    """One imaging device model, as its headers name it."""

    modality: SynthModality
    manufacturer: str
    model: str
    software: str
    field_mm: float  # x-ray: detector side; CT: reconstruction field of view
    kernel: str = ""  # CT: this vendor's name for a soft-tissue reconstruction kernel
    portable: bool = False


@dataclass(frozen=True)
class Protocol:
    """An acquisition protocol and the descriptions it writes."""

    name: str
    study_description: str
    series_description: str
    body_part: str
    view: str  # ViewPosition for radiographs, "" for CT
    kvp: tuple[float, float]
    exposure: tuple[float, float]  # x-ray: mAs; CT: tube current, mA
    paediatric: bool = False
    kernel: str = ""  # overrides the device's kernel (CT)


@dataclass(frozen=True)
class Site:
    """An invented institution, its station prefix and the devices it owns."""

    institution: str
    code: str
    devices: tuple[str, ...]  # keys of DEVICES
    paediatric: bool = False


CR, DX, CT = SynthModality.CR, SynthModality.DX, SynthModality.CT

DEVICES = {
    "ge-dx": Device(DX, "GE Healthcare", "Discovery XR656", "dm_Platform_release_FW31.1", 430),
    "ge-dx-mobile": Device(
        DX, "GE Healthcare", "Optima XR240amx", "ads_DX_2.3.3", 350, portable=True
    ),
    "siemens-dx": Device(DX, "SIEMENS", "Ysio Max", "VF10E", 430),
    "siemens-dx-mobile": Device(DX, "SIEMENS", "Mobilett Mira Max", "VF11B", 350, portable=True),
    "philips-dx": Device(DX, "Philips Medical Systems", "DigitalDiagnost", "4.3.3", 430),
    "philips-dx-mobile": Device(
        DX, "Philips Medical Systems", "MobileDiagnost wDR", "2.2.1", 350, portable=True
    ),
    "carestream-dx": Device(DX, "Carestream Health", "DRX-Evolution Plus", "5.7.512.2001", 430),
    "canon-dx": Device(DX, "Canon Inc.", "CXDI-710C Wireless", "V3.40", 350, portable=True),
    "fuji-dx": Device(DX, "FUJIFILM Corporation", "FDR D-EVO II", "V10.2", 430),
    "fuji-cr": Device(CR, "FUJIFILM Corporation", "FCR PROFECT CS", "A08-13", 350),
    "carestream-cr": Device(CR, "Carestream Health", "DirectView CR 975", "5.7.412.1000", 350),
    "agfa-cr": Device(CR, "Agfa", "CR 85-X", "NX 3.0.9000", 350),
    "konica-cr": Device(CR, "KONICA MINOLTA", "REGIUS 190", "1.30.0003", 350),
    "siemens-ct": Device(CT, "SIEMENS", "SOMATOM Definition AS+", "syngo CT VA48A", 400, "I30f"),
    "siemens-ct-go": Device(CT, "SIEMENS", "SOMATOM go.Up", "syngo CT VA30A", 400, "Br40"),
    "ge-ct": Device(CT, "GE MEDICAL SYSTEMS", "Revolution CT", "revo_ct_22mw.40", 400, "STANDARD"),
    "ge-ct-vct": Device(CT, "GE MEDICAL SYSTEMS", "LightSpeed VCT", "07MW18.4", 400, "STANDARD"),
    "philips-ct": Device(CT, "Philips", "iCT 256", "4.1.6", 400, "B"),
    "canon-ct": Device(CT, "CANON_MEC", "Aquilion Prime SP", "V10.8", 400, "FC08"),
}

#: Drift.NEW_SCANNER: a vendor or model none of the sites owns.
NEW_DEVICES = {
    DX: Device(DX, "Shimadzu Corporation", "RADspeed Pro", "1.10.2", 430),
    CR: Device(CR, "iCRco", "iCR 3600", "3.2.1", 350),
    CT: Device(CT, "SIEMENS", "NAEOTOM Alpha", "syngo CT VA50A", 400, "Qr40"),
}

XRAY_ADULT = (
    Protocol("CHEST PA", "XR CHEST 1 VIEW", "Chest PA", "CHEST", "PA", (110, 125), (1.0, 4.0)),
    Protocol(
        "CHEST AP PORTABLE",
        "XR CHEST PORTABLE",
        "Chest AP portable",
        "CHEST",
        "AP",
        kvp=(85, 100),
        exposure=(1.6, 3.2),
    ),
)
XRAY_CHILD = Protocol(
    "PAED CHEST AP",
    "XR CHEST PAEDIATRIC",
    "Chest AP paed",
    "CHEST",
    "AP",
    kvp=(60, 80),
    exposure=(0.5, 2.0),
    paediatric=True,
)
CT_ADULT = (
    Protocol(
        "CT ABDOMEN PORTAL VENOUS",
        "CT ABDOMEN W",
        "Abdomen PV",
        "ABDOMEN",
        "",
        kvp=(100, 120),
        exposure=(150, 400),
    ),
    Protocol(
        "CT CHEST ABDOMEN PELVIS",
        "CT CHEST ABD PELVIS W",
        "Body soft tissue",
        "CHESTABDPELVIS",
        "",
        kvp=(120, 120),
        exposure=(200, 450),
    ),
)
CT_CHILD = Protocol(
    "PAED CT ABDOMEN",
    "CT ABDOMEN PAEDIATRIC",
    "Abdomen paed",
    "ABDOMEN",
    "",
    kvp=(80, 100),
    exposure=(60, 150),
    paediatric=True,
)

#: Drift.NEW_PROTOCOL: a protocol no baseline study uses.
_NEW_XRAY = Protocol(
    "CHEST PA HIGH KV LOW DOSE",
    "XR CHEST LOW DOSE",
    "Chest PA LD",
    "CHEST",
    "PA",
    kvp=(133, 150),
    exposure=(0.4, 1.0),
)
NEW_PROTOCOLS = {
    DX: _NEW_XRAY,
    CR: _NEW_XRAY,
    CT: Protocol(
        "CT ABDOMEN DUAL ENERGY",
        "CT ABDOMEN DE",
        "Mono 70 keV",
        "ABDOMEN",
        "",
        kvp=(140, 140),
        exposure=(80, 200),
        kernel="Qr44",
    ),
}

SITES = (
    Site(
        "Northfield General Hospital",
        "NGH",
        ("ge-dx", "ge-dx-mobile", "fuji-cr", "siemens-ct", "ge-ct"),
    ),
    Site(
        "Riverside Children's Hospital",
        "RCH",
        ("philips-dx", "philips-dx-mobile", "agfa-cr", "canon-ct"),
        paediatric=True,
    ),
    Site(
        "Lakeside Imaging Centre",
        "LIC",
        ("carestream-dx", "canon-dx", "carestream-cr", "philips-ct"),
    ),
    Site(
        "Eastgate University Hospital",
        "EUH",
        ("siemens-dx", "siemens-dx-mobile", "fuji-dx", "konica-cr", "siemens-ct-go", "ge-ct-vct"),
    ),
)

#: Without header variety: the fixed, plainly synthetic header.
DEFAULT_DEVICES = {
    DX: Device(DX, "radpilot synth", "pneumoniamnist-upsampled", "", 0.0),
    CR: Device(CR, "radpilot synth", "pneumoniamnist-upsampled", "", 0.0),
    CT: Device(CT, "radpilot synth", "ct-phantom", "", 400, "SOFT"),
}
_DEFAULT_XRAY = Protocol("", "XR CHEST 1 VIEW", "CHEST PA", "CHEST", "PA", (90, 90), (0, 0))
DEFAULT_PROTOCOLS = {
    DX: _DEFAULT_XRAY,
    CR: _DEFAULT_XRAY,
    CT: Protocol("", "CT ABDOMEN", "ABDOMEN SOFT TISSUE", "ABDOMEN", "", (120, 120), (200, 200)),
}
