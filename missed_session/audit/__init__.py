"""Audit history for compliance review: chain verification, replay cross-check, export."""
