"""`starter.py kept-texts`: the inbound texts kept because no session could take them yet.

A backlog here means no worker takes the sessions' updates (or Temporal is unreachable):
the HTTP API's deliverer hands them over once one does. `--all` lists settled texts too
(what became of each, per session); `--retry-now` makes every waiting text due at once
after an outage. No number and no text is shown: they are sealed in the table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from missed_session.application.kept_texts import KeptTexts
from missed_session.application.results import Result
from missed_session.application.service import Application
from missed_session.cli.render import DONE, run_verb, show

COMMAND = "kept-texts"


def is_action(argv: Sequence[str]) -> bool:
    """Whether the command line is `kept-texts`."""
    return bool(argv) and argv[0] == COMMAND


def build_parser() -> argparse.ArgumentParser:
    """The `kept-texts` options."""
    parser = argparse.ArgumentParser(prog=f"starter.py {COMMAND}", description=__doc__)
    parser.add_argument("--all", action="store_true",
                        help="settled texts too (delivered, refused, session gone)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--retry-now", action="store_true",
                        help="make every waiting text due now (the API's deliverer tries it)")
    return parser


def main(argv: Sequence[str]) -> int:
    """Show (or nudge) the kept texts; 0 done, 1 PostgreSQL unreachable, 2 bad usage."""
    return run_verb(build_parser(), argv, _run)


async def _run(app: Application, args: argparse.Namespace) -> int:
    kept = KeptTexts(app)
    if args.retry_now and (code := show(await kept.retry_now())) != DONE:
        return code
    result = await kept.overview(pending_only=not args.all)
    if not result.ok:
        return show(result)
    print(json.dumps(result.data) if args.json else render(result))
    return DONE


def render(result: Result) -> str:
    """The counts on one line, then a line per text."""
    assert result.data is not None
    counts = ", ".join(f"{outcome} {n}" for outcome, n in result.data["counts"].items())
    lines = [f"kept texts: {counts}"]
    for text in result.data["texts"]:
        sessions = ", ".join(f"{session} {outcome}"
                             for session, outcome in text["sessions"].items()) or "not looked up"
        state = text["outcome"] or f"waiting, next try {text['next_attempt_at']}"
        error = f", last error {text['last_error']}" if text["last_error"] else ""
        lines.append(f"{text['message_id']} ({text['channel']}, {text['kind']}) received "
                     f"{text['received_at']}: {state}; {text['attempts']} tries{error}; "
                     f"sessions: {sessions}")
    return "\n".join(lines)
