"""What the client and the emergency contact hear: discreet, minimal, with a way back."""

from __future__ import annotations

import pytest

from missed_session.domain.messages import (
    REVEALING_WORDS,
    Keyword,
    RevealingMessageError,
    emergency_contact_call,
    ensure_discreet,
    is_opt_out,
    keyword,
    says_wrong_person,
    voicemail,
)
from tests.support.factories import booking

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
    assert b.client.phone is not None
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


@pytest.mark.parametrize(("reply", "expected"), [
    # Each CTIA keyword alone, any case, any surrounding whitespace or punctuation.
    ("STOP", Keyword.OPT_OUT), ("stop", Keyword.OPT_OUT), ("  Stop \n", Keyword.OPT_OUT),
    ("STOP!", Keyword.OPT_OUT), ("stop.", Keyword.OPT_OUT), ("STOPALL", Keyword.OPT_OUT),
    ("stopall", Keyword.OPT_OUT), ("UNSUBSCRIBE", Keyword.OPT_OUT),
    ("Unsubscribe.", Keyword.OPT_OUT), ("CANCEL", Keyword.OPT_OUT), ("cancel", Keyword.OPT_OUT),
    ("END", Keyword.OPT_OUT), ("end", Keyword.OPT_OUT), ("QUIT", Keyword.OPT_OUT),
    ("\tquit\t", Keyword.OPT_OUT), ("REVOKE", Keyword.OPT_OUT), ("OPTOUT", Keyword.OPT_OUT),
    # STOP followed by other words.
    ("STOP please", Keyword.OPT_OUT), ("Stop texting me", Keyword.OPT_OUT),
    ("stop, thanks", Keyword.OPT_OUT), ("STOP   sending   these", Keyword.OPT_OUT),
    # Opt-in.
    ("START", Keyword.OPT_IN), ("start", Keyword.OPT_IN), (" Unstop ", Keyword.OPT_IN),
    ("UNSTOP!", Keyword.OPT_IN),
    # Ordinary messages: other keywords count only alone; STOP must come first.
    ("please don't stop calling", None), ("cancel my session", None), ("the end", None),
    ("quit my job today", None), ("start again tomorrow?", None), ("stopping by later", None),
    ("ok", None), ("I'm fine, sorry", None), ("", None), ("   ", None), ("!!!", None),
    ("YES", None),
])
def test_a_reply_keyword_is_recognised_as_carriers_do(reply: str, expected: Keyword | None) -> None:
    assert keyword(reply) is expected
    assert is_opt_out(reply) is (expected is Keyword.OPT_OUT)


@pytest.mark.parametrize(("reply", "wrong_person"), [
    ("Wrong number", True), ("wrong   NUMBER, sorry", True), ("who is this?", True),
    ("Who's this", True), ("this is not my number", True), ("I don't know you", True),
    ("I'm ok, sorry I missed it", False), ("call me later", False), ("", False),
])
def test_a_reply_that_says_it_is_not_the_client(reply: str, wrong_person: bool) -> None:
    assert says_wrong_person(reply) is wrong_person
