"""Structured logging that never carries health data.

Console rendering in a terminal, JSON lines otherwise; the standard library's loggers (the
Temporal SDK's among them) go through the same pipeline. A processor drops any field whose
name says it holds a person's details, so a careless `log.info(..., phone=...)` leaks nothing.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

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


@functools.cache
def forward_core_logs() -> None:
    """Send the Temporal SDK core's own log lines (Rust) through Python's logging.

    Left to itself, the default runtime writes them to stderr with terminal colour codes,
    tty or not (into pipes, files and pytest's output). Set once per process, before the
    default runtime is first used; a process that already used it keeps it. The worker's
    runtime forwards them too (`temporal_client.service_runtime`).
    """
    runtime = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )))
    try:
        Runtime.set_default(runtime)
    except RuntimeError:  # already set or used: leave it
        return


def configure_logging(
    log_format: str = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging through one redacting pipeline into `stream`.

    The Temporal SDK core's log lines join it (`forward_core_logs`).
    """
    forward_core_logs()
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
