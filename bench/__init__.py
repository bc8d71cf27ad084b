"""Benchmarks of radpilot against real DICOM peers (dcmtk, Orthanc); see ``bench/README.md``."""
