"""What a supervisor can filter sessions by in the Web UI and `temporal workflow list`.

Only pseudonymous, non-clinical facts: the client's ref (never a name), the therapist's id,
the risk tier, where the session is in the protocol. Registered on the server before any
workflow upserts them (a workflow that upserts an unknown attribute fails its task).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from missed_session.domain.models import SessionBooking, SessionStatus

SESSION_STATUS = SearchAttributeKey.for_keyword("SessionStatus")
CLIENT_REF = SearchAttributeKey.for_keyword("ClientRef")
THERAPIST_ID = SearchAttributeKey.for_keyword("TherapistId")
RISK_TIER = SearchAttributeKey.for_keyword("RiskTier")
SESSION_START = SearchAttributeKey.for_datetime("SessionStart")
ESCALATION_LEVEL = SearchAttributeKey.for_keyword("EscalationLevel")
OUTCOME = SearchAttributeKey.for_keyword("Outcome")
CLIENT_CONTACT_KEY = SearchAttributeKey.for_keyword("ClientContactKey")
"""A keyed hash of the client's phone number (never the number): how an inbound text finds
the client's open sessions (missed_session/application/contact_keys.py)."""
NOTICE_STATE = SearchAttributeKey.for_keyword("NoticeState")
"""A notice workflow's state: open, exhausted (ran out of steps, still unacknowledged),
acknowledged, resolved."""
NOTICE_PRIORITY = SearchAttributeKey.for_keyword("NoticePriority")
"""routine or urgent."""
NOTICE_OPENED = SearchAttributeKey.for_datetime("NoticeOpened")
"""When the notice opened: `NoticeState="open" AND NoticeOpened < "<10 minutes ago>"`."""
NOTICE_TARGET = SearchAttributeKey.for_keyword("NoticeTarget")
"""The rung it has reached: therapist, on_call, supervisor."""

ALL: tuple[SearchAttributeKey[Any], ...] = (
    SESSION_STATUS, CLIENT_REF, THERAPIST_ID, RISK_TIER, SESSION_START, ESCALATION_LEVEL,
    OUTCOME, CLIENT_CONTACT_KEY, NOTICE_STATE, NOTICE_PRIORITY, NOTICE_OPENED, NOTICE_TARGET,
)


def initial(booking: SessionBooking, *, contact_key: str | None = None) -> TypedSearchAttributes:
    """A session's attributes when it is booked: given at start, so there is no upsert."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(CLIENT_REF, booking.client.ref),
        SearchAttributePair(THERAPIST_ID, booking.therapist_id),
        SearchAttributePair(RISK_TIER, booking.risk_tier.value),
        SearchAttributePair(SESSION_START, booking.start),
        SearchAttributePair(SESSION_STATUS, SessionStatus.SCHEDULED.value),
        SearchAttributePair(ESCALATION_LEVEL, "none"),
    ]
    if contact_key is not None:
        pairs.append(SearchAttributePair(CLIENT_CONTACT_KEY, contact_key))
    return TypedSearchAttributes(pairs)


def notice_initial(*, priority: str, opened: datetime) -> TypedSearchAttributes:
    """A notice workflow's attributes when it starts (given at start, no upsert).

    Only the notice's own: the session's (`ClientRef`, `RiskTier`, ...) stay on sessions, so
    that a supervisor's `RiskTier="high"` still lists sessions alone.
    """
    return TypedSearchAttributes([
        SearchAttributePair(NOTICE_STATE, "open"),
        SearchAttributePair(NOTICE_PRIORITY, priority),
        SearchAttributePair(NOTICE_OPENED, opened),
    ])


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` arguments that register every attribute."""
    flags: list[str] = []
    for key in ALL:
        kind = "Datetime" if key.value_type is datetime else "Keyword"
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags


async def register(client: Client) -> None:
    """Register the attributes the client's namespace lacks; those it has are left alone.

    Only the missing ones are asked for: a request naming one that exists is refused whole,
    which would leave an attribute added in a later version (a server whose database
    predates it) unregistered, and every session start would then fail.
    """
    existing: set[str] = set()
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        existing = set(listed.custom_attributes)
    except RPCError as error:
        # The time-skipping test server cannot list them: ask for all, as a new server.
        if error.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME
        if key.value_type is datetime
        else IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in ALL
        if key.name not in existing
    }
    if not missing:
        return
    request = AddSearchAttributesRequest(namespace=client.namespace,
                                         search_attributes=missing)
    try:
        await client.operator_service.add_search_attributes(request)
    except RPCError as error:
        if error.status is not RPCStatusCode.ALREADY_EXISTS:  # another process was first
            raise
