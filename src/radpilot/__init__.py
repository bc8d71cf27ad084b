"""radpilot: AI for diagnostic imaging, from DICOM intake to the radiologist's worklist."""

__version__ = "0.1.0"
__all__ = ["__version__"]
