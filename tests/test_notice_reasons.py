"""Notices that track their reason: which reason ends which notice, and what is said (pure).

Issue 25, item 4. The workflow side is in `tests/test_notices_reason.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from missed_session.console.words import describe
from missed_session.domain import events
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    CallResult,
    DecisionKind,
    Outcome,
)
from missed_session.domain.notices import (
    CLIENT_CONTACT,
    CLINICIAN_DECISION,
    SMS_LIMIT,
    CallOutcome,
    EndReason,
    decision_reason,
    emergency_call_outcome,
    emergency_call_title,
    end_reason,
    ends,
    no_show_title,
    notice_name,
    resolved_text,
    tells_therapist_of_call,
    to_tell,
)
from missed_session.domain.roster import NoticeRoute

KNOWN = ("no-show-alert", "escalation-blocked", "answer-unclear", "escalation-uncertain",
         "emergency-contact-called", "trail-refused")
TASKS = ("escalation-blocked", "answer-unclear", "escalation-uncertain")
names = st.sampled_from(KNOWN) | st.from_regex(r"[a-z][a-z-]{0,20}[a-z]", fullmatch=True)
reasons = st.sampled_from(EndReason)
numbers = st.none() | st.integers(min_value=1, max_value=99)
sessions = st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True)


def key(session: str, name: str, number: int | None) -> str:
    return f"{session}/{name}" + (f"-{number}" if number is not None else "")


@given(sessions, names, numbers, reasons)
def test_a_notice_ends_by_its_name_whatever_its_session_or_number(
    session: str, name: str, number: int | None, reason: EndReason,
) -> None:
    assert ends(key(session, name, number), reason) == ends(f"s/{notice_name(name)}", reason)
    if name in KNOWN:
        assert notice_name(key(session, name, number)) == name


@given(sessions, names.filter(lambda n: n not in KNOWN), reasons)
def test_a_notice_not_named_ends_by_no_reason(session: str, name: str,
                                              reason: EndReason) -> None:
    if notice_name(name) not in KNOWN:
        assert not ends(key(session, name, None), reason)


@given(sessions, st.sampled_from(TASKS), numbers, reasons)
def test_a_task_ends_only_on_the_clients_contact_or_a_clinicians_decision(
    session: str, name: str, number: int | None, reason: EndReason,
) -> None:
    if ends(key(session, name, number), reason):
        assert reason in CLIENT_CONTACT | CLINICIAN_DECISION


@given(sessions, numbers, reasons)
def test_the_no_show_alert_ends_on_every_reason_and_what_must_be_seen_on_none(
    session: str, number: int | None, reason: EndReason,
) -> None:
    assert ends(key(session, "no-show-alert", None), reason)
    assert not ends(key(session, "trail-refused", number), reason)
    assert not ends(key(session, "emergency-contact-called", number), reason)


@given(sessions, names, numbers)
def test_reached_and_checked_in_end_the_same_notices_and_marked_safe_ends_them_too(
    session: str, name: str, number: int | None,
) -> None:
    k = key(session, name, number)
    assert ends(k, EndReason.REACHED) == ends(k, EndReason.CHECKED_IN_LATE)
    if ends(k, EndReason.REACHED):
        assert ends(k, EndReason.MARKED_SAFE)


def test_blocked_escalation_is_not_ended_by_a_cancellation_nor_uncertain_one_by_contact() -> None:
    assert not ends("s/escalation-blocked", EndReason.CANCELLED)
    assert ends("s/escalation-blocked", EndReason.STOOD_DOWN)
    assert not ends("s/escalation-uncertain-2", EndReason.REACHED)
    assert ends("s/escalation-uncertain-2", EndReason.MARKED_SAFE)


@given(st.sampled_from(Outcome))
def test_only_contact_a_decision_or_a_cancellation_ends_a_reason(outcome: Outcome) -> None:
    reason = end_reason(outcome)
    unreached = {Outcome.ATTENDED, Outcome.UNREACHABLE_ESCALATED,
                 Outcome.UNREACHABLE_ESCALATION_BLOCKED}
    assert (reason is None) == (outcome in unreached)


told_lists = st.lists(st.tuples(st.sampled_from(["t-ana", "oc-lee", "s-maya", "oc-2"]),
                                st.sampled_from(NoticeRoute)), max_size=12)


@given(told_lists)
def test_each_person_told_is_told_once_on_the_first_route_they_were_told_on(
    told: list[tuple[str, NoticeRoute]],
) -> None:
    tell = to_tell(told)
    people = [who for who, _ in tell]
    assert len(people) == len(set(people))
    assert set(people) == {who for who, _ in told}
    for who, route in tell:
        assert route == next(r for w, r in told if w == who)
    assert people == sorted(people, key=[w for w, _ in told].index)
    assert to_tell(list(tell) + told) == tell  # told again: nothing new


@given(st.text(min_size=1, max_size=300).filter(lambda t: "\n" not in t),
       st.from_regex(r"c-[a-z0-9]{1,20}", fullmatch=True), reasons)
def test_the_resolved_message_fits_a_text_and_keeps_the_ref_and_the_reason(
    title: str, ref: str, reason: EndReason,
) -> None:
    text = resolved_text(title=f"{title} (client {ref})", client_ref=ref, reason=reason)
    assert len(text) <= SMS_LIMIT
    assert text.startswith(f"RESOLVED, client {ref}: ")
    assert f" - {reason.value}. No need to acknowledge." in text


def test_the_resolved_message_says_what_and_why_in_the_notices_own_words() -> None:
    text = resolved_text(title="No-show: outreach to the client has started (client c-9)",
                         client_ref="c-9", reason=EndReason.CHECKED_IN_LATE)
    assert text == ("RESOLVED, client c-9: No-show: outreach to the client has started - "
                    "the client checked in late. No need to acknowledge.")


NIGHT = datetime(2026, 12, 8, 4, 30, tzinfo=UTC)  # 23:30 in New York


@given(st.integers(min_value=0, max_value=23 * 60), st.booleans())
def test_the_alert_says_what_outreach_does(minutes: int, calling: bool) -> None:
    now = NIGHT
    opens = now + timedelta(minutes=minutes)
    title = no_show_title(now=now, opens=opens, time_zone="America/New_York",
                          emergency_call=calling)
    if minutes == 0:
        assert title.startswith("No-show: outreach to the client has started")
    else:
        assert title.startswith("No-show: outreach deferred until")
        assert title.split(";")[0].endswith(" America/New_York")
        assert "has started" not in title
    assert ("calling the emergency contact now" in title) == calling


def test_deferred_to_the_morning_names_the_clients_time() -> None:
    opens = datetime(2026, 12, 8, 13, 0, tzinfo=UTC)  # 08:00 in New York, the next day
    assert no_show_title(now=NIGHT, opens=opens, time_zone="America/New_York",
                         emergency_call=False) == (
        "No-show: outreach deferred until 08:00 America/New_York")
    same_day = datetime(2026, 12, 8, 8, 0, tzinfo=UTC)  # 03:00 the same morning
    assert no_show_title(now=same_day, opens=opens, time_zone="America/New_York",
                         emergency_call=True) == (
        "No-show: outreach deferred until 08:00 America/New_York; "
        "calling the emergency contact now")


def test_the_emergency_calls_outcome_is_read_from_its_event() -> None:
    sent = events.EscalationSent(basis="consent on file")
    assert emergency_call_outcome(sent) is CallOutcome.ANSWERED
    no_answer = events.EscalationBlocked(
        reason="emergency contact unreachable (the call was not answered)")
    assert emergency_call_outcome(no_answer) is CallOutcome.NO_ANSWER
    failed = events.EscalationBlocked(reason="emergency contact unreachable (invalid number)")
    assert emergency_call_outcome(failed) is CallOutcome.FAILED
    assert emergency_call_outcome(events.EscalationBlocked(reason="no consent on file")) is None
    uncertain = events.EscalationUncertain(basis="consent on file", reason="delivery uncertain")
    assert emergency_call_outcome(uncertain) is CallOutcome.NOT_KNOWN
    assert emergency_call_outcome(events.CheckedIn(late=True)) is None
    assert emergency_call_title(CallOutcome.NO_ANSWER) == (
        "The emergency contact was called: no answer")


def test_a_result_the_event_records_wins() -> None:
    class WithResult(events.EscalationBlocked):
        result: str | None = None

    recorded = WithResult(reason="anything", result=CallResult.NO_ANSWER.value)
    assert emergency_call_outcome(recorded) is CallOutcome.NO_ANSWER


def test_the_therapist_hears_of_every_call_but_one_they_decided_themselves() -> None:
    assert tells_therapist_of_call("t-ana", None)
    assert tells_therapist_of_call("t-ana", "oc-lee")
    assert not tells_therapist_of_call("t-ana", "t-ana")


@given(st.sampled_from(DecisionKind))
def test_a_decision_ends_a_reason_only_when_it_ends_outreach(kind: DecisionKind) -> None:
    reason = decision_reason(kind)
    assert (reason is not None) == (kind in {DecisionKind.MARK_SAFE, DecisionKind.STAND_DOWN})
    if reason is not None:
        assert reason in CLINICIAN_DECISION


def test_the_console_and_cli_words_for_a_notice_its_reason_resolved() -> None:
    at = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    ended = AuditEvent(session_id="s/no-show-alert", sequence=5, occurred_at=at,
                       event_type=AuditEventType.NOTICE_REASON_ENDED,
                       data={"reason": EndReason.REACHED.value, "told": "t-ana"})
    assert describe(ended) == "Resolved without anyone acknowledging it: the client was reached"
    sent = AuditEvent(session_id="s/no-show-alert", sequence=6, occurred_at=at,
                      event_type=AuditEventType.NOTICE_RESOLUTION_SENT,
                      data={"clinician_id": "oc-lee", "channel": "sms", "result": "failed"})
    assert describe(sent).startswith("Told oc-lee it is resolved, by ")
    assert describe(sent).endswith(" (failed)")
