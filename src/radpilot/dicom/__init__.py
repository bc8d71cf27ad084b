"""DICOM at radpilot's edges: reading, the receiver, intake, indexing, de-identification.

Import the submodules you need (``radpilot.dicom.scp``, ``radpilot.dicom.intake``, ...);
this package imports nothing heavy on its own.
"""
