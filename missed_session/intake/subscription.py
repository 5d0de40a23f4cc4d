"""Reading FHIR Subscription rest-hook notifications (Subscriptions R5 Backport IG).

A notification is a Bundle whose first entry says what it is: a `Parameters` resource in
R4, a `SubscriptionStatus` in R4B and R5. Vendors mix these (an R4 server emitting R5
field names, numbers as strings or integers), so this reader walks plain JSON and accepts
either spelling instead of validating the Bundle against one version's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class NotificationType(StrEnum):
    """What a notification is for (the IG's notification types)."""

    HANDSHAKE = "handshake"
    HEARTBEAT = "heartbeat"
    EVENT_NOTIFICATION = "event-notification"
    QUERY_STATUS = "query-status"
    QUERY_EVENT = "query-event"


@dataclass(frozen=True)
class NotificationEvent:
    """One triggering event of a notification.

    Its number in the subscription, and the Appointment (full resource) or only where to
    fetch it (id-only).
    """

    number: str
    """The event's number within its subscription; with the subscription, its identity."""
    timestamp: datetime | None
    """When the event happened, if the sender said."""
    focus: str | None
    """The focus resource's reference (absolute or relative URL)."""
    resource: dict[str, Any] | None
    """The resource itself when the notification carries it (full-resource)."""
    focus_identifier: tuple[str, str] | None = None
    """(system, value) when the focus is named by an identifier instead of a reference."""


@dataclass(frozen=True)
class Notification:
    """A rest-hook notification, read leniently."""

    subscription: str
    """The Subscription's reference."""
    type: NotificationType
    """What the notification is for."""
    events: tuple[NotificationEvent, ...]
    """The events it carries (none for a handshake or heartbeat)."""


class NotificationError(ValueError):
    """The body is not a notification Bundle; the message names what is missing."""


def read(bundle: Any) -> Notification:
    """The notification in a Bundle (JSON object), or NotificationError."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        msg = "resourceType: expected a notification Bundle"
        raise NotificationError(msg)
    entries = [entry for entry in bundle.get("entry") or [] if isinstance(entry, dict)]
    if not entries or not isinstance(entries[0].get("resource"), dict):
        msg = "Bundle.entry[0].resource: the notification status is missing"
        raise NotificationError(msg)
    status = entries[0]["resource"]
    kind = status.get("resourceType")
    if kind == "Parameters":
        subscription, type_code, raw_events = _from_parameters(status)
    elif kind == "SubscriptionStatus":
        subscription, type_code, raw_events = _from_status(status)
    else:
        msg = "Bundle.entry[0].resource: expected Parameters or SubscriptionStatus"
        raise NotificationError(msg)
    try:
        notification_type = NotificationType(type_code)
    except ValueError:
        msg = f"Bundle.entry[0].resource.type: unknown notification type {type_code!r}"
        raise NotificationError(msg) from None
    by_url = {
        str(entry.get("fullUrl")): entry["resource"]
        for entry in entries[1:]
        if isinstance(entry.get("resource"), dict)
    }
    events = tuple(
        NotificationEvent(
            number=number,
            timestamp=_instant(timestamp),
            focus=_reference(focus),
            resource=_focus_resource(_reference(focus), by_url) or _by_identifier(
                _identifier(focus), by_url),
            focus_identifier=_identifier(focus),
        )
        for number, timestamp, focus in raw_events
    )
    return Notification(subscription=subscription, type=notification_type, events=events)


RawEvent = tuple[str, Any, Any]
"""An event's number, timestamp and focus (a Reference, as JSON)."""


def _from_parameters(resource: dict[str, Any]) -> tuple[str, str, list[RawEvent]]:
    subscription = ""
    type_code = ""
    events: list[RawEvent] = []
    for parameter in resource.get("parameter") or []:
        name = parameter.get("name")
        if name == "subscription":
            subscription = _reference(parameter.get("valueReference")) or ""
        elif name == "type":
            type_code = str(parameter.get("valueCode") or "")
        elif name == "notification-event":
            parts = {part.get("name"): part for part in parameter.get("part") or []}
            number = _first_value(parts.get("event-number"), ("valueString", "valueInteger",
                                                              "valueInteger64"))
            timestamp = _first_value(parts.get("timestamp"), ("valueInstant", "valueDateTime"))
            focus = (parts.get("focus") or {}).get("valueReference")
            events.append((str(number or ""), timestamp, focus))
    return subscription, type_code, events


def _from_status(resource: dict[str, Any]) -> tuple[str, str, list[RawEvent]]:
    subscription = _reference(resource.get("subscription")) or ""
    type_code = str(resource.get("type") or "")
    events: list[RawEvent] = [
        (str(event.get("eventNumber") or ""), event.get("timestamp"), event.get("focus"))
        for event in resource.get("notificationEvent") or []
        if isinstance(event, dict)
    ]
    return subscription, type_code, events


def _first_value(part: dict[str, Any] | None, keys: tuple[str, ...]) -> Any:
    if not part:
        return None
    return next((part[key] for key in keys if key in part), None)


def _reference(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return str(value["reference"])
    return None


def _identifier(value: Any) -> tuple[str, str] | None:
    """A Reference's identifier as (system, value), when it names its target that way."""
    found = value.get("identifier") if isinstance(value, dict) else None
    if isinstance(found, dict) and isinstance(found.get("value"), str) and found["value"]:
        return str(found.get("system") or ""), str(found["value"])
    return None


def _by_identifier(identifier: tuple[str, str] | None, by_url: dict[str, dict[str, Any]]
                   ) -> dict[str, Any] | None:
    """The carried resource with this identifier (a full-resource notification)."""
    if identifier is None:
        return None
    system, value = identifier
    for resource in by_url.values():
        for item in resource.get("identifier") or []:
            if (isinstance(item, dict) and item.get("value") == value
                    and (not system or item.get("system") == system)):
                return resource
    return None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _focus_resource(focus: str | None, by_url: dict[str, dict[str, Any]]
                    ) -> dict[str, Any] | None:
    """The entry whose fullUrl is the focus (or ends with its relative reference)."""
    if focus is None:
        return None
    if focus in by_url:
        return by_url[focus]
    return next((resource for url, resource in by_url.items()
                 if url.endswith(f"/{focus}") or focus.endswith(url)), None)
