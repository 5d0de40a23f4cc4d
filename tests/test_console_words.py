"""The console's pure parts: plain words for every audit event, the decisions offered, where
a notice goes next, the client's weekly attendance and the SVG charts (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from missed_session.application import console as cases
from missed_session.console import words
from missed_session.console.charts import Series, bar_chart
from missed_session.console.routes import _session_context
from missed_session.console.web import PREFIX, _environment
from missed_session.domain.access import Viewer, ViewerRole
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    DecisionKind,
    SessionState,
    SessionStatus,
)
from missed_session.domain.notices import NoticeSettings
from missed_session.domain.roster_file import parse_roster
from missed_session.store.console import SessionLine
from missed_session.store.notices import NoticeRow

AT = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


def event(kind: AuditEventType, **data: str | int | bool | None) -> AuditEvent:
    return AuditEvent(session_id="s-1", sequence=1, event_type=kind, occurred_at=AT,
                      data=data)


def test_every_audit_event_reads_as_a_sentence_without_codes() -> None:
    for kind in AuditEventType:
        text = words.describe(event(kind))
        assert text, kind
        assert "_" not in text, (kind, text)
    assert words.describe(event(AuditEventType.OUTREACH_ATTEMPTED, attempt=2,
                                result="no_answer")) == "Called the client (attempt 2): no answer"
    assert words.describe(event(AuditEventType.NOTICE_ACKNOWLEDGED, clinician_id="oc-lee",
                                via="http")) == "Acknowledged by oc-lee in the console"
    assert words.describe(event(
        AuditEventType.NOTICE_RESOLVED, clinician_id="oc-lee", outcome="Called the GP",
        note="welfare check requested")) == (
        "Resolved by oc-lee: Called the GP. Note: welfare check requested")
    assert words.notice_name("s-1/no-show-alert") == "No-show alert"
    assert words.duration(timedelta(minutes=65)) == "1 h 5 min"
    assert words.duration(timedelta(seconds=20)) == "under a minute"


def state(status: SessionStatus) -> SessionState:
    return SessionState.model_validate({"status": status.value, "attempts_made": 1,
                                        "next_action": None, "next_action_at": None,
                                        "outcome": None})


def test_only_decisions_that_can_succeed_are_offered() -> None:
    outreach = state(SessionStatus.OUTREACH)
    offered, refused = cases.decisions_now(outreach, [], has_emergency_contact=True)
    assert offered == (DecisionKind.ESCALATE_NOW, DecisionKind.MARK_SAFE,
                       DecisionKind.STAND_DOWN, DecisionKind.ADD_NOTE)
    assert refused == ()
    _, refused = cases.decisions_now(outreach, [], has_emergency_contact=False)
    assert refused == ((DecisionKind.ESCALATE_NOW, "no emergency contact is on file"),)
    sent = [event(AuditEventType.ESCALATION_SENT, basis="consent on file")]
    offered, refused = cases.decisions_now(outreach, sent, has_emergency_contact=True)
    assert DecisionKind.ESCALATE_NOW not in offered
    assert refused[0][1] == "the emergency contact has already been contacted"
    safe = [event(AuditEventType.CLINICIAN_DECISION, decision="mark_safe")]
    assert cases.decisions_now(outreach, safe, has_emergency_contact=True)[0] == (
        DecisionKind.ADD_NOTE,)
    uncertain = [event(AuditEventType.ESCALATION_UNCERTAIN, basis="consent on file")]
    assert DecisionKind.ESCALATE_NOW in cases.decisions_now(
        outreach, uncertain, has_emergency_contact=True)[0]  # escalate_now calls again
    blocked = [event(AuditEventType.ESCALATION_BLOCKED, reason="no consent on file")]
    assert cases.decisions_now(state(SessionStatus.AWAITING_CLINICIAN), blocked,
                               has_emergency_contact=True) == (
        (DecisionKind.ESCALATE_NOW, DecisionKind.MARK_SAFE, DecisionKind.STAND_DOWN,
         DecisionKind.ADD_NOTE), ())
    closed = cases.decisions_now(state(SessionStatus.CLOSED), [], has_emergency_contact=True)
    assert closed == ((), ((DecisionKind.ADD_NOTE, "the session is closed"),))
    assert cases.decisions_now(state(SessionStatus.WAITING), [],
                               has_emergency_contact=True)[0] == (DecisionKind.ADD_NOTE,)


ROSTER = """
[roster]
time_zone = "America/New_York"
accept_coverage_gaps = true
[roster.clinicians.t-ana]
role = "therapist"
sms = "+14155550101"
supervisor = "s-maya"
[roster.clinicians.oc-lee]
role = "on_call_clinician"
sms = "+14155550102"
[roster.clinicians.s-maya]
role = "clinical_supervisor"
sms = "+14155550104"
[[roster.on_call]]
clinician = "oc-lee"
"""


def row(state_: str = "open") -> NoticeRow:
    return NoticeRow(key="s-1/no-show-alert", session_id="s-1", therapist_id="t-ana",
                     kind="alert", priority="urgent", risk_tier="high", policy="high-risk",
                     state=state_, opened_at=AT, updated_at=AT, acknowledged_by=None,
                     acknowledged_via=None, acknowledged_at=None, resolved_by=None,
                     resolved_at=None)


def test_a_notice_says_who_it_goes_to_next_and_when() -> None:
    roster = parse_roster(ROSTER, "practice.toml").roster
    settings = NoticeSettings()  # high-risk: therapist 5 min, on-call 5, supervisor 10
    first = cases.next_rung(row(), [], settings, roster, AT, time_scale=1)
    assert first == cases.NextRung(AT + timedelta(minutes=5), "on_call", ("oc-lee",))
    climbed = [AuditEvent(session_id="s-1/no-show-alert", sequence=3,
                          event_type=AuditEventType.NOTICE_ESCALATED,
                          occurred_at=AT + timedelta(minutes=5),
                          data={"round": 1, "step": 2, "target": "on_call"})]
    second = cases.next_rung(row(), climbed, settings, roster, AT, time_scale=1)
    assert second == cases.NextRung(AT + timedelta(minutes=10), "supervisor", ("s-maya",))
    climbed.append(climbed[0].model_copy(update={
        "sequence": 5, "occurred_at": AT + timedelta(minutes=10),
        "data": {"round": 1, "step": 3, "target": "supervisor"}}))
    last = cases.next_rung(row(), climbed, settings, roster, AT, time_scale=1)
    assert last == cases.NextRung(AT + timedelta(minutes=20), "exhausted")
    assert cases.next_rung(row("acknowledged"), [], settings, roster, AT, time_scale=1) is None
    compressed = cases.next_rung(row(), [], settings, roster, AT, time_scale=60)
    assert compressed is not None
    assert compressed.at == AT + timedelta(seconds=5)


def test_weekly_attendance_counts_attended_and_missed_per_week() -> None:
    zone = ZoneInfo("America/New_York")

    def line(days_ago: int, outcome: str | None) -> SessionLine:
        return SessionLine(session_id=f"s-{days_ago}", client_ref="c-1", first_name="Robin",
                           therapist_id="t-ana", start=AT - timedelta(days=days_ago),
                           risk_tier="high", last_event="closed", outcome=outcome)

    weeks = cases.weekly_attendance(
        [line(0, "attended"), line(1, "reached"), line(7, "attended_late"),
         line(8, "cancelled"), line(200, "attended"), line(0, None)], AT, zone, weeks=4)
    # AT is a Monday: "1 day ago" (reached) falls in the week before, with "7 days ago".
    assert [(attended, missed) for _, attended, missed in weeks] == [
        (0, 0), (0, 0), (1, 1), (1, 0)]
    assert all(monday.weekday() == 0 for monday, _, _ in weeks)


def test_a_chart_escapes_its_labels_and_carries_its_figures_as_a_table() -> None:
    svg = str(bar_chart("No-shows <per> week", ["1 Dec", "8 Dec"],
                        [Series("t-<b>ana", [0, 3])], chart_id="c"))
    assert "<b>" not in svg
    assert "t-&lt;b&gt;ana" in svg
    assert 'role="img"' in svg
    assert "<title id=\"c-title\">No-shows &lt;per&gt; week</title>" in svg
    assert "<td>3</td>" in svg


def test_the_emergency_contacts_call_and_the_wait_for_a_person_read_plainly() -> None:
    called = event(AuditEventType.EMERGENCY_CONTACT_CALLED, result="no_answer",
                   basis="consent on file")
    assert words.describe(called) == "Called the emergency contact: no answer"
    assert words.call_came("answered_unknown").startswith("picked up, not clearly")
    assert words.describe(event(AuditEventType.NOTICE_RAN_OUT, notice="s-1/no-show-alert",
                                again_after_minutes=5)) == (
        "No-show alert ran out of steps with nobody acknowledging: the ladder climbs again "
        "in 5 min")
    assert words.describe(event(AuditEventType.CLINICIAN_ACKNOWLEDGED,
                                notice="s-1/nobody-acknowledged-2", clinician_id="t-ana")) == (
        "Acknowledged by t-ana (Nobody acknowledged: the ladder climbs again (2))")
    assert words.notice_name("s-1/nobody-acknowledged-1") == (
        "Nobody acknowledged: the ladder climbs again (1)")
    assert words.status("awaiting_clinician").startswith("Awaiting a clinician")
    assert "Called the emergency contact: no answer" in words.did((called,))


def test_the_session_page_says_when_the_emergency_contact_was_called_and_what_came_of_it(
) -> None:
    at = datetime(2026, 12, 7, 13, 14, tzinfo=UTC)  # 08:14 in New York
    trail = (
        AuditEvent(session_id="s-1", sequence=1, event_type=AuditEventType.SCHEDULED,
                   occurred_at=AT, data={"therapist_id": "t-ana", "risk_tier": "high"}),
        AuditEvent(session_id="s-1", sequence=2,
                   event_type=AuditEventType.EMERGENCY_CONTACT_CALLED, occurred_at=at,
                   data={"result": "no_answer", "reason": "", "basis": "consent on file"}),
        AuditEvent(session_id="s-1", sequence=3, event_type=AuditEventType.ESCALATION_BLOCKED,
                   occurred_at=at, data={"reason": "emergency contact unreachable"}),
    )
    view = cases.SessionView(session_id="s-1", therapist_id="t-ana", booking=None, state=None,
                             state_problem="not running here", trail=trail, plan=None,
                             notices=(), decisions=(), may_decide=False)
    who = Viewer("t-ana", ViewerRole.THERAPIST, "csrf")
    html = _environment().get_template("_session_live.html").render(
        prefix=PREFIX, **_session_context(who, view, ZoneInfo("America/New_York"), AT))
    assert "The emergency contact was called at 08:14: no answer" in html
    assert "does not record whether they answered" not in html
