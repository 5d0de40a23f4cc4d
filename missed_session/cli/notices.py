"""`starter.py notices ...` and `starter.py roster ...`: the clinicians' and operators' verbs.

```sh
starter.py roster load practice.toml          # the [roster] and [notices] of the file
starter.py roster show                        # clinicians and who is on call now
starter.py roster on-call --at 2026-12-24T22:00:00-05:00
starter.py notices list [--all]               # notices nobody has acknowledged (or all)
starter.py notices show <notice key>          # where it stands and its audit trail
starter.py notices ack <notice key> --clinician oc-lee [--code K7Q2MD]
starter.py notices resolve <notice key> --clinician oc-lee --outcome "..." [--note "..."]
starter.py notices sms-reply --from +14155550102 --body "ACK K7Q2MD"
```

Exit codes: 0 done, 1 could not be carried out, 2 refused or bad input (the refusal is
recorded). Parsing and rendering only: the use cases are in
`missed_session.application.notices`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from missed_session.application import notices as use
from missed_session.application.errors import COULD_NOT_CARRY_OUT
from missed_session.application.results import ResultKind
from missed_session.config import ConfigurationError, Settings, load_settings
from missed_session.domain import roster as rota
from missed_session.domain.events import read
from missed_session.domain.notices import Acknowledgment, AckVia, Resolution
from missed_session.store.notices import NoticeRow

VERBS = ("notices", "roster")
EXIT = {ResultKind.APPLIED: 0, ResultKind.REFUSED: 2, ResultKind.BAD_INPUT: 2,
        ResultKind.NOT_FOUND: 2, ResultKind.NOT_A_CLINICIAN: 2}


def is_action(argv: Sequence[str]) -> bool:
    """Whether the command line is one of these verbs."""
    return bool(argv) and argv[0] in VERBS


def build_parser() -> argparse.ArgumentParser:
    """The `notices` and `roster` commands."""
    parser = argparse.ArgumentParser(prog="starter.py")
    commands = parser.add_subparsers(dest="group", required=True)
    roster = commands.add_parser("roster", help="the practice's clinicians and on-call rota")
    roster_verbs = roster.add_subparsers(dest="verb", required=True)
    load = roster_verbs.add_parser("load", help="load the practice file's roster")
    load.add_argument("file", type=Path)
    roster_verbs.add_parser("show", help="clinicians and who is on call now")
    on_call = roster_verbs.add_parser("on-call", help="who is on call at an instant")
    on_call.add_argument("--at", type=_instant, required=True,
                         help="ISO 8601 with offset, e.g. 2026-12-24T22:00:00-05:00")
    notices = commands.add_parser("notices", help="notices to clinicians")
    verbs = notices.add_subparsers(dest="verb", required=True)
    listed = verbs.add_parser("list", help="notices nobody has acknowledged")
    listed.add_argument("--all", action="store_true", help="every notice")
    show = verbs.add_parser("show", help="a notice and its audit trail")
    show.add_argument("key")
    ack = verbs.add_parser("ack", help="acknowledge a notice: its climb stops")
    ack.add_argument("key")
    ack.add_argument("--clinician", required=True)
    ack.add_argument("--code")
    resolve = verbs.add_parser("resolve", help="close a notice with an outcome")
    resolve.add_argument("key")
    resolve.add_argument("--clinician", required=True)
    resolve.add_argument("--outcome", required=True)
    resolve.add_argument("--note", default="")
    reply = verbs.add_parser("sms-reply", help="deliver a clinician's SMS reply")
    reply.add_argument("--from", dest="from_number", required=True)
    reply.add_argument("--body", required=True)
    return parser


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        msg = f"not an ISO 8601 instant: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value.tzinfo is None:
        msg = f"{text!r} needs a UTC offset"
        raise argparse.ArgumentTypeError(msg)
    return value


def main(argv: Sequence[str]) -> int:
    """Run one verb; prints one result and returns its exit code."""
    try:
        args = build_parser().parse_args(list(argv))
        settings = load_settings()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0
    except ConfigurationError as error:
        print("error:", error, file=sys.stderr)
        return 2
    try:
        code, text = asyncio.run(_run(args, settings))
    except COULD_NOT_CARRY_OUT as error:
        print(f"error: could not be carried out: {type(error).__name__}: {error}",
              file=sys.stderr)
        return 1
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


async def _run(args: argparse.Namespace, settings: Settings) -> tuple[int, str]:
    async with use.NoticeDesk(settings) as desk:
        if args.group == "roster":
            return await _roster(args, desk)
        if args.verb == "list":
            return 0, _render_list(await desk.list_notices(everything=args.all))
        if args.verb == "show":
            return await _show(args.key, desk)
        if args.verb == "ack":
            result = await desk.acknowledge(args.key, Acknowledgment(
                via=AckVia.CLI, clinician_id=args.clinician, code=args.code))
        elif args.verb == "resolve":
            result = await desk.resolve(args.key, Resolution(
                clinician_id=args.clinician, outcome=args.outcome, note=args.note))
        else:
            result = await desk.sms_reply(args.from_number, args.body)
        return EXIT[result.kind], f"{result.kind.value}: {result.message}"


async def _roster(args: argparse.Namespace, desk: use.NoticeDesk) -> tuple[int, str]:
    if args.verb == "load":
        result = await desk.load_roster(args.file)
        return EXIT[result.kind], result.message
    current = await desk.current_roster()
    if current is None or current.roster is None:
        return 2, "no roster is loaded: starter.py roster load <practice file>"
    practice = current.roster
    at = args.at if args.verb == "on-call" else datetime.now(UTC)
    on_call = ", ".join(c.id for c in rota.on_call(practice, at)) or "nobody"
    if args.verb == "on-call":
        return 0, f"on call at {at.isoformat()}: {on_call}"
    lines = [f"roster version {current.version} ({current.source}, loaded "
             f"{current.loaded_at:%Y-%m-%d %H:%M} UTC), time zone {practice.time_zone}"]
    lines += [f"  {c.id:<16} {c.role.value:<20} {', '.join(ch.value for ch in c.channels())}"
              + (" (on leave)" if rota.on_leave(practice, c.id, at) else "")
              for c in practice.clinicians]
    lines.append(f"on call now: {on_call}")
    return 0, "\n".join(lines)


def _render_list(rows: Sequence[NoticeRow]) -> str:
    if not rows:
        return "no notices"
    return "\n".join(
        f"{row.key:<40} {row.state:<12} {row.priority:<8} {row.risk_tier:<9} "
        f"therapist {row.therapist_id:<12} opened {row.opened_at:%Y-%m-%d %H:%M} UTC"
        + (f" · acknowledged by {row.acknowledged_by} ({row.acknowledged_via})"
           if row.acknowledged_by else "")
        for row in rows
    )


async def _show(key: str, desk: use.NoticeDesk) -> tuple[int, str]:
    rows = [row for row in await desk.list_notices(everything=True) if row.key == key]
    if not rows:
        return 2, f"no notice {key!r}"
    row = rows[0]
    lines = [_render_list(rows)]
    if row.acknowledged_at is not None:
        lines.append(f"  acknowledged {row.acknowledged_at:%Y-%m-%d %H:%M:%S} UTC")
    if row.resolved_at is not None:
        by = row.resolved_by or "its reason ending (notice_reason_ended below)"
        lines.append(f"  resolved {row.resolved_at:%Y-%m-%d %H:%M:%S} UTC by {by}")
    lines.append(f"  its own audit trail (starter.py audit {key}):")
    trail = await desk.notice_events(row)
    for event in trail:
        fields = read(event).model_dump(mode="json", exclude={"note", "event_type"})
        lines.append(f"  #{event.sequence:<3} {event.occurred_at:%Y-%m-%d %H:%M:%S} UTC "
                     f"{event.event_type.value:<20} "
                     + " ".join(f"{k}={v}" for k, v in fields.items()))
    return 0, "\n".join(lines)
