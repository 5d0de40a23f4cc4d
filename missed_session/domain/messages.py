"""What the client and the emergency contact hear.

A voicemail can be played by anyone near the phone, so it carries the client's first name,
a concerned check-in and a call-back number: no diagnosis, no clinician title, nothing that
reveals a therapy practice. The emergency contact gets the minimum necessary: who is
calling, that the client could not be reached, and a call-back number.
"""

from __future__ import annotations

from enum import StrEnum

# Words that would reveal the nature of the practice or a clinical matter. Templates are
# tested against this list, and any text built at run time is checked before it is sent.
REVEALING_WORDS: tuple[str, ...] = (
    "therap",
    "counsel",
    "psych",
    "mental",
    "clinic",
    "diagnos",
    "treatment",
    "session",
    "appointment",
    "crisis",
    "suicid",
    "depress",
    "anxiety",
    "patient",
    "health",
)


class RevealingMessageError(ValueError):
    """A message would disclose something it must not; it is never sent."""


def ensure_discreet(text: str) -> str:
    """Refuse any outgoing text that contains a revealing word."""
    lowered = text.lower()
    for word in REVEALING_WORDS:
        if word in lowered:
            msg = f"outgoing message contains a revealing word ({word!r})"
            raise RevealingMessageError(msg)
    return text


def voicemail(first_name: str, sender_name: str, callback_number: str) -> str:
    """The concerned, non-identifying voicemail left for the client."""
    return ensure_discreet(
        f"Hi {first_name}, this is {sender_name}. We were expecting you today and "
        f"wanted to check that you are okay. Please call us back at {callback_number} "
        "when you can. Thank you."
    )


def emergency_contact_call(
    contact_name: str, client_first_name: str, sender_name: str, callback_number: str
) -> str:
    """The minimum necessary for the emergency contact."""
    return ensure_discreet(
        f"Hello {contact_name}, this is {sender_name}. You are listed as a contact for "
        f"{client_first_name}, and we have not been able to reach {client_first_name} "
        f"today. Please call us back at {callback_number}. Thank you."
    )


TEXT_LIMIT = 160
"""One SMS segment: longer automated texts are refused, never split."""

OPT_OUT_KEYWORDS = frozenset({
    "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
})
"""Replies that carriers treat as an opt-out from further texts: the CTIA short-code
guidelines' STOP, STOPALL, UNSUBSCRIBE, CANCEL, END and QUIT, and REVOKE and OPTOUT, which
Twilio also honours."""
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})
"""Replies that undo an opt-out (CTIA; Twilio). YES is left out on purpose: here it is as
likely an answer to "are you okay?" as a re-subscription."""
WRONG_PERSON_PHRASES = (
    "WRONG NUMBER", "WRONG PERSON", "WHO IS THIS", "WHOS THIS", "WHO'S THIS",
    "NOT MY NUMBER", "DONT KNOW YOU", "DON'T KNOW YOU", "DO NOT KNOW YOU", "NEW NUMBER",
)
"""Phrases in a reply that say it did not come from the client."""


class Keyword(StrEnum):
    """What a text reply asks of the text channel itself, when it is a keyword."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


def keyword(reply: str) -> Keyword | None:
    """The reply's keyword, or None when it is an ordinary message.

    The one rule for STOP-style replies, as carriers apply it: case and whitespace do not
    matter, trailing punctuation is ignored, a keyword alone counts, and STOP followed by
    other words ("Stop texting me", "STOP please") is an opt-out too. Other keywords count
    only alone: "cancel my session" or "the end" are messages, not opt-outs.
    """
    words = [word.strip(".,!?;:'\"()") for word in reply.upper().split()]
    words = [word for word in words if word]
    if not words:
        return None
    if len(words) == 1 and words[0] in OPT_OUT_KEYWORDS:
        return Keyword.OPT_OUT
    if words[0] == "STOP":
        return Keyword.OPT_OUT
    if len(words) == 1 and words[0] in OPT_IN_KEYWORDS:
        return Keyword.OPT_IN
    return None


def is_opt_out(reply: str) -> bool:
    """Whether a text reply opts the client out of texts (see :func:`keyword`)."""
    return keyword(reply) is Keyword.OPT_OUT


def says_wrong_person(reply: str) -> bool:
    """Whether a reply says it is not from the client (a wrong number, a stranger)."""
    normalised = " ".join(reply.upper().split())
    return any(phrase in normalised for phrase in WRONG_PERSON_PHRASES)


class MessageTooLongError(ValueError):
    """A text would not fit one SMS segment; it is never sent."""


def text(first_name: str, sender_name: str, callback_number: str) -> str:
    """The automated text to the client: one segment, neutral, with the opt-out hint."""
    body = ensure_discreet(
        f"Hi {first_name}, it's {sender_name}. We missed you today and want to check "
        f"you're okay. Please call {callback_number}. Reply STOP to opt out."
    )
    if len(body) > TEXT_LIMIT:
        # A long first or sender name: drop the greeting's name rather than split the text.
        body = ensure_discreet(
            f"It's {sender_name}. We missed you today and want to check you're okay. "
            f"Please call {callback_number}. Reply STOP to opt out."
        )
    if len(body) > TEXT_LIMIT:
        msg = f"text is {len(body)} characters, more than {TEXT_LIMIT}"
        raise MessageTooLongError(msg)
    return body


def email(first_name: str, sender_name: str, callback_number: str) -> tuple[str, str]:
    """Subject and body of the email to the client: as discreet as the voicemail."""
    subject = ensure_discreet(f"Checking in from {sender_name}")
    body = ensure_discreet(
        f"Hi {first_name},\n\nWe were expecting you today and wanted to check that you "
        f"are okay. Please call us back at {callback_number} when you can.\n\n"
        f"Thank you,\n{sender_name}\n"
    )
    return subject, body


