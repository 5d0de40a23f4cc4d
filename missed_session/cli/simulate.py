"""`starter.py simulate`: script the simulated phone (the default channel, demos and tests).

    starter.py simulate +15555550101 answer                 # the client picks up
    starter.py simulate +15555550101 no-answer              # rings out to voicemail
    starter.py simulate +15555550101 voicemail-full         # nobody answers, nothing is left
    starter.py simulate +15555550101 call-back --after 20   # calls back 20 protocol minutes
                                                            #   after the voicemail
    starter.py simulate +15555550101 invalid                # the number is not in service

A number behaves so from then on, for every session (an unscripted number does not
answer). `--after` is in protocol minutes: with `MSR_TIME_SCALE` 60 (the demo) 20 minutes
last 20 seconds. Only the simulated channel reads these scripts; the webhook and Twilio
channels reach real phones.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from pydantic import TypeAdapter, ValidationError

from missed_session.application.service import Application, UnavailableError
from missed_session.application.simulation import script_phone
from missed_session.channels.simulated import Behaviour
from missed_session.cli.render import BAD_INPUT, FAILED, fail, parsed, with_application
from missed_session.domain.models import PhoneNumber

COMMAND = "simulate"
BEHAVIOURS = {
    "answer": Behaviour.ANSWERS,
    "no-answer": Behaviour.NO_ANSWER,
    "voicemail-full": Behaviour.RINGS_OUT,
    "call-back": Behaviour.CALLS_BACK,
    "invalid": Behaviour.INVALID_NUMBER,
}
_PHONE: TypeAdapter[str] = TypeAdapter(PhoneNumber)


def is_action(argv: Sequence[str]) -> bool:
    """Whether the command line is `simulate ...`."""
    return bool(argv) and argv[0] == COMMAND


def build_parser() -> argparse.ArgumentParser:
    """`simulate NUMBER BEHAVIOUR [--after MINUTES]`."""
    parser = argparse.ArgumentParser(prog=f"starter.py {COMMAND}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("number", metavar="NUMBER", help="E.164, e.g. +15555550101")
    parser.add_argument("behaviour", choices=list(BEHAVIOURS), metavar="BEHAVIOUR",
                        help=f"one of {', '.join(BEHAVIOURS)}")
    parser.add_argument("--after", type=float, metavar="MINUTES",
                        help="call-back only: protocol minutes after the voicemail")
    return parser


def callback_seconds(minutes: float, time_scale: float) -> int:
    """Wall-clock seconds of `minutes` protocol minutes at `time_scale` (at least 1)."""
    return max(1, round(minutes * 60 / time_scale))


def main(argv: Sequence[str]) -> int:
    """Script one number; 0 done, 1 PostgreSQL unreachable, 2 bad input."""
    args = parsed(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        number = _PHONE.validate_python(args.number)
    except ValidationError as error:
        return fail(f"number: {error.errors()[0]['msg'].removeprefix('Value error, ')}",
                    BAD_INPUT)
    behaviour = BEHAVIOURS[args.behaviour]
    if (behaviour is Behaviour.CALLS_BACK) != (args.after is not None):
        return fail("--after MINUTES goes with call-back, and only with it", BAD_INPUT)
    if args.after is not None and not 0 <= args.after <= 24 * 60:
        return fail("--after: between 0 and 1440 minutes", BAD_INPUT)
    return asyncio.run(with_application(lambda app: _script(app, number, behaviour, args.after)))


async def _script(app: Application, number: str, behaviour: Behaviour,
                  after: float | None) -> int:
    seconds = None if after is None else callback_seconds(after, app.settings.time_scale)
    try:
        await script_phone(app, number, behaviour, seconds)
    except UnavailableError as error:
        return fail(str(error), FAILED)
    when = "" if seconds is None else f" {after:g} minutes ({seconds} s) after the voicemail"
    print(f"simulated phone: {number} {behaviour.value}{when}")
    return 0
