"""Running one starter.py command, and leaving the process with its exit code intact."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from missed_session.api.tokens import CLINICIAN_ID, Scope, digest, new_token, token_id
from missed_session.application.problems import describe
from missed_session.application.service import Application
from missed_session.audit import cli as audit_cli
from missed_session.cli import brake as brake_cli
from missed_session.cli import caring as caring_cli
from missed_session.cli import clients as clients_cli
from missed_session.cli import commands
from missed_session.cli import console as console_cli
from missed_session.cli import kept_texts as kept_texts_cli
from missed_session.cli import notices as notices_cli
from missed_session.cli import simulate as simulate_cli
from missed_session.cli.audit_actions import run_audit_action
from missed_session.cli.bulk_import import run_import
from missed_session.cli.parser import UsageError, parse_args
from missed_session.cli.render import BAD_INPUT, fail, show
from missed_session.codec.encryption import new_key
from missed_session.config import ConfigurationError, load_settings
from missed_session.domain.practice import PracticeFileError
from missed_session.log_setup import forward_core_logs


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 done, 1 could not be carried out, 2 bad input or refused."""
    command_line = sys.argv[1:] if argv is None else argv
    forward_core_logs()  # the SDK core's warnings as plain lines, not colour codes
    special = _special_action(command_line)
    if special is not None:
        return special
    try:
        args = parse_args(command_line)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except UsageError as error:
        return fail(str(error), BAD_INPUT)
    if args.command in {"new-key", "new-token"}:  # need no configuration
        return _new_secret(args)
    return asyncio.run(_command(args))


def _new_secret(args: argparse.Namespace) -> int:
    """`new-key` (what a missing key asks for) or `new-token`: print, change nothing."""
    if args.command == "new-key":
        print(json.dumps({args.key_id: new_key()}))
        return 0
    token = new_token()
    if args.clinician is not None:
        if args.scope != Scope.CLINICIAN or CLINICIAN_ID.fullmatch(args.clinician) is None:
            return fail("--clinician: needs --scope clinician and a roster clinician id",
                        BAD_INPUT)
        print(f"token (give it to {args.clinician} alone; it is not shown again): {token}")
        print(f"token id (recorded with each of their decisions): {token_id(digest(token))}")
        print("MSR_API_CLINICIAN_TOKENS entry: "
              f"{json.dumps({args.clinician: [digest(token)]})}")
        return 0
    print(f"token (give it to the {args.scope} caller; it is not shown again): {token}")
    print(f"MSR_API_TOKENS entry: {json.dumps({args.scope: [digest(token)]})}")
    if args.scope == Scope.CLINICIAN:
        print("(a shared clinician token reads and records responses, never a decision: "
              "give each clinician their own with --clinician <id>)")
    return 0


def _special_action(command_line: list[str]) -> int | None:
    """The verbs with their own parsers; `parser.VERB_GROUPS` lists them in --help."""
    if audit_cli.is_action(command_line):
        return asyncio.run(run_audit_action(command_line))
    if clients_cli.is_clients(command_line):  # the client directory: missed_session/cli/clients.py
        return asyncio.run(clients_cli.run_clients(command_line))
    groups: tuple[tuple[Callable[[Sequence[str]], bool], Callable[[Sequence[str]], int]], ...] = (
        (notices_cli.is_action, notices_cli.main),  # notices and roster: cli/notices.py
        (console_cli.is_action, console_cli.main),  # console accounts: cli/console.py
        (kept_texts_cli.is_action, kept_texts_cli.main),  # inbound texts waiting
        (simulate_cli.is_action, simulate_cli.main),  # the simulated phone: cli/simulate.py
        (caring_cli.is_action, caring_cli.main),  # caring contacts: cli/caring.py
        (brake_cli.is_action, brake_cli.main),  # the mass no-show brake: cli/brake.py
    )
    for is_action, run in groups:
        if is_action(command_line):
            return run(command_line)
    return None


async def _command(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigurationError as error:
        return fail(str(error), BAD_INPUT)
    async with Application(settings) as app:
        if args.command == "import":
            return await run_import(args, app)
        try:
            request = commands.validate(args, app)
        except (UsageError, PracticeFileError) as error:
            return fail(str(error), BAD_INPUT)
        except ValidationError as error:
            return fail(describe(error), BAD_INPUT)
        return show(await commands.execute(request, app))


def exit_with(code: int) -> None:
    """Leave the process with `code`, its output flushed, without interpreter shutdown.

    The Temporal SDK's Rust runtime threads can abort the interpreter's shutdown ("Fatal
    Python error: PyGILState_Release", exit 134 or 139; temporalio/sdk-python issue 300),
    replacing the command's exit code. Nothing is left to finalise once the command has
    returned (the event loop is closed, the pool too), so the process ends here, but only
    after the exit handlers have run: among them the stop of an embedded PostgreSQL this
    command started because no stack was up (`store.embedded.start`), which `os._exit`
    would otherwise leave running.
    """
    with contextlib.suppress(Exception):  # an exit handler's failure must not change the code
        atexit._run_exitfuncs()  # what interpreter shutdown would run
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
            stream.flush()
    os._exit(code)
