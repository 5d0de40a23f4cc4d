"""The HTTP API: the scheduling system's, clinicians' and auditors' way in over HTTP."""
