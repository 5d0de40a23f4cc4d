"""The simulated phone reports a voicemail's or message's outcome, as a provider would."""

from __future__ import annotations

import asyncpg

from missed_session.channels.simulated import Behaviour, SimulatedPhone
from missed_session.domain.models import CallResult

CLIENT = "+14155550123"
CONTACT = "+14155550999"


async def test_a_number_that_rings_out_takes_no_voicemail_and_no_message(
    pool: asyncpg.Pool,
) -> None:
    phone = SimulatedPhone(pool)
    await phone.script(CLIENT, Behaviour.RINGS_OUT)
    await phone.script(CONTACT, Behaviour.RINGS_OUT)

    assert await phone.call("s/attempt-1/call", "s", CLIENT) is CallResult.NO_ANSWER
    assert await phone.leave_voicemail("s/attempt-1/voicemail", "s", CLIENT, "hi") is (
        CallResult.NO_ANSWER
    )
    assert await phone.deliver_message("s/escalation", "s", CONTACT, "hi") is (
        CallResult.NO_ANSWER
    )
    assert [(row["kind"], row["result"]) for row in await phone.placed("s")] == [
        ("call", "no_answer"), ("voicemail", "not_delivered"), ("message", "not_delivered"),
    ]


async def test_a_retry_reports_the_first_outcome(pool: asyncpg.Pool) -> None:
    phone = SimulatedPhone(pool)
    await phone.script(CONTACT, Behaviour.NO_ANSWER)  # a voicemail box takes the message
    assert await phone.deliver_message("s/escalation", "s", CONTACT, "hi") is (
        CallResult.ANSWERED
    )
    await phone.script(CONTACT, Behaviour.RINGS_OUT)
    assert await phone.deliver_message("s/escalation", "s", CONTACT, "hi") is (
        CallResult.ANSWERED
    )
    assert len(await phone.placed("s")) == 1
