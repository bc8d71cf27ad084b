"""The FastAPI app: worklist and feedback API (and, later, pages and DICOMweb)."""
