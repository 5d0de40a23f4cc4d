"""Missed-session response: a therapist's no-show protocol as durable Temporal workflows."""
