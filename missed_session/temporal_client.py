"""How every entry point connects to Temporal, so they agree on the data converter."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from missed_session.config import Settings

DATA_CONVERTER = pydantic_data_converter
"""Payloads are pydantic models as JSON; the worker, starter and replayer share it."""


async def connect(settings: Settings) -> Client:
    """A client for the configured server and namespace."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
    )
