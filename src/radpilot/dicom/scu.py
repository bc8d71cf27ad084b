"""Sending DICOM files to a C-STORE SCP (a PACS, a modality emulator, radpilot itself).

Files travel in their own transfer syntax (no transcoding): the association proposes one
presentation context per (SOP class, transfer syntax) found in the files, and pynetdicom
sends each file's encoded data set without decoding it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE

from radpilot.dicom.requestor import keep_responses

__all__ = ["SendReport", "send_files"]

log = logging.getLogger(__name__)

_MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255


@dataclass
class SendReport:
    """What happened to each file: statuses by value, and files that could not be sent."""

    statuses: Counter[int] = field(default_factory=Counter)
    unsent: Counter[str] = field(default_factory=Counter)

    @property
    def succeeded(self) -> int:
        """Files answered with status 0x0000 (or a warning, 0xB000-0xBFFF)."""
        return sum(n for s, n in self.statuses.items() if s == 0 or 0xB000 <= s <= 0xBFFF)


def send_files(
    files: list[Path],
    host: str,
    port: int,
    *,
    called_ae_title: str,
    calling_ae_title: str = "RADPILOT_SCU",
    timeout: float = 60.0,
) -> SendReport:
    """C-STORE ``files`` to ``host:port``, opening as few associations as contexts allow."""
    report = SendReport()
    groups: dict[tuple[str, str], list[Path]] = {}
    for path in files:
        try:
            meta = read_file_meta_info(path)
            key = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        except (InvalidDicomError, OSError, AttributeError, ValueError) as exc:
            report.unsent[f"no readable file meta ({type(exc).__name__})"] += 1
            continue
        groups.setdefault(key, []).append(path)
    keys = list(groups)
    for start in range(0, len(keys), _MAX_CONTEXTS):
        batch = keys[start : start + _MAX_CONTEXTS]
        ae = AE(ae_title=calling_ae_title)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = timeout
        for sop_class, syntax in batch:
            ae.add_requested_context(sop_class, syntax)
        assoc = keep_responses(ae.associate(host, port, ae_title=called_ae_title))
        if not assoc.is_established:
            report.unsent["association not established"] += sum(len(groups[k]) for k in batch)
            continue
        try:
            for key in batch:
                for path in groups[key]:
                    try:
                        response = assoc.send_c_store(path)
                    except Exception as exc:  # noqa: BLE001 - see below
                        # pynetdicom 3.0.4 raises assorted errors on malformed files (even
                        # UnboundLocalError in send_c_store); one bad file must not stop
                        # the others.
                        report.unsent[f"could not be sent ({type(exc).__name__})"] += 1
                        log.warning("a file could not be sent: %s", type(exc).__name__)
                        continue
                    if "Status" in response:
                        report.statuses[int(response.Status)] += 1
                    else:
                        report.unsent["no response (association lost)"] += 1
        finally:
            if assoc.is_established:
                assoc.release()
    return report
