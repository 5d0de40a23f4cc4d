"""The faults, each injected at a step the harness sees in the trail or the channel's records.

A fault waits for its step by watching (audit rows, the channel's deliveries, the follow-up
plans table), never by sleeping a guessed time, and notes what the trails showed at the
moment it struck: on a loaded machine the step may have moved on, and the note says so.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from faults.checks import Findings, hangs_ended, notice_in_flight_honoured, refusals_honoured
from faults.clients import THERAPIST_ID, Script
from faults.count import SessionRecord
from faults.harness import CallbackAnswer, ChannelName, Harness
from missed_session.domain.models import AuditEventType, Outcome, upcast_name

Fault = Callable[[Harness, "Size"], Awaitable[None]]
Check = Callable[[Harness, Sequence[SessionRecord]], Findings]
"""A scenario's own check, after the counts: what became of the steps its fault struck."""
HOLD_SECONDS = 3.0
"""How long the webhook receiver keeps a held step open (the worker dies meanwhile)."""
TEMPORAL_DOWN_SECONDS = 5.0
"""How long the Temporal dev server stays down before it is restarted on its file."""


@dataclass(frozen=True)
class Size:
    """How big a run is."""

    name: str
    scripts: tuple[Script, ...]
    """One session per script in every scenario."""
    postgres_outage: float
    """Seconds PostgreSQL stays down in the outage scenario."""
    settle: float
    """Seconds a scenario waits, after its fault, for every session to end."""
    time_scale: float = 60.0
    parallel: int = 1
    """Scenarios run at the same time (each on its own servers)."""


EVERY_SCRIPT = tuple(Script)
SIZES = {
    "smoke": Size("smoke", (Script.CALLS_BACK, Script.UNREACHABLE_CONSENT,
                            Script.UNREACHABLE_NO_CONSENT),
                  postgres_outage=20.0, settle=240.0, parallel=3),
    "full": Size("full", EVERY_SCRIPT, postgres_outage=60.0, settle=300.0, parallel=3),
}


# -- the worker, killed at each step of the ladder -------------------------------------------


async def kill_before_start(run: Harness, size: Size) -> None:
    """Every session is booked (its `scheduled` row written) and none has started."""
    async def booked() -> bool:
        sessions = {row.session_id for row in await run.rows() if row.event_type == "scheduled"}
        return len(sessions) == len(run.sessions)

    await run.until("every scheduled row", booked, 60)
    early = datetime.now(UTC) < run.first_start
    await run.kill_worker("before the start" if early else "AFTER the start (late)")


async def kill_in_grace_period(run: Harness, size: Size) -> None:
    """The sessions have started; no grace period has expired yet."""
    async def started() -> bool:
        return datetime.now(UTC).timestamp() > run.first_start.timestamp() + 1

    await run.until("the start", started, 60)
    expired = any(row.event_type == "grace_period_expired" for row in await run.rows())
    await run.kill_worker("in the grace period" + (" (one had expired already)" if expired
                                                   else ""))


async def kill_during_call(run: Harness, size: Size) -> None:
    """A call is in the channel's hands: held open by the receiver, or just placed."""
    if run.receiver is not None:
        hold = run.receiver.hold("call", HOLD_SECONDS)
        await asyncio.wait_for(hold.seen.wait(), 120)
        await run.kill_worker("while the receiver held a call open")
        return
    await run.until_effect("call")
    await run.kill_worker("as the simulated phone recorded a call")


async def kill_after_voicemail(run: Harness, size: Size) -> None:
    """The channel has recorded the first voicemail."""
    await run.until_effect("voicemail")
    await run.kill_worker("right after a voicemail")


async def kill_while_recording(run: Harness, size: Size) -> None:
    """Just after an audit row written by a local activity commits (twice: a step, `closed`).

    The row is in PostgreSQL while the workflow task that wrote it may not have completed:
    the retried task must not conflict with its own first write.
    """
    await run.until_event(AuditEventType.OUTREACH_ATTEMPTED)
    await run.kill_worker("as the first outreach_attempted row appeared")
    await run.until_event(AuditEventType.CLOSED, size.settle)
    await run.kill_worker("as the first closed row appeared")


async def kill_during_escalation(run: Harness, size: Size) -> None:
    """The emergency contact's message is in the channel's hands."""
    if run.receiver is not None:
        hold = run.receiver.hold("message", HOLD_SECONDS)
        await asyncio.wait_for(hold.seen.wait(), 180)
        await run.kill_worker("while the receiver held the emergency contact's message")
        return
    await run.until_effect("message", 180)
    await run.kill_worker("as the emergency contact's message was recorded")


async def kill_during_follow_up(run: Harness, size: Size) -> None:
    """A follow-up plan is saved and its `plan_created` row may not be."""
    async def planned() -> bool:
        try:
            return bool(await run.pool.fetchval("SELECT count(*) FROM follow_up_plans"))
        except Exception:  # not readable yet: keep watching
            return False

    await run.until("a saved follow-up plan", planned, 180)
    await run.kill_worker("as the first follow-up plan was saved")


# -- the servers ---------------------------------------------------------------------------


async def _temporal_restart(run: Harness, sig: signal.Signals) -> None:
    await run.until_event(AuditEventType.OUTREACH_ATTEMPTED)
    await run.temporal.stop(sig)
    run.note(f"Temporal dev server {sig.name}; trails: {await run.describe_trails()}")
    await asyncio.sleep(TEMPORAL_DOWN_SECONDS)
    await run.temporal.start()
    run.note("Temporal dev server restarted on its database file")
    await asyncio.sleep(2)
    await run.ensure_worker()


async def temporal_sigterm(run: Harness, size: Size) -> None:
    """The dev server is stopped cleanly during outreach, and restarted on its file."""
    await _temporal_restart(run, signal.SIGTERM)


async def temporal_sigkill(run: Harness, size: Size) -> None:
    """The dev server is killed during outreach, and restarted on its file."""
    await _temporal_restart(run, signal.SIGKILL)


async def postgres_outage(run: Harness, size: Size) -> None:
    """PostgreSQL is stopped during outreach for `size.postgres_outage` seconds."""
    await run.until_event(AuditEventType.OUTREACH_ATTEMPTED)
    await run.postgres.stop()
    began = time.monotonic()
    run.note(f"PostgreSQL stopped (fast shutdown) for {size.postgres_outage:.0f} s")
    await asyncio.sleep(size.postgres_outage)
    await run.postgres.start()
    run.note(f"PostgreSQL started again after {time.monotonic() - began:.0f} s")
    await run.ensure_worker()


async def kill_worker_and_postgres(run: Harness, size: Size) -> None:
    """Worker and PostgreSQL SIGKILLed together during outreach; PostgreSQL recovers first."""
    await run.until_event(AuditEventType.OUTREACH_ATTEMPTED)
    trails = await run.describe_trails()
    await asyncio.gather(run.worker.stop(signal.SIGKILL), run.postgres.kill())
    run.note(f"worker and PostgreSQL SIGKILLed together; trails: {trails}")
    await asyncio.sleep(5)
    await run.postgres.start()
    await run.worker.start()
    run.note("PostgreSQL (crash recovery) and the worker restarted")


# -- the edges: the HTTP API, kept texts, bookings ------------------------------------------

TEXTED = Script.UNREACHABLE_CONSENT
"""The client who texts while no worker runs: high risk, so any text leaves outreach open
with a task and the session's outcome does not depend on when the text lands."""
TEXTS_EACH = 1
"""One text each: two texts of a high-risk client are two identical `answer_unclear` rows,
which the counts would take for a duplicate."""
KEPT_TEXT_BOUND = 45.0
"""Seconds after the restart by which every kept text must be settled: the dead API's claim
lapses within 15 s, the new deliverer reads the table every 5 s, a try waits 3 s."""
BOOKINGS = 60
"""Bookings sent to the API while PostgreSQL is stopped and started under them."""
CALLBACK_PATIENCE = 5.0
"""Seconds a phone system waits for the API's answer to a call-back."""


async def _claimed_text(run: Harness) -> bool:
    """Whether the API's deliverer holds a claim on a kept text right now.

    A claim pushes the text's next try 15 s ahead; a postponed text's first retries are at
    most 8 s ahead, so a pending text more than 10 s ahead, tried fewer than 4 times, is held.
    """
    try:
        held = await run.pool.fetchval(
            "SELECT count(*) FROM kept_texts WHERE state = 'pending' AND attempts < 4"
            " AND next_attempt_at > now() + interval '10 seconds'")
    except Exception:  # PostgreSQL unreadable: not seen
        return False
    return bool(held)


async def api_killed_holding_a_text(run: Harness, size: Size) -> None:
    """Texts kept while no worker runs; the API SIGKILLed holding one; Temporal restarted."""
    await _api_killed_holding_a_text(run, late=False)


async def api_down_until_the_session_closed(run: Harness, size: Size) -> None:
    """The same, with the API started again only once the texted session has closed.

    The session escalated while the text was kept: the text must reach its therapist as an
    urgent late response.
    """
    await _api_killed_holding_a_text(run, late=True)


async def _api_killed_holding_a_text(run: Harness, *, late: bool) -> None:
    assert run.api is not None
    run.facts["late_expected"] = late
    await run.until_event(AuditEventType.OUTREACH_ATTEMPTED)
    await run.worker.stop(signal.SIGKILL)
    run.note(f"worker SIGKILLed (texts can only be kept); trails: {await run.describe_trails()}")
    for session in (s for s in run.sessions if s.script is TEXTED):
        for n in range(TEXTS_EACH):
            response = await run.post_text(session.phone,
                                           "I'm ok, sorry, I missed it",
                                           f"{session.session_id}-text-{n}")
            run.note(f"text {n} of {session.session_id}: {response.status_code} "
                     f"{response.json().get('outcome')}")
    held = await run.until("a kept text claimed by the API's deliverer",
                           lambda: _claimed_text(run), 60)
    await run.api.stop(signal.SIGKILL)
    run.note("API SIGKILLed " + ("while its deliverer held a text's claim" if held
                                 else "(no claim seen)"))
    await run.temporal.stop(signal.SIGKILL)
    await asyncio.sleep(TEMPORAL_DOWN_SECONDS)
    await run.temporal.start()
    await asyncio.sleep(2)
    if late:
        await run.worker.start()
        texted = {s.session_id for s in run.sessions if s.script is TEXTED}

        async def closed() -> bool:
            return texted <= {row.session_id for row in await run.rows()
                              if row.event_type == AuditEventType.CLOSED.value}

        await run.until("the texted session closed", closed, 180)
        run.note(f"Temporal and the worker restarted; the texted session closed: "
                 f"{await run.describe_trails()}")
        await run.ensure_api()
    else:
        await asyncio.gather(run.worker.start(), run.ensure_api())
    restarted = time.monotonic()
    run.note("the API started again" if late
             else "Temporal restarted on its file; the worker and the API started again")

    async def settled() -> bool:
        try:
            return not await run.pool.fetchval(
                "SELECT count(*) FROM kept_texts WHERE state = 'pending'")
        except Exception:  # not readable: not settled as far as we know
            return False

    await run.until("every kept text settled", settled, KEPT_TEXT_BOUND * 2)
    run.facts["kept_texts_settled_after"] = round(time.monotonic() - restarted, 1)
    rows = await run.pool.fetch(
        "SELECT t.message_id, t.outcome, d.session_id, d.outcome AS there, d.reason"
        " FROM kept_texts t JOIN kept_text_deliveries d USING (message_id)"
        " ORDER BY t.message_id")
    inbox = await run.pool.fetch("SELECT key, priority FROM therapist_inbox"
                                 " WHERE key LIKE '%/late-text-%'")
    run.facts["kept_texts"] = [dict(row) for row in rows]
    run.facts["late_notices"] = {row["key"]: row["priority"] for row in inbox}
    settled_texts = ", ".join(f"{row['message_id']}={row['outcome']}" for row in rows)
    run.note(f"kept texts settled {run.facts['kept_texts_settled_after']} s after the "
             f"restart: {settled_texts}")


def kept_texts_reached(run: Harness, records: Sequence[SessionRecord]) -> Findings:
    """Each kept text reached its session, or its closed session's therapist; in time."""
    findings = Findings()
    rows = run.facts.get("kept_texts", [])
    notices = run.facts.get("late_notices", {})
    after = run.facts.get("kept_texts_settled_after")
    if not rows:
        findings.problems.append("no text was kept")
    if after is None or after > KEPT_TEXT_BOUND:
        findings.problems.append(f"kept texts settled {after} s after the restart "
                                 f"(bound {KEPT_TEXT_BOUND:.0f} s)")
    trails = {record.session_id: record.trail for record in records}
    for row in rows:
        if row["outcome"] == "delivered" and not run.facts.get("late_expected"):
            continue
        if row["outcome"] != "late_response":
            findings.problems.append(f"kept text {row['message_id']}: {row['outcome']}")
            continue
        key = row["reason"]
        findings.notes.append(f"kept text {row['message_id']}: late_response, notice "
                              f"{key} ({notices.get(key)})")
        if key not in notices:
            findings.problems.append(f"kept text {row['message_id']}: no notice {key}")
        escalated = any(event.event_type is AuditEventType.ESCALATION_SENT
                        for event in trails.get(row["session_id"], ()))
        if escalated and notices.get(key) != "urgent":
            findings.problems.append(f"kept text {row['message_id']}: the session escalated"
                                     " and the notice is not urgent")
    return findings


async def postgres_stopped_in_bookings(run: Harness, size: Size) -> None:
    """Bookings sent to the API while PostgreSQL is stopped three times under them."""
    assert run.api is not None
    await run.until_event(AuditEventType.OUTREACH_ATTEMPTED)
    statuses: Counter[int] = Counter()
    final: dict[str, int] = {}
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    template = run.sessions[0].booking
    rng = random.Random(len(run.sessions))  # noqa: S311 - when to stop PostgreSQL, no secret

    async def book_all() -> None:
        async with httpx.AsyncClient(base_url=run.api.url if run.api else "", timeout=60,
                                     headers={"Authorization": f"Bearer {run.api_token}"},
                                     ) as http:
            for index in range(BOOKINGS):
                booking = template.model_copy(update={
                    "session_id": f"{template.session_id}-api-{index}", "start": start})
                body = booking.model_dump_json()
                for _ in range(300):  # the scheduler sends a 503 again
                    try:
                        response = await http.post("/sessions", content=body, headers={
                            "content-type": "application/json"})
                    except httpx.HTTPError:
                        statuses[0] += 1
                        await asyncio.sleep(0.5)
                        continue
                    statuses[response.status_code] += 1
                    if response.status_code != 503:
                        final[booking.session_id] = response.status_code
                        break
                    await asyncio.sleep(0.2)

    async def outages() -> None:
        for _ in range(3):
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            await run.postgres.stop()
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            await run.postgres.start()

    began = time.monotonic()
    await asyncio.gather(book_all(), outages())
    await run.ensure_worker()
    run.facts["booking_statuses"] = dict(statuses)
    run.facts["booking_final"] = final
    run.note(f"{BOOKINGS} bookings in {time.monotonic() - began:.0f} s with PostgreSQL stopped"
             f" 3 times under them; answers {dict(sorted(statuses.items()))}")


def bookings_answered(run: Harness, records: Sequence[SessionRecord]) -> Findings:
    """No 500 (or any 5xx but 503); every booking finally booked, none refused."""
    findings = Findings()
    statuses: dict[int, int] = run.facts.get("booking_statuses", {})
    final: dict[str, int] = run.facts.get("booking_final", {})
    bad = {status: n for status, n in statuses.items() if status >= 500 and status != 503}
    if bad:
        findings.problems.append(f"bookings answered {bad}")
    if len(final) != BOOKINGS:
        findings.problems.append(f"{BOOKINGS - len(final)} bookings never booked")
    wrong = {sid: status for sid, status in final.items() if status not in {200, 201}}
    if wrong:
        findings.problems.append(f"bookings not booked: {wrong}")
    findings.notes.append(f"answers: {dict(sorted(statuses.items()))}")
    return findings


CALL_BACK_IN_OUTAGE = 5.0
"""Seconds after the voicemail at which the client calls back in this scenario: time for
PostgreSQL to stop first, on a loaded machine."""


async def postgres_outage_at_callback(run: Harness, size: Size) -> None:
    """PostgreSQL stopped as the calling-back client's voicemail is left.

    The client calls back `CALL_BACK_IN_OUTAGE` seconds later, inside the outage.
    """
    assert run.receiver is not None
    calling = {s.session_id for s in run.sessions if s.script is Script.CALLS_BACK}
    for session in run.sessions:
        if session.session_id in calling:
            run.receiver.calls_back_after[session.phone] = CALL_BACK_IN_OUTAGE

    async def voicemail_left() -> bool:
        effects = await run.effects()
        return any(effect.kind == "voicemail" for sid in calling for effect in effects[sid])

    await run.until("the calling-back client's voicemail", voicemail_left, 180)
    began = time.monotonic()
    await run.postgres.stop()
    run.note("PostgreSQL stopped right after the calling-back client's voicemail")
    await asyncio.sleep(size.postgres_outage / 2)
    await run.postgres.start()
    run.facts["outage"] = (began, time.monotonic())
    run.note(f"PostgreSQL started again after {time.monotonic() - began:.0f} s")
    await run.ensure_worker()


def callbacks_answered_in_time(run: Harness, records: Sequence[SessionRecord]) -> Findings:
    """Each call-back answered 200/202 within a phone system's patience."""
    findings = Findings()
    firsts: dict[str, CallbackAnswer] = {}
    for answer in run.callback_answers:
        firsts.setdefault(answer.session_id, answer)
    called_back = [s for s in run.sessions if s.script is Script.CALLS_BACK]
    outage: tuple[float, float] = run.facts.get("outage", (0.0, 0.0))
    for session in called_back:
        first = firsts.get(session.session_id)
        if first is None:
            findings.problems.append(f"{session.session_id}: no call-back was answered")
        elif not outage[0] <= first.at <= outage[1]:
            findings.problems.append(f"{session.session_id}: the call-back came outside the "
                                     "outage (the fault did not strike it)")
        elif first.status not in {200, 202} or first.seconds > CALLBACK_PATIENCE:
            findings.problems.append(f"{session.session_id}: call-back answered {first.status}"
                                     f" after {first.seconds:.1f} s ({first.message})")
        else:
            findings.notes.append(f"{session.session_id}: call-back answered {first.status} "
                                  f"after {first.seconds:.1f} s")
    return findings


# -- notices to clinicians ------------------------------------------------------------------

RUNG_MINUTES = 5
"""Every rung of the scenario's on-call ladder waits this many policy minutes (5 real
seconds at the suite's 60x): the high-risk policy's rung in docs/practice.example.toml."""
NOTICE_ROSTER = f"""
[roster]
time_zone = "UTC"

[roster.clinicians.{THERAPIST_ID}]
role = "therapist"
sms = "+15555559001"
supervisor = "supervisor-faults"

[roster.clinicians.oncall-faults]
role = "on_call_clinician"
sms = "+15555559002"
voice = "+15555559002"
notify_by = ["sms", "voice"]

[roster.clinicians.supervisor-faults]
role = "clinical_supervisor"
email = "supervisor@example.org"

[[roster.on_call]]
clinician = "oncall-faults"

[[notices.policies]]
name = "faults"
steps = [{{ notify = "therapist", minutes = {RUNG_MINUTES} }},
         {{ notify = "on_call", minutes = {RUNG_MINUTES} }},
         {{ notify = "supervisor", minutes = {RUNG_MINUTES} }}]
then = "stop"
"""
"""The practice's clinicians and ladder in the notice scenario: the sessions' therapist by
SMS only (so the rung's one send is the one struck), then whoever is on call (every hour of
every day) by SMS and voice, then the clinical supervisor by email; nobody acknowledges."""
HELD_NOTICE = "/round-1/step-1/"
"""The send the provider holds at the kill: a notice's first, to the therapist."""


async def kill_with_notice_in_hands(run: Harness, size: Size) -> None:
    """The provider holds a notice's SMS to the therapist: the worker is SIGKILLed.

    The receiver has acted on the send (it counts as delivered) and holds its answer; the
    dead worker's claim in the delivery ledger is pending, so the retried send must be
    `notice_uncertain` and the rung must wait its minutes and climb.
    """
    receiver = run.receiver
    assert receiver is not None
    hold = receiver.hold("text", HOLD_SECONDS, HELD_NOTICE)
    await asyncio.wait_for(hold.seen.wait(), 180)
    await run.kill_worker("while the receiver held a notice's SMS to the therapist")
    run.facts["restarted_at"] = time.time()
    run.facts["held_notice"] = hold.delivery
    assert hold.delivery is not None
    notice = hold.delivery.key.removeprefix("notice-").split("/round-", 1)[0]

    async def climbed() -> bool:
        try:
            kinds = await run.pool.fetch(
                "SELECT event_type FROM audit_events WHERE session_id = $1 ORDER BY sequence",
                notice)
        except Exception:  # not readable: not seen
            return False
        seen = [upcast_name(row["event_type"]) for row in kinds]
        return AuditEventType.NOTICE_CLIMBED.value in seen[1:] and any(
            kind in seen for kind in (AuditEventType.NOTICE_UNCERTAIN.value,
                                      AuditEventType.NOTICE_FAILED.value))

    if await run.until(f"notice {notice} to climb", climbed, 180):
        run.note(f"notice {notice} climbed "
                 f"{time.time() - run.facts['restarted_at']:.1f} s after the restart")


def notice_recorded_uncertain(run: Harness, records: Sequence[SessionRecord]) -> Findings:
    """The held notice send: once, `notice_uncertain`, its rung climbed in time.

    And no notice failed; every notice's chain is intact and its history replays.
    """
    assert run.receiver is not None
    return notice_in_flight_honoured(
        run.facts.get("held_notice"), run.receiver.deliveries, run.facts.get("notices", []),
        restarted_at=run.facts.get("restarted_at", 0.0),
        rung_seconds=RUNG_MINUTES * 60 / run.time_scale)


# -- the channel ---------------------------------------------------------------------------


async def webhook_5xx(run: Harness, size: Size) -> None:
    """The practice's system answers 503 to the next four requests, then recovers."""
    assert run.receiver is not None
    await run.until_event(AuditEventType.GRACE_PERIOD_EXPIRED)
    run.receiver.fail_next = 4
    run.note("receiver answers the next 4 requests with 503")


async def webhook_timeout_after_acceptance(run: Harness, size: Size) -> None:
    """The practice's system accepts a call and answers only after the channel's timeout."""
    assert run.receiver is not None
    hold = run.receiver.hold("call", 12.0)
    await asyncio.wait_for(hold.seen.wait(), 120)
    run.note("receiver accepted a call and holds its answer 12 s (channel timeout 10 s)")


REFUSED_STEPS = ("/attempt-2/call", "/escalation")
"""The steps the refusing provider answers 400: the second attempt's call (an attempt that
goes on to its next step) and the emergency contact's message (an escalation blocked)."""
HUNG_STEPS = REFUSED_STEPS
"""The steps the hung provider takes and never answers."""


async def webhook_4xx(run: Harness, size: Size) -> None:
    """The practice's system refuses the second call and the emergency contact's message."""
    receiver = run.receiver
    assert receiver is not None
    receiver.refuse_steps = REFUSED_STEPS
    run.note(f"receiver answers 400 to every {' and '.join(REFUSED_STEPS)} request")

    async def refused() -> bool:
        return bool(receiver.rejections)

    await run.until("a refused request", refused, 180)


async def webhook_hangs(run: Harness, size: Size) -> None:
    """The practice's system takes the second call and the contact's message, never answers."""
    receiver = run.receiver
    assert receiver is not None
    receiver.hang_steps = HUNG_STEPS
    run.note(f"receiver takes every {' and '.join(HUNG_STEPS)} request and never answers")

    async def hung() -> bool:
        return bool(receiver.hung)

    await run.until("a request left hanging", hung, 180)


def refusals_recorded(run: Harness, records: Sequence[SessionRecord]) -> Findings:
    """Each refused step: sent once, recorded as rejected by the channel."""
    assert run.receiver is not None
    return refusals_honoured(run.receiver.rejections, records)


def hangs_recorded(run: Harness, records: Sequence[SessionRecord]) -> Findings:
    """Each hung step: sent once, recorded as uncertain in bounded time."""
    assert run.receiver is not None
    return hangs_ended(run.receiver.hung, records)


@dataclass(frozen=True)
class Scenario:
    """A fault, and the channel the sessions run through."""

    name: str
    fault: Fault
    channel: ChannelName = "simulated"
    expected: Mapping[Script, Outcome] = field(default_factory=dict)
    """Scripts whose correct outcome this fault changes (the others keep the script's)."""
    check: Check | None = None
    with_api: bool = False
    """The HTTP API (with its kept-text deliverer) runs as a process of the scenario too."""
    callbacks_via_api: bool = False
    """The clients' call-backs are posted to the API (webhook channel)."""
    roster: str | None = None
    """A practice file whose roster is loaded before booking: every notice then climbs its
    on-call ladder, and the notices' trails are gathered (`facts["notices"]`) for the check."""


def _both(name: str, fault: Fault) -> list[Scenario]:
    return [Scenario(f"{name} [simulated]", fault), Scenario(f"{name} [webhook]", fault,
                                                             "webhook")]


SCENARIOS: list[Scenario] = [
    Scenario("worker SIGKILL before the start", kill_before_start),
    Scenario("worker SIGKILL in the grace period", kill_in_grace_period),
    *_both("worker SIGKILL during a call", kill_during_call),
    *_both("worker SIGKILL after a voicemail", kill_after_voicemail),
    *_both("worker SIGKILL as audit rows commit", kill_while_recording),
    *_both("worker SIGKILL during escalation", kill_during_escalation),
    *_both("worker SIGKILL during follow-up planning", kill_during_follow_up),
    Scenario("Temporal SIGTERM + restart", temporal_sigterm),
    *_both("Temporal SIGKILL + restart", temporal_sigkill),
    *_both("PostgreSQL stopped", postgres_outage),
    *_both("worker + PostgreSQL SIGKILL", kill_worker_and_postgres),
    Scenario("webhook 5xx burst [webhook]", webhook_5xx, "webhook"),
    Scenario("webhook timeout after acceptance [webhook]", webhook_timeout_after_acceptance,
             "webhook"),
    Scenario("webhook 4xx refusal [webhook]", webhook_4xx, "webhook",
             # the emergency contact's message refused: blocked, the therapist has a task
             expected={Script.UNREACHABLE_CONSENT: Outcome.UNREACHABLE_ESCALATION_BLOCKED},
             check=refusals_recorded),
    Scenario("webhook provider hangs [webhook]", webhook_hangs, "webhook",
             check=hangs_recorded),
    Scenario("API SIGKILL holding a kept text + Temporal restart", api_killed_holding_a_text,
             check=kept_texts_reached, with_api=True),
    Scenario("API down holding a kept text until its session closed",
             api_down_until_the_session_closed, check=kept_texts_reached, with_api=True),
    Scenario("PostgreSQL stopped inside booking commits", postgres_stopped_in_bookings,
             check=bookings_answered, with_api=True),
    Scenario("call-back during a PostgreSQL outage [webhook]", postgres_outage_at_callback,
             "webhook", check=callbacks_answered_in_time, with_api=True,
             callbacks_via_api=True),
    Scenario("worker SIGKILL with a notice in the provider's hands [webhook]",
             kill_with_notice_in_hands, "webhook", check=notice_recorded_uncertain,
             roster=NOTICE_ROSTER),
]
"""The full size runs all of these; the smoke size the ones named in SMOKE."""
SMOKE = [
    "worker SIGKILL before the start",
    "worker SIGKILL in the grace period",
    "worker SIGKILL as audit rows commit [simulated]",
    "Temporal SIGTERM + restart",
    "PostgreSQL stopped [simulated]",
    "webhook 5xx burst [webhook]",
]
