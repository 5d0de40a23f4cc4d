"""Translators between the client directory and the health-care standards (FHIR, HL7 v2)."""
