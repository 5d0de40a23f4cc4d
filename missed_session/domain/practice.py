"""A practice's protocols as data: a TOML file, validated, resolved per session.

```toml
version = "2026-11-01"             # required: recorded with every session it shapes
default_protocol = "standard"

[protocols.standard]               # any ProtocolSettings field but time_scale/name/version
channels = ["call", "voicemail", "text"]

[protocols.intensive]
grace_period_minutes = 10
attempt_spacing_minutes = 10
max_attempts = 4
escalate_after = { standard = 2, elevated = 1, high = 1 }
high_risk_escalation_outside_window = true
contact_window = { start = "07:30:00", end = "22:00:00" }

[therapists.t-ana]                 # a therapist's choice: a protocol, and overrides of it
protocol = "intensive"
max_attempts = 5

[caring_contacts]                  # every protocol's `caring_offer`, unless it sets its own
offer = "confirm"
```

Every error names the file, the key (or the line, for TOML syntax) and the rule broken,
e.g. `practice.toml: protocols.intensive.max_attempts: must be at most 10`. Resolution
happens once, at intake: the booking then carries the resolved settings with the
protocol's name and the file's version (and a digest of its content), so editing the file
never changes what a running session does, or its replay.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from missed_session.domain.brake import BrakeSettings
from missed_session.domain.models import CaringOffer, ProtocolSettings, SessionBooking

RESERVED = ("time_scale", "name", "version", "no_show_brake")
ROSTER_KEYS = ("roster", "notices")
"""Tables read by `missed_session.domain.roster_file` (the clinicians and notice rules)."""
"""ProtocolSettings fields a practice file may not set: they belong to the run, not to it."""


class PracticeFileError(ValueError):
    """A practice file that cannot be used; the message names the file, key and rule."""


class PracticeProtocols:
    """The validated protocols of one practice file."""

    def __init__(self, source: str, version: str, default: str,
                 protocols: Mapping[str, ProtocolSettings],
                 therapists: Mapping[str, ProtocolSettings],
                 brake: BrakeSettings | None = None) -> None:
        self.source = source
        """The file's name, for messages."""
        self.version = version
        """`<version>+<digest>`: the file's declared version and a digest of its content."""
        self.default = default
        """The protocol used for therapists without a choice."""
        self.protocols = dict(protocols)
        """Protocols by name, resolved."""
        self.therapists = dict(therapists)
        """Each therapist's choice, resolved."""
        self.brake = brake
        """The mass no-show brake (`[brake]`), or None: off."""

    def for_therapist(self, therapist_id: str) -> ProtocolSettings:
        """The protocol a therapist's sessions follow."""
        return self.therapists.get(therapist_id, self.protocols[self.default])

    def resolve(self, booking: SessionBooking) -> SessionBooking:
        """The booking with its therapist's protocol; the booking's time scale is kept.

        The protocol asks the brake at the no-show when this file has a `[brake]` table.
        """
        settings = self.for_therapist(booking.therapist_id).model_copy(
            update={"time_scale": booking.protocol.time_scale,
                    "no_show_brake": self.brake is not None}
        )
        return booking.model_copy(update={"protocol": settings})


def parse(text: str, source: str) -> PracticeProtocols:
    """Validate a practice file's text; `source` names it in every error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PracticeFileError(f"{source}: not valid TOML: {error}") from None
    _only_keys(data, {"version", "default_protocol", "protocols", "therapists",
                      "consent_defaults", "brake", "caring_contacts", *ROSTER_KEYS}, source, "")
    brake = brake_settings(data, source)
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise PracticeFileError(f"{source}: version: required, a non-empty string")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    full_version = f"{version}+{digest}"
    tables = data.get("protocols")
    if not isinstance(tables, dict) or not tables:
        raise PracticeFileError(f"{source}: protocols: at least one protocol is required")
    offer = _caring_offer(data.get("caring_contacts", {}), source)
    if offer is not None:  # the practice's choice, unless a protocol makes its own
        tables = {name: {"caring_offer": offer, **table} if isinstance(table, dict) else table
                  for name, table in tables.items()}
    protocols = {
        name: _settings(table, source, f"protocols.{name}", name=name, version=full_version)
        for name, table in tables.items()
    }
    default = data.get("default_protocol", next(iter(protocols)))
    if default not in protocols:
        raise PracticeFileError(
            f"{source}: default_protocol: unknown protocol {default!r} "
            f"(known: {', '.join(protocols)})"
        )
    therapists: dict[str, ProtocolSettings] = {}
    therapist_tables = data.get("therapists", {})
    if not isinstance(therapist_tables, dict):
        raise PracticeFileError(f"{source}: therapists: must be a table of therapist ids")
    for therapist_id, choice in therapist_tables.items():
        key = f"therapists.{therapist_id}"
        if not isinstance(choice, dict):
            raise PracticeFileError(f"{source}: {key}: must be a table")
        name = choice.get("protocol", default)
        if name not in protocols:
            raise PracticeFileError(
                f"{source}: {key}.protocol: unknown protocol {name!r} "
                f"(known: {', '.join(protocols)})"
            )
        overrides = {k: v for k, v in choice.items() if k != "protocol"}
        base = tables[name]
        therapists[therapist_id] = _settings(
            {**base, **overrides}, source, key, name=name, version=full_version,
            own_keys=set(overrides),
        )
    return PracticeProtocols(source, full_version, default, protocols, therapists, brake)


def brake_settings(data: Mapping[str, Any], source: str) -> BrakeSettings | None:
    """The `[brake]` table of a parsed practice file; None (the brake off) without one.

    The brake is the practice's choice: its numbers depend on how many sessions it holds
    at once, so there is no default that would be right for every practice.
    """
    table = data.get("brake")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise PracticeFileError(f"{source}: brake: must be a table")
    try:
        return BrakeSettings.model_validate(table)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        rule = _rule(first["type"], first["msg"], first.get("ctx"))
        raise PracticeFileError(f"{source}: brake.{field}: {rule}") from None


def _caring_offer(table: Any, source: str) -> str | None:
    """`[caring_contacts] offer`: off, confirm or automatic (None: not said)."""
    if not isinstance(table, dict):
        raise PracticeFileError(f"{source}: caring_contacts: must be a table")
    _only_keys(table, {"offer"}, source, "caring_contacts")
    offer = table.get("offer")
    if offer is None:
        return None
    known = [mode.value for mode in CaringOffer]
    if offer not in known:
        raise PracticeFileError(f"{source}: caring_contacts.offer: must be one of "
                                f"{', '.join(known)}, not {offer!r}")
    return str(offer)


def _settings(table: Any, source: str, key: str, *, name: str, version: str,
              own_keys: set[str] | None = None) -> ProtocolSettings:
    if not isinstance(table, dict):
        raise PracticeFileError(f"{source}: {key}: must be a table")
    for reserved in RESERVED:
        if reserved in table:
            raise PracticeFileError(f"{source}: {key}.{reserved}: not allowed in a practice file")
    try:
        return ProtocolSettings.model_validate({**table, "name": name, "version": version})
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        where = f"{key}.{field}" if field else key
        if own_keys is not None and field and field.split(".")[0] not in own_keys:
            where = f"protocols.{name}.{field} (as chosen in {key})"
        rule = _rule(first["type"], first["msg"], first.get("ctx"))
        raise PracticeFileError(f"{source}: {where}: {rule}") from None


def _rule(kind: str, message: str, ctx: Mapping[str, Any] | None) -> str:
    if kind == "extra_forbidden":
        return "unknown setting"
    if kind == "less_than_equal" and ctx:
        return f"must be at most {ctx['le']}"
    if kind == "greater_than_equal" and ctx:
        return f"must be at least {ctx['ge']}"
    return message.removeprefix("Value error, ")


def _only_keys(data: Mapping[str, Any], allowed: set[str], source: str, key: str) -> None:
    for found in data:
        if found not in allowed:
            where = f"{key}.{found}" if key else found
            raise PracticeFileError(f"{source}: {where}: unknown setting")
