"""The logging pipeline redacts a person's details, whatever the caller passes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from missed_session.log_setup import (
    HEALTH_DATA_KEYS,
    REDACTED,
    configure_logging,
    redact_health_data,
)

PHONE = "+14155550123"
FIRST_NAME = "Robin"
NOTE = "said she felt too low to come in"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_log_redacts_person_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    structlog.get_logger("test").info(
        "client_responded", phone=PHONE, first_name=FIRST_NAME, note=NOTE, session_id="s-42"
    )
    err = capsys.readouterr().err
    for secret in (PHONE, FIRST_NAME, NOTE):
        assert secret not in err
    [line] = _json_lines(err)
    assert line["phone"] == REDACTED
    assert line["first_name"] == REDACTED
    assert line["note"] == REDACTED
    # What is safe to log still gets through.
    assert line["event"] == "client_responded"
    assert line["session_id"] == "s-42"
    assert line["level"] == "info"
    assert line["logger"] == "test"


def test_bound_fields_are_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    log = structlog.get_logger("test").bind(email="robin@example.org", client_ref="c-1")
    log.warning("outreach_failed", to_number=PHONE, body="Hi Robin, call us back")
    err = capsys.readouterr().err
    assert "robin@example.org" not in err
    assert PHONE not in err
    assert "Hi Robin" not in err
    [line] = _json_lines(err)
    assert line["email"] == line["to_number"] == line["body"] == REDACTED
    assert line["client_ref"] == "c-1"


def test_context_variables_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    with structlog.contextvars.bound_contextvars(phone=PHONE, session_id="s-7"):
        structlog.get_logger("test").info("calling")
    err = capsys.readouterr().err
    assert PHONE not in err
    [line] = _json_lines(err)
    assert line["phone"] == REDACTED
    assert line["session_id"] == "s-7"


def test_whole_client_object_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    structlog.get_logger("test").info("booked", client={"first_name": FIRST_NAME, "phone": PHONE})
    err = capsys.readouterr().err
    assert FIRST_NAME not in err
    assert PHONE not in err
    assert _json_lines(err)[0]["client"] == REDACTED


def test_console_format_redacts_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("console")
    structlog.get_logger("test").info("calling", phone=PHONE, first_name=FIRST_NAME)
    err = capsys.readouterr().err
    assert "calling" in err
    assert REDACTED in err
    assert PHONE not in err
    assert FIRST_NAME not in err


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", level="warning")
    log = structlog.get_logger("test")
    log.info("quiet")
    log.warning("loud")
    events = [line["event"] for line in _json_lines(capsys.readouterr().err)]
    assert events == ["loud"]


def test_stdlib_loggers_share_the_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    logging.getLogger("temporalio.worker").warning("worker started")
    [line] = _json_lines(capsys.readouterr().err)
    assert line["event"] == "worker started"
    assert line["logger"] == "temporalio.worker"


def test_redaction_processor_replaces_every_listed_key() -> None:
    event = {key: f"secret-{key}" for key in HEALTH_DATA_KEYS}
    event |= {"event": "x", "session_id": "s-1"}
    result = redact_health_data(None, "info", event)
    assert {key: result[key] for key in HEALTH_DATA_KEYS} == dict.fromkeys(
        HEALTH_DATA_KEYS, REDACTED
    )
    assert result["event"] == "x"
    assert result["session_id"] == "s-1"


def test_health_data_keys_cover_the_person_fields() -> None:
    assert {"phone", "first_name", "note", "email", "emergency_contact"} <= HEALTH_DATA_KEYS


def test_server_errors_keep_their_type_not_their_traceback_or_arguments(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As uvicorn's default logging config leaves it (a full run's earlier in-process
    # servers did): its own handler, not propagating. configure_logging takes it over.
    leftover = logging.getLogger("uvicorn.error")
    leftover.addHandler(logging.StreamHandler(sys.__stderr__))
    leftover.propagate = False
    configure_logging("json")
    try:
        raise ValueError(f"1 validation error: input_value='{NOTE}'")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application\n")
        logging.getLogger("aiohttp.server").error("Error handling request from %s", PHONE,
                                                  exc_info=True)
    logging.getLogger("asyncio").error("Task exception was never retrieved\nfuture: %s",
                                       FIRST_NAME)
    err = capsys.readouterr().err
    for secret in (PHONE, FIRST_NAME, NOTE, "Traceback"):
        assert secret not in err
    # By logger, not by position: in a full run, earlier tests' leftover tasks may make
    # asyncio write more lines here (each reduced the same way, so none can leak either).
    lines = _json_lines(err)
    by_logger = {line.get("logger"): line for line in lines}
    uvicorn, aiohttp = by_logger["uvicorn.error"], by_logger["aiohttp.server"]
    assert uvicorn["event"] == "Exception in ASGI application"
    assert uvicorn["error_type"] == "ValueError"
    assert aiohttp["event"] == "Error handling request from %s"
    assert "Task exception was never retrieved" in [
        line["event"] for line in lines if line.get("logger") == "asyncio"]
