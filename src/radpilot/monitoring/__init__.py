"""Monitoring a live model: input drift (headers, image statistics), output drift."""
