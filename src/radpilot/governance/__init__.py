"""Model lifecycle, the hash-chained audit log, approvals and dossiers."""
