"""What the client and the emergency contact hear: discreet, minimal, with a way back."""

from __future__ import annotations

import pytest

from missed_session.domain.messages import (
    REVEALING_WORDS,
    RevealingMessageError,
    emergency_contact_call,
    ensure_discreet,
    voicemail,
)
from tests.factories import booking

SENDER = "Alex at the front desk"
CALLBACK = "+15555550100"


def _revealing_words_in(text: str) -> list[str]:
    lowered = text.lower()
    return [word for word in REVEALING_WORDS if word in lowered]


@pytest.mark.parametrize("first_name", ["Robin", "Zoë", "Mary-Kate"])
def test_voicemail_names_client_and_call_back_number(first_name: str) -> None:
    text = voicemail(first_name, SENDER, CALLBACK)
    assert first_name in text
    assert CALLBACK in text
    assert SENDER in text
    assert _revealing_words_in(text) == []


def test_emergency_contact_call_names_contact_client_and_call_back_number() -> None:
    text = emergency_contact_call("Sam", "Robin", SENDER, CALLBACK)
    assert text.startswith("Hello Sam,")
    assert "Robin" in text
    assert CALLBACK in text
    assert _revealing_words_in(text) == []


def test_emergency_contact_call_carries_nothing_else_about_the_client() -> None:
    b = booking(risk_tier="high")
    contact = b.client.emergency_contact
    assert contact is not None
    text = emergency_contact_call(contact.name, b.client.first_name, SENDER, CALLBACK)
    assert b.client.first_name in text
    assert b.client.phone not in text
    assert b.client.email is not None
    assert b.client.email not in text
    assert b.client.ref not in text
    assert b.therapist_id not in text
    assert b.session_id not in text
    for word in ("high", "risk", "elevated", "standard"):
        assert word not in text.lower()


@pytest.mark.parametrize(
    "text",
    [
        "Your therapy session is tomorrow",
        "THERAPIST called",
        "Reminder from the Counselling centre",
        "psychiatry",
        "Your appointment",
        "Mental Health team",
        "the clinic",
        "crisis line",
    ],
)
def test_ensure_discreet_refuses_revealing_text(text: str) -> None:
    with pytest.raises(RevealingMessageError, match="revealing word"):
        ensure_discreet(text)


@pytest.mark.parametrize("word", REVEALING_WORDS)
def test_every_revealing_word_is_refused(word: str) -> None:
    with pytest.raises(RevealingMessageError, match=word):
        ensure_discreet(f"Hi, about your {word.upper()} today")


def test_ensure_discreet_passes_neutral_text_unchanged() -> None:
    text = "Hi Robin, please call us back at +15555550100."
    assert ensure_discreet(text) is text


def test_revealing_sender_name_stops_the_voicemail() -> None:
    with pytest.raises(RevealingMessageError):
        voicemail("Robin", "Dr Lee's therapy practice", CALLBACK)


def test_revealing_sender_name_stops_the_emergency_contact_call() -> None:
    with pytest.raises(RevealingMessageError):
        emergency_contact_call("Sam", "Robin", "Northside Counselling", CALLBACK)
