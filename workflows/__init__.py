"""Temporal workflows: orchestration only, deterministic, reading like the protocol."""

from workflows.session import SessionWorkflow

__all__ = ["SessionWorkflow"]
