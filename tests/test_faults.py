"""The fault suite at a small size, and the counting it reports.

The end-to-end part runs five scenarios at once, each on its own Temporal dev server (on its
database file), its own PostgreSQL and its own `worker.py` process, two scripted sessions
each (a client who calls back after the voicemail; an unreachable high-risk client with a
consenting emergency contact), and asserts the counts of the table `python -m faults`
prints; every scenario must meet the bar and its own check. The counting part checks,
without servers, that each kind of miss is counted, and that the channel faults' checks
catch a refused or hung step sent again, recorded wrongly, or recorded too late.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from faults.checks import hangs_ended, notice_in_flight_honoured, refusals_honoured
from faults.clients import Script, scripted_session
from faults.count import Counts, Effect, NoticeRecord, SessionRecord, count
from faults.harness import CallbackAnswer, Harness
from faults.receiver import Delivery
from faults.run import Outcome, run_scenarios, table
from faults.scenarios import (
    BOOKINGS,
    SCENARIOS,
    Size,
    bookings_answered,
    callbacks_answered_in_time,
    kept_texts_reached,
)
from missed_session.domain.models import AuditEvent, AuditEventType
from missed_session.domain.models import Outcome as SessionOutcome
from tests.support.servers import server_folder

SIZE = Size("test", (Script.CALLS_BACK, Script.UNREACHABLE_CONSENT), postgres_outage=8.0,
            settle=100.0, parallel=5)
"""Two sessions per scenario; PostgreSQL down 8 s (the full size: 60 s). A session still
open 100 s after its fault counts as open (a blocked escalation awaits a clinician one
protocol hour, 60 s at the suite's time scale, before it closes as timed out)."""

CHOSEN = (
    "worker SIGKILL in the grace period",
    "webhook 5xx burst [webhook]",
    "PostgreSQL stopped [simulated]",
    "worker SIGKILL as audit rows commit [simulated]",
    "webhook 4xx refusal [webhook]",
)
"""The scenarios the test runs (a subset of `faults.scenarios.SCENARIOS`)."""


@pytest.fixture(scope="module")
async def outcomes() -> AsyncIterator[dict[str, Outcome]]:
    scenarios = [scenario for scenario in SCENARIOS if scenario.name in CHOSEN]
    assert len(scenarios) == len(CHOSEN)
    directory = server_folder("msr-test-faults-")
    results = await run_scenarios(scenarios, SIZE, directory, say=False)
    print(table(results))  # shown with -s, and in the report of a failing test
    yield {result.scenario: result for result in results}
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set")
@pytest.mark.parametrize("scenario", CHOSEN)
def test_every_session_survives_the_fault(outcomes: dict[str, Outcome], scenario: str) -> None:
    outcome = outcomes[scenario]
    assert outcome.error is None, "\n".join(outcome.notes)
    assert outcome.notes or scenario.startswith("webhook"), "the fault never struck"
    counts = outcome.counts
    assert counts.sessions == len(SIZE.scripts)
    detail = "\n".join([*outcome.notes, *counts.problems])
    assert (counts.correct, counts.failed, counts.still_open) == (counts.sessions, 0, 0), detail
    assert (counts.duplicate_effects, counts.lost_events, counts.duplicate_events) == (0, 0, 0), (
        detail)
    assert (counts.chains_ok, counts.replays_ok) == (counts.sessions, counts.sessions), detail
    assert not outcome.checks, "\n".join([*outcome.notes, *outcome.checks])


# -- the counting, without servers -----------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _event(sequence: int, event_type: AuditEventType, **data: str | int) -> AuditEvent:
    return AuditEvent(session_id="s1", sequence=sequence, event_type=event_type,
                      occurred_at=NOW, data=data)


TRAIL = [
    _event(1, AuditEventType.SCHEDULED),
    _event(2, AuditEventType.GRACE_PERIOD_EXPIRED),
    _event(3, AuditEventType.THERAPIST_ALERTED, notice="n1"),
    _event(4, AuditEventType.OUTREACH_ATTEMPTED, attempt=1, result="no_answer"),
    _event(5, AuditEventType.VOICEMAIL_LEFT, attempt=1),
    _event(6, AuditEventType.CLIENT_RESPONDED, channel="call"),
    _event(7, AuditEventType.PLAN_CREATED),
    _event(8, AuditEventType.CLOSED, outcome="reached"),
]
EFFECTS = [Effect("session-s1/attempt-1/call", "call"),
           Effect("session-s1/attempt-1/voicemail", "voicemail")]


def _record(**changes: object) -> SessionRecord:
    fields: dict[str, object] = {
        "session_id": "s1", "expected": SessionOutcome.REACHED, "status": "COMPLETED",
        "outcome": SessionOutcome.REACHED, "trail": TRAIL, "effects": EFFECTS,
        "chain_ok": True, "replay_ok": True,
    }
    fields.update(changes)
    return SessionRecord(**fields)  # type: ignore[arg-type]


def test_a_clean_session_counts_as_correct() -> None:
    counts = count([_record()])
    assert counts == Counts(sessions=1, correct=1, chains_ok=1, replays_ok=1)
    assert counts.ok


def test_a_wrong_outcome_or_a_failed_workflow_is_a_miss() -> None:
    wrong = count([_record(outcome=SessionOutcome.UNREACHABLE_ESCALATED)])
    assert (wrong.correct, wrong.ok) == (0, False)
    failed = count([_record(status="FAILED", outcome=None, trail=TRAIL[:-1])])
    assert (failed.failed, failed.lost_events, failed.correct) == (1, 1, 0)
    assert "no closed event" in " ".join(failed.problems)
    running = count([_record(status="RUNNING", outcome=None)])
    assert (running.still_open, running.ok) == (1, False)


def test_a_second_delivery_of_a_step_is_a_duplicate_effect() -> None:
    counts = count([_record(effects=[*EFFECTS, EFFECTS[0], EFFECTS[0]])])
    assert counts.duplicate_effects == 2
    assert not counts.ok


def test_gaps_and_undocumented_deliveries_are_lost_events() -> None:
    gap = count([_record(trail=[e for e in TRAIL if e.sequence != 5])])
    # sequence 5 is missing, and with it the voicemail the channel did leave
    assert gap.lost_events == 2
    escalation = Effect("session-s1/escalation", "message")
    undocumented = count([_record(effects=[*EFFECTS, escalation])])
    assert undocumented.lost_events == 1
    blocked = [*TRAIL[:-1], _event(8, AuditEventType.ESCALATION_BLOCKED, reason="x"),
               _event(9, AuditEventType.CLOSED, outcome="reached")]
    assert count([_record(trail=blocked, effects=[*EFFECTS, escalation])]).lost_events == 0


def test_a_delivery_recorded_as_uncertain_is_documented() -> None:
    # A voicemail the provider may have taken (a killed worker's step) is recorded as
    # uncertain, not re-sent: that documents the delivery.
    uncertain = [*TRAIL[:4],
                 _event(5, AuditEventType.OUTREACH_UNCERTAIN, attempt=1, channel="voicemail",
                        reason="delivery uncertain"),
                 *TRAIL[5:]]
    assert count([_record(trail=uncertain)]).lost_events == 0
    elsewhere = [*uncertain[:4],
                 _event(5, AuditEventType.OUTREACH_UNCERTAIN, attempt=1, channel="text",
                        reason="delivery uncertain"),
                 *uncertain[5:]]
    assert count([_record(trail=elsewhere)]).lost_events == 1  # another channel's step
    escalation = Effect("session-s1/escalation", "message")
    unsure = [*TRAIL[:-1], _event(8, AuditEventType.ESCALATION_UNCERTAIN,
                                  basis="consent on file", reason="delivery uncertain"),
              _event(9, AuditEventType.CLOSED, outcome="reached")]
    assert count([_record(trail=unsure, effects=[*EFFECTS, escalation])]).lost_events == 0


def test_the_same_event_twice_is_a_duplicate_event() -> None:
    twice = [*TRAIL[:5], _event(6, AuditEventType.VOICEMAIL_LEFT, attempt=1), *[
        _event(e.sequence + 1, e.event_type, **e.data) for e in TRAIL[5:]  # type: ignore[arg-type]
    ]]
    counts = count([_record(trail=twice)])
    assert counts.duplicate_events == 1
    assert counts.lost_events == 0
    assert "voicemail_left attempt 1" in " ".join(counts.problems)


def test_broken_chains_and_failed_replays_are_counted() -> None:
    counts = count([_record(chain_ok=False, problems=["BROKEN s1: row 3 changed"]),
                    _record(replay_ok=False)])
    assert (counts.chains_ok, counts.replays_ok, counts.ok) == (1, 1, False)
    assert "BROKEN s1: row 3 changed" in counts.problems[0]


def test_failed_steps_are_counted_but_do_not_miss_the_bar() -> None:
    failed = [*TRAIL[:4], _event(5, AuditEventType.OUTREACH_FAILED, attempt=1,
                                 channel="voicemail", reason="channel failed"),
              *TRAIL[5:]]
    counts = count([_record(trail=failed, effects=EFFECTS[:1])])
    assert (counts.failed_steps, counts.lost_events, counts.ok) == (1, 0, True)


# -- the channel faults' own checks, without servers ------------------------------------------

KEY = "session-s1/attempt-2/call"
SEEN_AT = NOW.timestamp()


def _request(key: str = KEY) -> Delivery:
    return Delivery(key, "s1", key.rsplit("/", 1)[-1], "+15555550100", SEEN_AT)


def _trail_with(event_type: AuditEventType, *, after: float = 1.0, **data: str | int) -> list[
        AuditEvent]:
    event = AuditEvent(session_id="s1", sequence=5, event_type=event_type,
                       occurred_at=NOW + timedelta(seconds=after), data=data)
    return [*TRAIL[:4], event]


def test_a_refused_step_must_be_sent_once_and_recorded_as_rejected() -> None:
    rejected = _record(trail=_trail_with(AuditEventType.OUTREACH_FAILED, attempt=2,
                                         channel="call", reason="rejected by the channel"))
    assert refusals_honoured([_request()], [rejected]).problems == []
    again = refusals_honoured([_request(), _request()], [rejected]).problems
    assert again == ["attempt-2/call was refused and sent again (2 requests)"]
    failed = _record(trail=_trail_with(AuditEventType.OUTREACH_FAILED, attempt=2,
                                       channel="call", reason="channel failed after retries"))
    assert "the trail says outreach_failed" in refusals_honoured([_request()], [failed]).problems[0]
    assert refusals_honoured([], [rejected]).problems == [
        "the provider refused nothing: the fault never struck"]
    blocked = _record(trail=_trail_with(AuditEventType.ESCALATION_BLOCKED,
                                        reason="emergency contact unreachable "
                                               "(rejected by the channel)"))
    assert "no task for a person" in refusals_honoured(
        [_request("session-s1/escalation")], [blocked]).problems[0]


def test_a_hung_step_must_be_recorded_uncertain_in_bounded_time_and_never_resent() -> None:
    uncertain = _record(trail=_trail_with(AuditEventType.OUTREACH_UNCERTAIN, after=10.0,
                                          attempt=2, channel="call",
                                          reason="delivery uncertain"))
    found = hangs_ended([_request()], [uncertain], bound=30.0)
    assert (found.problems, found.notes) == (
        [], ["s1: attempt-2/call hung: outreach_uncertain after 10 s"])
    assert hangs_ended([_request()], [uncertain], bound=5.0).problems == [
        "s1: attempt-2/call hung; recorded uncertain only after 10 s"]
    assert hangs_ended([_request(), _request()], [uncertain]).problems == [
        "attempt-2/call was left unanswered and sent again (2 requests)"]
    failed = _record(trail=_trail_with(AuditEventType.OUTREACH_FAILED, attempt=2,
                                       channel="call", reason="channel failed after retries"))
    assert "may have acted" in hangs_ended([_request()], [failed]).problems[0]
    untold = _record(trail=_trail_with(AuditEventType.ESCALATION_UNCERTAIN,
                                       reason="delivery uncertain"))
    assert "no task for a person" in hangs_ended(
        [_request("session-s1/escalation")], [untold]).problems[0]


NOTICE = "s1/no-show-alert"
NOTICE_SEND = f"notice-{NOTICE}/round-1/step-1/t-faults/sms"


NoticeRow = tuple[AuditEventType, float, dict[str, str | int]]
"""A notice event: its type, seconds after NOW, its data."""


def _notice(*events: NoticeRow,
            chain_ok: bool = True, replay_ok: bool = True) -> NoticeRecord:
    """A notice's trail: opened, then `events` (type, seconds after NOW, data)."""
    opened = AuditEvent(session_id=NOTICE, sequence=1, event_type=AuditEventType.NOTICE_OPENED,
                        occurred_at=NOW, data={})
    trail = [opened, *(AuditEvent(session_id=NOTICE, sequence=n, event_type=kind,
                                  occurred_at=NOW + timedelta(seconds=after), data=data)
                       for n, (kind, after, data) in enumerate(events, start=2))]
    return NoticeRecord(NOTICE, trail, chain_ok, replay_ok)


SEND: dict[str, str | int] = {"round": 1, "step": 1, "clinician_id": "t-faults",
                              "channel": "sms"}
UNCERTAIN: NoticeRow = (AuditEventType.NOTICE_UNCERTAIN, 10.0,
                        {**SEND, "reason": "delivery uncertain"})
CLIMB: NoticeRow = (AuditEventType.NOTICE_CLIMBED, 15.0,
                    {"round": 1, "step": 2, "target": "on_call"})


def _at(row: NoticeRow, seconds: float) -> NoticeRow:
    return row[0], seconds, row[2]


def _held(notice: NoticeRecord, deliveries: int = 1) -> list[str]:
    held = Delivery(NOTICE_SEND, "s1", "text", "+15555559001", SEEN_AT)
    return notice_in_flight_honoured(held, [held] * deliveries, [notice],
                                     restarted_at=SEEN_AT, rung_seconds=5.0).problems


def test_a_notice_held_at_the_kill_must_be_uncertain_and_its_rung_climb_in_time() -> None:
    honest = _notice(UNCERTAIN, CLIMB)
    held = Delivery(NOTICE_SEND, "s1", "text", "+15555559001", SEEN_AT)
    found = notice_in_flight_honoured(held, [held], [honest], restarted_at=SEEN_AT,
                                      rung_seconds=5.0)
    assert found.problems == []
    assert "notice_uncertain 10.0 s after the restart; notice_climbed 5.0 s later" in (
        found.notes[-1])
    send = "notice s1/no-show-alert round 1 step 1 sms"
    # the record: retried as a failure, then the ladder climbs at once
    failed = _notice((AuditEventType.NOTICE_FAILED, 150.0,
                      {**SEND, "reason": "channel failed after retries"}),
                     (AuditEventType.NOTICE_CLIMBED, 150.0, CLIMB[2]))
    assert _held(failed) == [
        "notice s1/no-show-alert: notice_failed round 1 step 1 sms (channel failed after "
        "retries)",
        f"{send} was in the provider's hands at the kill; the trail says notice_failed "
        "(channel failed after retries)"]
    # uncertain, but only once the dead worker's 2-minute timeout ran out: the rung stalled
    stalled = _notice(_at(UNCERTAIN, 140.0), _at(CLIMB, 145.0))
    assert _held(stalled) == [
        f"{send}: the rung climbed 145 s after the restart (bound 35 s: the rung stalled)"]
    # uncertain, yet climbed at once as after a failed send
    early = _notice(UNCERTAIN, _at(CLIMB, 10.0))
    assert _held(early) == [f"{send}: climbed 0.0 s after notice_uncertain, before the "
                            "rung's 5 s (taken for a failed send)"]
    assert _held(_notice(UNCERTAIN)) == [
        f"{send}: notice_uncertain, and the ladder never climbed after it (after it, its "
        "trail has: nothing)"]
    assert _held(honest, deliveries=2) == [
        "notice send s1/no-show-alert/round-1/step-1/t-faults/sms was sent 2 times"]
    assert _held(_notice(UNCERTAIN, CLIMB, replay_ok=False)) == [
        "notice s1/no-show-alert: history does not replay"]
    assert notice_in_flight_honoured(None, [], [honest], restarted_at=SEEN_AT,
                                     rung_seconds=5.0).problems == [
        "no notice reached the provider: the fault never struck"]


def _harness() -> Harness:
    return Harness(Path("unused"), "simulated", 60.0)


def test_a_kept_text_must_reach_its_session_or_its_therapist_in_time() -> None:
    run = _harness()
    run.facts = {"kept_texts_settled_after": 3.0, "late_notices": {"s1/late-text-m2": "urgent"},
                 "kept_texts": [
                     {"message_id": "m1", "outcome": "delivered", "session_id": "s1",
                      "reason": None},
                     {"message_id": "m2", "outcome": "late_response", "session_id": "s1",
                      "reason": "s1/late-text-m2"}]}
    escalated = _record(trail=_trail_with(AuditEventType.ESCALATION_SENT))
    assert kept_texts_reached(run, [escalated]).problems == []
    run.facts["late_notices"] = {"s1/late-text-m2": "routine"}
    assert kept_texts_reached(run, [escalated]).problems == [
        "kept text m2: the session escalated and the notice is not urgent"]
    run.facts["late_expected"] = True  # the session closed before the API came back
    run.facts["late_notices"] = {"s1/late-text-m2": "urgent"}
    assert kept_texts_reached(run, [escalated]).problems == ["kept text m1: delivered"]
    run.facts["late_expected"] = False
    run.facts["kept_texts"][1]["outcome"] = "session_gone"
    run.facts["kept_texts_settled_after"] = 130.0  # the two-minute lease of a dead API
    assert kept_texts_reached(run, [escalated]).problems == [
        "kept texts settled 130.0 s after the restart (bound 45 s)",
        "kept text m2: session_gone"]


def test_bookings_must_never_be_answered_500_and_all_must_be_made() -> None:
    run = _harness()
    booked = {f"b-{n}": 201 for n in range(BOOKINGS)}
    run.facts = {"booking_statuses": {201: BOOKINGS, 503: 7}, "booking_final": booked}
    assert bookings_answered(run, []).problems == []
    run.facts = {"booking_statuses": {201: BOOKINGS - 1, 500: 1},
                 "booking_final": {**booked, "b-0": 500}}
    assert bookings_answered(run, []).problems == [
        "bookings answered {500: 1}", "bookings not booked: {'b-0': 500}"]


def test_a_call_back_must_be_answered_within_a_phone_systems_patience() -> None:
    run = _harness()
    booking = scripted_session("cb", 0, Script.CALLS_BACK, start=NOW, time_scale=60.0)
    run.sessions = [booking]
    assert callbacks_answered_in_time(run, []).problems == [
        "cb-0: no call-back was answered"]
    run.facts["outage"] = (100.0, 130.0)
    run.callback_answers = [CallbackAnswer("cb-0", 202, 3.2, "kept", 105.0)]
    assert callbacks_answered_in_time(run, []).problems == []
    run.callback_answers = [CallbackAnswer("cb-0", 200, 58.0, "accepted", 105.0)]
    assert callbacks_answered_in_time(run, []).problems == [
        "cb-0: call-back answered 200 after 58.0 s (accepted)"]
    run.callback_answers = [CallbackAnswer("cb-0", 200, 0.2, "responded", 140.0)]
    assert callbacks_answered_in_time(run, []).problems == [
        "cb-0: the call-back came outside the outage (the fault did not strike it)"]
