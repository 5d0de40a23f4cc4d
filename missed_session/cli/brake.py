"""`starter.py brake status|release|stand-down`: the supervisor's verbs for the brake.

`status` lists recent episodes and, for the open ones, every session held and where its
hold stands; `release --clinician <id> [--session S]` lets outreach proceed (for the whole
open episode, or one session); `stand-down --clinician <id> [--session S]` ends the held
sessions without client outreach. Parsing and rendering only: the use cases are in
`missed_session.application.brake`. Exit codes: 0 done, 1 could not be carried out, 2
refused or bad input.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pydantic import ValidationError

from missed_session.application import brake as use
from missed_session.application.problems import describe
from missed_session.application.service import Application
from missed_session.cli.render import BAD_INPUT, fail, run_verb, show

COMMAND = "brake"


def is_action(argv: Sequence[str]) -> bool:
    """Whether the command line is `brake ...`."""
    return bool(argv) and argv[0] == COMMAND


def build_parser() -> argparse.ArgumentParser:
    """`brake status|release|stand-down`."""
    parser = argparse.ArgumentParser(prog=f"starter.py {COMMAND}", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("status", help="episodes, and the sessions the open ones hold")
    for name, what in (("release", "let client outreach proceed"),
                       ("stand-down", "end the held sessions without client outreach")):
        verb = actions.add_parser(name, help=what)
        verb.add_argument("--clinician", required=True, help="who decides (roster id)")
        verb.add_argument("--session", default=None, help="only this session")
        verb.add_argument("--reason", default="", help="why, for the trails")
    return parser


def main(argv: Sequence[str]) -> int:
    """0 done, 1 could not be carried out, 2 bad input or refused."""
    return run_verb(build_parser(), argv, _run)


async def _run(app: Application, args: argparse.Namespace) -> int:
    try:
        if args.action == "status":
            found = await use.status(app)
            if not isinstance(found, use.BrakeStatus):
                return show(found)
            print(render(found))
            return 0
        decide = use.release if args.action == "release" else use.stand_down
        return show(await decide(app, args.clinician, session_id=args.session,
                                 reason=args.reason))
    except ValidationError as error:
        return fail(describe(error), BAD_INPUT)


def render(found: use.BrakeStatus) -> str:
    """Episodes, newest first; each open one with its sessions."""
    if not found.episodes:
        return "the brake has held nothing"
    lines = []
    for e in found.episodes:
        lines.append(f"episode {e.episode}: {e.state}; {e.no_shows} sessions missed within "
                     f"{e.window_minutes} minutes; opened {e.opened_at:%Y-%m-%d %H:%M} UTC by "
                     f"session {e.opened_by}; {e.held} held"
                     + (f"; decided by {e.decided_by}" if e.decided_by else ""))
        lines += [f"  {s.session_id:<24} {s.risk_tier:<9} {s.state:<11} held "
                  f"{s.held_at:%H:%M:%S} UTC" for s in found.held.get(e.episode, [])]
    return "\n".join(lines)
