"""Structured logging that never carries health data.

Console rendering in a terminal, JSON lines otherwise; the standard library's loggers (the
Temporal SDK's among them) go through the same pipeline. A processor drops any field whose
name says it holds a person's details, so a careless `log.info(..., phone=...)` leaks nothing.

The servers' own loggers (uvicorn, aiohttp, asyncio, the `hl7` package's MLLP streams) log
errors with tracebacks and format their messages with whatever a request carried; a filter
keeps only their fixed message's first line and the error's type (`error_type`).
"""

from __future__ import annotations

import functools
import json
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
     "client", "emergency_contact", "contact", "address", "postal_address", "recipient"}
)
"""Field names that may hold a person's details; their values never reach a log."""


def redact_health_data(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of every field named in HEALTH_DATA_KEYS."""
    for key in HEALTH_DATA_KEYS.intersection(event_dict):
        event_dict[key] = REDACTED
    return event_dict


SERVER_LOGGERS = frozenset(
    {"uvicorn", "aiohttp", "asyncio", "hl7", "starlette", "fastapi", "h11", "httptools",
     "websockets"})
"""Top-level names of loggers of the servers the project runs, not written by it."""


class ServerErrorFilter(logging.Filter):
    """A server's record keeps its fixed message (first line, unformatted) and error type.

    No traceback (its messages may quote a request: pydantic's `input_value`, a JSON
    parser's excerpt, an HL7 segment), no stack, no formatting arguments (a peer's request
    line, a header), no second line (asyncio writes the failed task and its exception's
    repr there).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Strip the record in place; never drops it."""
        if record.name.split(".", 1)[0] not in SERVER_LOGGERS:
            return True
        if record.exc_info:
            error = record.exc_info[1]
            record.error_type = type(error).__name__ if error is not None else "unknown"
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        template = str(record.msg).strip()
        record.msg = template.splitlines()[0] if template else ""
        record.args = None
        return True


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that reports its own failures without the record's content.

    The standard library's `handleError` prints the record's message and arguments to
    stderr, which is where a failing record's health data would otherwise go.
    """

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - stdlib name
        """One line naming the logger and the failure's type, instead of the record."""
        error = sys.exc_info()[1]
        try:
            self.stream.write(json.dumps({"event": "log_record_not_written",
                                          "logger": record.name, "level": "error",
                                          "error_type": type(error).__name__}) + "\n")
            self.flush()
        except Exception:  # noqa: S110 - nothing is left to report it to
            pass


@functools.cache
def forward_core_logs() -> None:
    """Send the Temporal SDK core's own log lines (Rust) through Python's logging.

    Left to itself, the default runtime writes them to stderr with terminal colour codes,
    tty or not (into pipes, files and pytest's output). Set once per process, before the
    default runtime is first used; a process that already used it keeps it. The worker's
    runtime forwards them too (`temporal.client.service_runtime`).
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
    foreign: list[structlog.typing.Processor] = [
        *shared, structlog.stdlib.ExtraAdder(allow=("error_type",))]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = _Handler(out)
    handler.addFilter(ServerErrorFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=foreign,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # A server's logging set up before us (uvicorn's default config gives `uvicorn.error`
    # and `uvicorn.access` handlers of their own, and stops them propagating) would print
    # tracebacks past the filter: every server logger writes through the root's handler.
    for name in [*logging.root.manager.loggerDict]:
        if name.split(".", 1)[0] in SERVER_LOGGERS:
            server = logging.getLogger(name)
            server.handlers[:] = []
            server.propagate = True
