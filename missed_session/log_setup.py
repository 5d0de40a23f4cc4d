"""Structured logging that never carries health data.

Console rendering in a terminal, JSON lines otherwise; the standard library's loggers (the
Temporal SDK's among them) go through the same pipeline. A processor drops any field whose
name says it holds a person's details, so a careless `log.info(..., phone=...)` leaks nothing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"
HEALTH_DATA_KEYS = frozenset(
    {"first_name", "name", "phone", "email", "note", "to", "to_number", "body", "text",
     "client", "emergency_contact", "contact", "address"}
)
"""Field names that may hold a person's details; their values never reach a log."""


def redact_health_data(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of every field named in HEALTH_DATA_KEYS."""
    for key in HEALTH_DATA_KEYS.intersection(event_dict):
        event_dict[key] = REDACTED
    return event_dict


def configure_logging(
    log_format: str = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging through one redacting pipeline into `stream`."""
    out = stream or sys.stderr
    use_console = log_format == "console" or (log_format == "auto" and out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_health_data,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
