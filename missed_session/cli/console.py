"""`starter.py console set-password <clinician>`: a console account for a roster clinician.

The password is read from the terminal (twice), or from stdin with `--password-stdin` for
scripts; it never appears on the command line, where `ps` and shell history would keep it.
`--reviewer` makes a compliance reviewer's account (not on the roster; reads, decides
nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence

from missed_session.application import console as cases
from missed_session.application.results import ResultKind
from missed_session.application.service import Application, UnavailableError
from missed_session.cli.render import BAD_INPUT, FAILED, fail, parsed, with_application


def is_action(argv: Sequence[str]) -> bool:
    """Whether the command line is a `console` verb."""
    return bool(argv) and argv[0] == "console"


def build_parser() -> argparse.ArgumentParser:
    """The `console` commands."""
    parser = argparse.ArgumentParser(prog="starter.py console")
    verbs = parser.add_subparsers(dest="verb", required=True)
    password = verbs.add_parser("set-password", help="create or reset a console account")
    password.add_argument("clinician", help="the clinician's roster id (or the reviewer's id)")
    password.add_argument("--reviewer", action="store_true",
                          help="a compliance reviewer's account (reads trails, decides nothing)")
    password.add_argument("--password-stdin", action="store_true",
                          help="read the password from stdin's first line")
    return parser


def main(argv: Sequence[str]) -> int:
    """Run one `console` command; 0 done, 1 not possible, 2 bad input."""
    args = parsed(build_parser(), argv)
    if isinstance(args, int):
        return args
    password = _read_password(args.password_stdin)
    if password is None:
        return fail("password: the two entries differ", BAD_INPUT)
    return asyncio.run(with_application(
        lambda app: _set_password(app, args.clinician, password, reviewer=args.reviewer)))


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("new console password: ")
    return first if getpass.getpass("again: ") == first else None


async def _set_password(app: Application, clinician: str, password: str, *,
                        reviewer: bool) -> int:
    try:
        result = await cases.set_password(app, clinician, password, reviewer=reviewer)
    except UnavailableError as error:
        return fail(str(error), FAILED)
    if result.kind is ResultKind.APPLIED:
        print(result.message)
        return 0
    return fail(result.message, BAD_INPUT if result.kind is ResultKind.BAD_INPUT else FAILED)
