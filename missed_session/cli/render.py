"""A use case's result as the operator and the scheduling system read it: text and exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence

from missed_session.application.audit_trail import details
from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application
from missed_session.config import ConfigurationError, load_settings
from missed_session.domain.models import SessionState, workflow_id_for

DONE = 0
"""Exit code: the request is reflected in the session (started, applied, already there)."""
FAILED = 1
"""Exit code: a server could not be reached, or the session is not there (try again later)."""
BAD_INPUT = 2
"""Exit code: input the caller must fix; nothing was started or sent."""
REFUSED = 2
"""Exit code: a request the session refused (a cancel after the no-show); nothing changed."""

EXIT_CODES = {
    ResultKind.STARTED: DONE,
    ResultKind.ALREADY_SCHEDULED: DONE,
    ResultKind.APPLIED: DONE,
    ResultKind.REFUSED: REFUSED,
    ResultKind.BAD_INPUT: BAD_INPUT,
    ResultKind.NOT_FOUND: FAILED,
    ResultKind.UNAVAILABLE: FAILED,
}
"""Every result kind's exit code: a scheduling system can branch on it."""


def fail(message: str, code: int) -> int:
    """Print `error: message` on one line to stderr; return `code`."""
    print("error:", " ".join(message.split()), file=sys.stderr)
    return code


def parsed(parser: argparse.ArgumentParser,
           argv: Sequence[str]) -> argparse.Namespace | int:
    """A verb's arguments (`argv` after the command word), or the exit code argparse chose.

    argparse exits on `--help` (0) and on bad usage (2, with its message on stderr): here
    that is a returned code, so the caller returns it and nothing connects.
    """
    try:
        return parser.parse_args(list(argv[1:]))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else BAD_INPUT


async def with_application(run: Callable[[Application], Awaitable[int]]) -> int:
    """`run` with the application the settings describe; settings that do not load: 2."""
    try:
        settings = load_settings()
    except ConfigurationError as error:
        return fail(str(error), BAD_INPUT)
    async with Application(settings) as app:
        return await run(app)


def run_verb(parser: argparse.ArgumentParser, argv: Sequence[str],
             run: Callable[[Application, argparse.Namespace], Awaitable[int]]) -> int:
    """Parse the verb's arguments, then `run` them with the application; its exit code."""
    args = parsed(parser, argv)
    if isinstance(args, int):
        return args
    return asyncio.run(with_application(lambda app: run(app, args)))


def show(result: Result) -> int:
    """Print the result (stdout when it succeeded, one error line otherwise); its exit code."""
    code = EXIT_CODES[result.kind]
    if not result.ok:
        return fail(result.message, code)
    if result.state is not None and result.session_id is not None:
        print(status_text(result.session_id, result.state))
    elif result.trail:
        print(audit_text(result))
    else:
        print(result.message)
    return code


def status_text(session_id: str, state: SessionState) -> str:
    """The `status` command's lines."""
    next_action = state.next_action or "none"
    if state.next_action_at is not None:
        next_action += f" at {state.next_action_at.isoformat()}"
    outcome = state.outcome.value if state.outcome else "none yet"
    return "\n".join([
        f"session {session_id} (workflow {workflow_id_for(session_id)})",
        f"status: {state.status.value}",
        f"attempts: {state.attempts_made}",
        f"next action: {next_action}",
        f"outcome: {outcome}",
    ])


def _value(value: object) -> str:
    """A data value as the operator reads it; quoted only when it would be ambiguous."""
    if isinstance(value, str) and value and not any(c.isspace() or c in "=\"" for c in value):
        return value
    return json.dumps(value)


def audit_text(result: Result) -> str:
    """The `audit` command's lines: sequence, time, event type, details as key=value."""
    return "\n".join(
        " ".join([str(event.sequence), event.occurred_at.isoformat(), event.event_type.value,
                  *(f"{key}={_value(value)}" for key, value in sorted(details(event).items()))])
        for event in result.trail
    )
