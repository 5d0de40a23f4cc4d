"""`starter.py caring start|end|show`: a caring-contacts series after an unresolved session.

`start <session id> --clinician <id>` confirms the series that follows a session that closed
unreachable (`--reason` to choose it after another no-show); `end <series id> --clinician
<id> --reason ...` ends one; `show <series id>` prints its trail (PostgreSQL only).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from pydantic import ValidationError

from missed_session.application.problems import describe
from missed_session.application.service import Application
from missed_session.cli.render import BAD_INPUT, DONE, FAILED, fail, parsed, show, with_application
from missed_session.domain.models import ClinicianDecision

COMMAND = "caring"


def is_action(argv: Sequence[str]) -> bool:
    """Whether the command line is `caring ...`."""
    return bool(argv) and argv[0] == COMMAND


def build_parser() -> argparse.ArgumentParser:
    """`caring start|end|show`."""
    parser = argparse.ArgumentParser(prog=f"starter.py {COMMAND}", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="start the series after a session's end")
    start.add_argument("session_id", metavar="SESSION_ID")
    start.add_argument("--clinician", required=True, help="who confirms it (roster id)")
    start.add_argument("--reason", default=None,
                       help="why, when choosing a series after a session that was not "
                       "unreachable (required then)")
    end = actions.add_parser("end", help="end a running series")
    end.add_argument("series_id", metavar="SERIES_ID")
    end.add_argument("--clinician", required=True)
    end.add_argument("--reason", required=True)
    show = actions.add_parser("show", help="a series' audit trail")
    show.add_argument("series_id", metavar="SERIES_ID")
    return parser


def main(argv: Sequence[str]) -> int:
    """0 done, 1 could not be carried out, 2 bad input or refused."""
    args = parsed(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        decision = (None if args.action == "show" else ClinicianDecision(
            clinician_id=args.clinician,
            reason=args.reason or "series offered after an unresolved session"))
    except ValidationError as error:
        return fail(describe(error), BAD_INPUT)
    return asyncio.run(with_application(lambda app: _run(app, args, decision)))


async def _run(app: Application, args: argparse.Namespace,
               decision: ClinicianDecision | None) -> int:
    caring = await app.caring()
    if caring is None:
        return fail("cannot reach Temporal or PostgreSQL (see the settings)", FAILED)
    if args.action == "show":
        result = await caring.show(args.series_id)
        if not result.ok:
            return show(result)
        for event in result.trail:
            print(f"{event.sequence:>3} {event.occurred_at.isoformat()} "
                  f"{event.event_type.value} {event.data}")
        return DONE
    assert decision is not None
    if args.action == "start":
        return show(await caring.start(args.session_id, decision,
                                       chosen=args.reason is not None))
    return show(await caring.end(args.series_id, decision))
