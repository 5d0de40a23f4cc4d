"""The typed audit vocabulary: every event type round-trips, and old rows stay readable."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import pytest

from missed_session.domain import events
from missed_session.domain.events import (
    SCHEMA_VERSION_KEY,
    EventDetails,
    UnreadableEventError,
    new_event,
    read,
)
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    CallResult,
    CaringOffer,
    Channel,
    DecisionKind,
    LetterKind,
    Modality,
    NoticeKind,
    Outcome,
    Priority,
    ResponseChannel,
    RiskTier,
)
from tests.support.audit_replay import BRANCH_FILES, load, trail_from_history

AT = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)

EXAMPLES: list[EventDetails] = [
    events.Scheduled(client_ref="c-1", therapist_id="t-1", start=AT, duration_minutes=50,
                     modality=Modality.TELEHEALTH, risk_tier=RiskTier.HIGH,
                     grace_period_minutes=10, protocol="intensive", protocol_version="2026-11"),
    events.Rescheduled(previous_start=AT, start=AT.replace(hour=20), reason="clash at work"),
    events.Cancelled(reason="client is unwell"),
    events.CheckedIn(late=True),
    events.GracePeriodExpired(grace_period_minutes=15),
    events.TherapistAlerted(notice="s-1/no-show-alert"),
    events.OutreachAttempted(attempt=1, result=CallResult.NO_ANSWER),
    events.VoicemailLeft(attempt=1),
    events.MessageSent(attempt=2, channel=Channel.TEXT),
    events.OutreachFailed(attempt=1, channel=Channel.CALL, reason="invalid contact"),
    events.OutreachSkipped(attempt=1, channel=Channel.EMAIL, reason="no consent to email"),
    events.OutreachDeferred(action="outreach attempt 2", reason="outside the window", until=AT),
    events.ClientResponded(channel=ResponseChannel.TEXT, responder="client", note="ok, sorry"),
    events.OptedOut(channel=Channel.TEXT),
    events.OutreachUncertain(attempt=1, channel=Channel.CALL,
                             reason="stopped in flight: stand_down"),
    events.AnswerUnclear(channel=ResponseChannel.TEXT, responder="the client's number",
                         why="the reply says it is not from the client", note="wrong number",
                         task="s-1/answer-unclear-1"),
    events.EscalationUncertain(basis="consent on file", reason="delivery uncertain",
                               task="s-1/escalation-uncertain-1"),
    events.EscalationSent(basis="consent on file", consent_date=date(2026, 1, 15)),
    events.EscalationBlocked(reason="no consent on file", task="s-1/escalation-blocked"),
    events.ClinicianDecisionMade(decision=DecisionKind.ESCALATE_NOW, clinician_id="dr-1",
                                 reason="risk", legal_basis="vital interests"),
    events.PlanCreated(concerns="safety,logistical", tasks="safety_check", no_shows_90_days=2,
                       consecutive_no_shows=1),
    events.Closed(outcome=Outcome.UNREACHABLE_ESCALATED, attempts=3),
    events.TrailSuperseded(first=4, last=6),
    events.NoticeOpened(kind=NoticeKind.TASK, priority=Priority.URGENT,
                        risk_tier=RiskTier.HIGH, therapist_id="t-1", policy="high-risk",
                        roster_version=1),
    events.NoticeSent(round=1, step=1, target="therapist", clinician_id="t-1", channel="sms"),
    events.NoticeFailed(round=1, step=2, clinician_id="oc-1", channel="voice",
                        reason="invalid contact"),
    events.NoticeUncertain(round=1, step=2, clinician_id="oc-1", channel="sms",
                           reason="delivery uncertain"),
    events.NoticeSkipped(round=1, step=2, target="on_call", reason="nobody is on call"),
    events.NoticeClimbed(round=1, step=2, target="on_call"),
    events.NoticeExhausted(policy="high-risk", rounds=1, notified="t-1,oc-1,s-1"),
    events.NoticeAcknowledged(clinician_id="oc-1", via="sms", seconds_to_acknowledge=320,
                              step=2),
    events.NoticeResolved(clinician_id="oc-1", via="cli", outcome="client reached",
                          note="spoke with the client"),
    events.AwaitingClinician(awaiting="a clinician's decision (escalation is blocked)",
                             until=AT),
    events.ClinicianWaitTimedOut(waited_hours=24, outcome=Outcome.UNREACHABLE_ESCALATION_BLOCKED),
    events.CaringStarted(client_ref="c-1", origin_session_id="s-1", started_by="t-1",
                         messages=11, last_day=365),
    events.CaringSent(index=0, consent_record="consent-3"),
    events.CaringSkipped(index=1, reason="no text consent as of the day"),
    events.CaringEnded(reason="clinician", sent=1, by="t-1", note="client re-engaged"),
    events.BrakeHeld(episode="7", no_shows=200, due=200, window_minutes=30,
                     release_after_minutes=15, paged=True),
    events.BrakeReleased(episode="7", by="supervisor-maya", reason="outage over"),
    events.BrakeStoodDown(episode="7", by="supervisor-maya", reason="check-in outage"),
    events.ClinicianAcknowledged(notice="s-1/no-show-alert", clinician_id="oc-lee"),
    events.NoticeRanOut(notice="s-1/no-show-alert", again_after_minutes=5),
    events.NoticeRenewed(notice="s-1/nobody-acknowledged-1", round=1),
    events.EmergencyContactCalled(result="no_answer", basis="consent on file"),
    events.LetterPrepared(number=1, kind=LetterKind.FIRST_CLASS,
                          file="s-1/letter-1-first_class.pdf", digest="ab" * 32,
                          addressed=True, task="s-1/letter-1"),
    events.CaringOffered(mode=CaringOffer.CONFIRM, series_id="caring:c-1:s-1",
                         task="s-1/caring-offer"),
    events.CaringReplied(note="thanks, doing better", notice="caring:c-1:s-1/reply-1"),
    events.NoticeReasonEnded(reason="the client checked in late", told="t-1,oc-1"),
    events.NoticeResolutionSent(clinician_id="oc-1", channel="sms", result="sent"),
    events.JoinedOutreach(leader="s-1", rule="join"),
    events.OutreachJoined(joiner="s-2"),
    events.JoinedOutreachEnded(leader="s-1", outcome=Outcome.REACHED, own_ladder=False,
                               reason="followed the outreach of session s-1"),
]


def _stored(details: EventDetails, sequence: int = 1) -> AuditEvent:
    """The row as PostgreSQL gives it back: data through JSON text, as `jsonb` would."""
    event = new_event(session_id="s-1", sequence=sequence, occurred_at=AT, details=details)
    return event.model_copy(update={"data": json.loads(json.dumps(event.data))})


def test_every_event_type_has_exactly_one_model() -> None:
    assert set(events.VOCABULARY) == set(AuditEventType)
    assert {type(example) for example in EXAMPLES} == set(events.VOCABULARY.values())


@pytest.mark.parametrize("details", EXAMPLES, ids=[type(e).__name__ for e in EXAMPLES])
def test_round_trip_through_a_stored_row(details: EventDetails) -> None:
    stored = _stored(details)
    assert stored.event_type is details.event_type
    assert stored.data[SCHEMA_VERSION_KEY] == details.schema_version
    assert read(stored) == details
    # And through the envelope as a Temporal payload or an export carries it.
    assert read(AuditEvent.model_validate_json(stored.model_dump_json())) == details


def test_rows_written_before_schema_versions_read_as_version_one() -> None:
    old = AuditEvent(session_id="s-1", sequence=2, event_type=AuditEventType.ESCALATION_SENT,
                     occurred_at=AT, data={"basis": "consent on file",
                                           "consent_date": "2026-01-15"})
    assert read(old) == events.EscalationSent(basis="consent on file",
                                              consent_date=date(2026, 1, 15))
    scheduled_before_protocols = AuditEvent(
        session_id="s-1", sequence=1, event_type=AuditEventType.SCHEDULED, occurred_at=AT,
        data={"client_ref": "c-1", "therapist_id": "t-1", "start": "2026-12-02T18:00:00+00:00",
              "duration_minutes": 50, "modality": "in_person", "risk_tier": "standard",
              "grace_period_minutes": 15},
    )
    details = read(scheduled_before_protocols)
    assert isinstance(details, events.Scheduled)
    assert details.start == AT
    assert details.protocol is None


class _ClosedV2(events.Closed):
    """How `Closed` would change shape: `attempts` renamed, and a field added."""

    schema_version: ClassVar[int] = 2
    attempts: int = 0
    outreach_attempts: int
    escalated: bool = False

    @classmethod
    def upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        if version == 1:
            data = dict(data)
            data["outreach_attempts"] = data.pop("attempts")
        return data


def test_an_old_row_stays_readable_after_its_model_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    written_by_v1 = _stored(events.Closed(outcome=Outcome.REACHED, attempts=2))
    monkeypatch.setitem(events.VOCABULARY, AuditEventType.CLOSED, _ClosedV2)
    upgraded = read(written_by_v1)
    assert upgraded == _ClosedV2(outcome=Outcome.REACHED, outreach_attempts=2)
    written_by_v2 = _stored(_ClosedV2(outcome=Outcome.REACHED, outreach_attempts=3,
                                      escalated=True), sequence=2)
    assert written_by_v2.data[SCHEMA_VERSION_KEY] == 2
    assert read(written_by_v2) == _ClosedV2(outcome=Outcome.REACHED, outreach_attempts=3,
                                            escalated=True)


def test_a_row_from_a_newer_schema_is_refused_by_name() -> None:
    row = _stored(events.CheckedIn(late=False), sequence=4)
    newer = row.model_copy(update={"data": {**row.data, SCHEMA_VERSION_KEY: 2}})
    with pytest.raises(UnreadableEventError, match=r"s-1#4 \(checked_in\) was written by "
                                                   r"schema version 2; this code reads up to "
                                                   r"version 1"):
        read(newer)


def test_a_row_that_does_not_match_its_model_names_the_field() -> None:
    row = AuditEvent(session_id="s-1", sequence=3, event_type=AuditEventType.OUTREACH_FAILED,
                     occurred_at=AT, data={"attempt": 1, "channel": "pigeon", "reason": "x"})
    with pytest.raises(UnreadableEventError, match=r"s-1#3 \(outreach_failed\).*channel"):
        read(row)


def test_details_refuse_fields_they_do_not_know() -> None:
    with pytest.raises(ValueError, match="phone"):
        events.CheckedIn.model_validate({"late": False, "phone": "+14155550123"})


def test_an_escalation_on_a_decision_names_who_decided_and_why() -> None:
    with pytest.raises(ValueError, match="names the clinician and legal basis"):
        events.EscalationSent(basis="clinician decision", reason="risk")


def test_floats_cannot_enter_a_row_whose_hash_must_survive_jsonb() -> None:
    with pytest.raises(ValueError, match=r"data\.ratio"):
        AuditEvent(session_id="s-1", sequence=1, event_type=AuditEventType.CLOSED,
                   occurred_at=AT, data={"ratio": 0.5})


@pytest.mark.parametrize("path", BRANCH_FILES, ids=[path.stem for path in BRANCH_FILES])
async def test_every_event_the_workflow_records_reads_back_typed(path: Any) -> None:
    trail = await trail_from_history(load(path))
    assert trail
    for event in trail:
        details = read(event)
        assert details.event_type is event.event_type
        assert details.to_data() == event.data
