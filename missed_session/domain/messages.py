"""What the client and the emergency contact hear.

A voicemail can be played by anyone near the phone, so it carries the client's first name,
a concerned check-in and a call-back number: no diagnosis, no clinician title, nothing that
reveals a therapy practice. The emergency contact gets the minimum necessary: who is
calling, that the client could not be reached, and a call-back number.
"""

from __future__ import annotations

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
