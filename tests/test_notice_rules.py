"""Notice rules, pure: policy choice, the clinician's message, codes, links, acknowledgment."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from missed_session.config import ConfigurationError, load_settings
from missed_session.domain.models import NoticeKind, Priority, RiskTier
from missed_session.domain.notices import (
    Acknowledgment,
    AckVia,
    IssuedCode,
    NoticeSettings,
    Policy,
    Step,
    Target,
    Then,
    ack_problem,
    code_hash,
    link_problem,
    link_signature,
    message,
    new_code,
    parse_sms,
    sms,
)
from missed_session.domain.practice import PracticeFileError
from missed_session.domain.roster_file import parse_roster
from worker import notice_links

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def test_default_policies_climb_faster_for_high_risk_than_routine() -> None:
    settings = NoticeSettings()
    high = settings.policy_for(Priority.ROUTINE, RiskTier.HIGH)
    assert [(s.notify, s.minutes) for s in high.steps] == [
        (Target.THERAPIST, 5), (Target.ON_CALL, 5), (Target.SUPERVISOR, 10)]
    routine = settings.policy_for(Priority.ROUTINE, RiskTier.STANDARD)
    assert routine.name == "routine"
    assert routine.steps[0].minutes == 30
    assert settings.policy_for(Priority.URGENT, RiskTier.STANDARD).name == "urgent"


def test_a_repeating_policy_climbs_its_ladder_again() -> None:
    policy = Policy(name="twice", steps=(Step(notify=Target.ON_CALL, minutes=5),),
                    then=Then.REPEAT, repeats=1)
    assert policy.rounds == 2
    with pytest.raises(ValidationError, match="needs repeats"):
        Policy(name="forever", steps=(Step(notify=Target.ON_CALL, minutes=5),),
               then=Then.REPEAT)


def test_policies_without_a_catch_all_are_refused_in_the_file() -> None:
    text = """
[[notices.policies]]
name = "high-only"
risk_tiers = ["high"]
steps = [{ notify = "therapist", minutes = 5 }]
"""
    with pytest.raises(PracticeFileError, match=r"x.toml: notices: policies: .*must match every"):
        parse_roster(text, "x.toml")
    bad_step = text.replace('risk_tiers = ["high"]\n', "").replace('"therapist"', '"nurse"')
    with pytest.raises(PracticeFileError, match=r"notices.policies.0.steps.0.notify"):
        parse_roster(bad_step, "x.toml")


def test_the_message_carries_ref_tier_what_and_code_and_the_name_only_if_allowed() -> None:
    text = message(priority=Priority.URGENT, risk_tier=RiskTier.HIGH,
                   title="No-show: outreach to the client has started (client c-42)",
                   kind=NoticeKind.ALERT, code="K7Q2MD", first_name=None, link=None)
    assert text.startswith("URGENT (high risk): No-show")
    assert "c-42" in text
    assert "ACK K7Q2MD" in text
    assert "Reply 1" in text
    assert "first name" not in text
    named = message(priority=Priority.URGENT, risk_tier=RiskTier.HIGH, title="t (client c-42)",
                    kind=NoticeKind.TASK, code="K7Q2MD", first_name="Robin",
                    link="https://n.example/a?x=1")
    assert "Client first name: Robin." in named
    assert "resolve it" in named
    assert named.endswith("https://n.example/a?x=1")


def test_codes_are_from_the_workflows_random_and_compared_by_hash() -> None:
    code = new_code(random.Random(7))
    assert code == new_code(random.Random(7))
    assert len(code) == 6
    assert not set(code) & set("01OI")
    assert code_hash(code.lower()) == code_hash(code)


@pytest.mark.parametrize(("body", "parsed"), [
    ("1", (True, None)), (" ack ", (True, None)), ("ACK k7q2md", (True, "K7Q2MD")),
    ("Ack K7Q2MD\n", (True, "K7Q2MD")), ("yes", (False, None)), ("STOP", (False, None)),
    ("12", (False, None)),
])
def test_sms_replies_that_acknowledge(body: str, parsed: tuple[bool, str | None]) -> None:
    assert parse_sms(body) == parsed


ISSUED = {
    "t-ana": IssuedCode(clinician_id="t-ana", code_hash=code_hash("AAAAAA"),
                        number="+14155550101", issued_at=NOW, expires_at=NOW + timedelta(hours=24)),
    "oc-lee": IssuedCode(clinician_id="oc-lee", code_hash=code_hash("BBBBBB"),
                         number="+14155550102", issued_at=NOW,
                         expires_at=NOW + timedelta(hours=24)),
}


@pytest.mark.parametrize(("ack", "expected"), [
    (Acknowledgment(via=AckVia.SMS, code="bbbbbb", from_number="+14155550102"), (None, "oc-lee")),
    (Acknowledgment(via=AckVia.SMS, clinician_id="t-ana", from_number="+14155550101"),
     (None, "t-ana")),
    (Acknowledgment(via=AckVia.CLI, clinician_id="oc-lee"), (None, "oc-lee")),
    (Acknowledgment(via=AckVia.SMS, code="CCCCCC", from_number="+14155550102"),
     ("unknown code", None)),
    (Acknowledgment(via=AckVia.SMS, code="BBBBBB", from_number="+14155550101"),
     ("the reply did not come from the notified clinician's number", None)),
    (Acknowledgment(via=AckVia.CLI, code="BBBBBB", clinician_id="t-ana"),
     ("the code was not sent to t-ana", None)),
    (Acknowledgment(via=AckVia.CLI, clinician_id="s-maya"),
     ("s-maya was not notified of this notice", None)),
    (Acknowledgment(via=AckVia.CLI), ("a code or the clinician is required", None)),
])
def test_acknowledgment_rules(ack: Acknowledgment, expected: tuple[str | None, str | None]) -> None:
    assert ack_problem(ISSUED, ack, now=NOW, acknowledged_by=None, resolved=False) == expected


def test_an_expired_or_used_code_or_a_resolved_notice_is_refused() -> None:
    ack = Acknowledgment(via=AckVia.CLI, code="AAAAAA")
    later = NOW + timedelta(hours=24)
    assert ack_problem(ISSUED, ack, now=later, acknowledged_by=None, resolved=False) == (
        "the code expired at 2026-12-02 15:00 UTC", None)
    assert ack_problem(ISSUED, ack, now=NOW, acknowledged_by="oc-lee", resolved=False) == (
        "the notice was already acknowledged by oc-lee", None)
    assert ack_problem(ISSUED, ack, now=NOW, acknowledged_by=None, resolved=True) == (
        "the notice is already resolved", None)


def test_signed_links_are_checked_for_signature_and_expiry() -> None:
    secret = b"s3cret"
    expires = int((NOW + timedelta(hours=1)).timestamp())
    signature = link_signature(secret, "s-1/no-show-alert", "t-ana", expires)
    assert link_problem(secret, "s-1/no-show-alert", "t-ana", expires, signature, now=NOW) is None
    assert link_problem(secret, "s-1/no-show-alert", "oc-lee", expires, signature,
                        now=NOW) == "the link's signature does not match"
    assert link_problem(b"other", "s-1/no-show-alert", "t-ana", expires, signature,
                        now=NOW) == "the link's signature does not match"
    assert link_problem(secret, "s-1/no-show-alert", "t-ana", expires, signature,
                        now=NOW + timedelta(hours=2)) == "the link has expired"


def test_a_link_endpoint_needs_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSR_CONFIG_FILE", raising=False)
    monkeypatch.delenv("MSR_NOTICE_LINK_SECRET", raising=False)
    with pytest.raises(ConfigurationError,
                       match="notice_link_secret is required with notice_link_url"):
        load_settings(notice_link_url="https://notices.example.org/ack")
    settings = load_settings(notice_link_url="https://notices.example.org/ack",
                             notice_link_secret="s3cret")
    links = notice_links(settings)
    assert links is not None
    assert links.link("s-1/no-show-alert", "t-ana", NOW).startswith(
        "https://notices.example.org/ack?notice=s-1%2Fno-show-alert&clinician=t-ana&expires=")


def test_the_sms_form_fits_one_text_and_keeps_ref_and_code() -> None:
    title = ("Client unreachable; escalation blocked: consent covers safety concerns only. "
             "Decide next steps now (client client-20261201081651-4)")
    text = sms(priority=Priority.URGENT, risk_tier=RiskTier.ELEVATED, title=title,
               kind=NoticeKind.TASK, code="K7Q2MD", client_ref="client-20261201081651-4",
               first_name=None)
    assert len(text) <= 160
    assert text.startswith("URGENT elevated risk, client client-20261201081651-4: Client")
    assert "..." in text
    assert text.endswith("Act, then resolve. Reply 1 or ACK K7Q2MD")
    short = sms(priority=Priority.ROUTINE, risk_tier=RiskTier.STANDARD,
                title="No-show: outreach to the client has started (client c-1)",
                kind=NoticeKind.ALERT, code="K7Q2MD", client_ref="c-1", first_name="Robin")
    assert short == ("ROUTINE standard risk, client c-1 (Robin): No-show: outreach to the "
                     "client has started. Reply 1 or ACK K7Q2MD")
