"""De-identification: DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile.

Table E.1-1 (edition: ``load_table().edition``) with the options Retain Longitudinal
Temporal Information with Modified Dates, Retain Patient Characteristics, Retain Device
Identity and Clean Descriptors; keyed pseudonyms (HMAC-SHA256) for UIDs and patient
identifiers; quarantine for objects that may carry burned-in identifiers. See
``docs/deid.md``. Typical use::

    deidentifier = Deidentifier(key, settings.deid_options)
    result = deidentifier.deidentify(ds)  # ds changed in place
    if result.quarantine_reason is None: ...
"""

from radpilot.dicom.deid.engine import Deidentifier, DeidResult, SafePrivateTag
from radpilot.dicom.deid.profile import Action, load_table
from radpilot.dicom.deid.pseudonym import Pseudonymizer
from radpilot.dicom.deid.quarantine import quarantine_reason
from radpilot.dicom.deid.record import DeidRunRecord
from radpilot.dicom.deid.tree import RECORD_NAME, DeidTreeError, deidentify_tree

__all__ = [
    "RECORD_NAME",
    "Action",
    "DeidResult",
    "DeidRunRecord",
    "DeidTreeError",
    "Deidentifier",
    "Pseudonymizer",
    "SafePrivateTag",
    "deidentify_tree",
    "load_table",
    "quarantine_reason",
]
