"""The client-directory use cases: add, update, show, export, consent, STOP/START, bookings.

Every entry point (CLI, HTTP, the FHIR/HL7 import) calls these; each returns a `Result`.
Bad input is refused naming the field before anything is written; a write is one
transaction, so nothing is half-written. Messages name client refs and record ids only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from missed_session.application.problems import problems_of
from missed_session.application.results import Problem, Result, ResultKind, bad_input
from missed_session.clients.fhir_consent import consent_bundle
from missed_session.domain import clients as rules
from missed_session.domain.clients import (
    ClientRecord,
    ConsentDefaults,
    ConsentEntry,
    ConsentSource,
    ConsentSubject,
)
from missed_session.domain.models import Client, RiskTier, SessionBooking
from missed_session.store.clients import ClientDirectory, ClientExistsError, UnknownClientError
from missed_session.store.fhir_links import FhirLinks, Link
from missed_session.store.write_errors import STORE_FAILURES

STORE_ERRORS = STORE_FAILURES
"""Every store error on a use case's path is an outage (or a refusal): never a 500."""
BOOKING_RECORDER = "intake"
"""`recorded_by` of what a booking's client details wrote."""


def wall_clock() -> datetime:
    """When a record is taken: the real clock (consent is judged on it, by the activity)."""
    return datetime.now(UTC)


class ClientUseCases:
    """The directory's use cases over one pool."""

    def __init__(self, pool: asyncpg.Pool, *, defaults: ConsentDefaults | None = None,
                 clock: Callable[[], datetime] = wall_clock) -> None:
        self._directory = ClientDirectory(pool)
        self._links = FhirLinks(pool)
        self._defaults = defaults or ConsentDefaults()
        self._clock = clock

    @property
    def directory(self) -> ClientDirectory:
        """The store (for the entry points that show its change log)."""
        return self._directory

    async def known(self, client_ref: str) -> bool:
        """Whether the directory holds a client under `client_ref`."""
        return await self._directory.get(client_ref) is not None

    async def linked(self, links: Iterable[Link]) -> str | None:
        """The client ref an EHR's Patient reference or identifier was linked to, if any."""
        return await self._links.find(links)

    async def link(self, client_ref: str, links: Iterable[Link]) -> None:
        """Record that an EHR's `links` name `client_ref`."""
        await self._links.link(client_ref, links)

    async def add(self, data: object, *, recorded_by: str, source: str = "client_request",
                  ) -> Result:
        """Create a client's entry; consents come as separate records (`consent`)."""
        record = _record(data)
        if isinstance(record, Result):
            return record
        try:
            await self._directory.add(record, source=source, recorded_by=recorded_by)
        except ClientExistsError as error:
            return Result(ResultKind.REFUSED, str(error), data={"client_ref": record.ref})
        except STORE_ERRORS as error:
            return _unavailable(error)
        return Result(ResultKind.APPLIED, f"client {record.ref} added",
                      data={"client_ref": record.ref})

    async def update(self, data: object, *, recorded_by: str,
                     source: str = "client_request") -> Result:
        """Replace a known client's entry; an unknown ref is refused naming it."""
        record = _record(data)
        if isinstance(record, Result):
            return record
        try:
            changed, _ = await self._directory.put(record, source=source,
                                                   recorded_by=recorded_by)
        except UnknownClientError as error:
            return Result(ResultKind.NOT_FOUND, str(error),
                          problems=(Problem(("client_ref",), "unknown client"),))
        except STORE_ERRORS as error:
            return _unavailable(error)
        what = ", ".join(changed) if changed else "nothing changed"
        return Result(ResultKind.APPLIED, f"client {record.ref} updated: {what}",
                      data={"client_ref": record.ref, "changed": changed})

    async def show(self, client_ref: str) -> Result:
        """The entry and what consent allows now, channel by channel."""
        try:
            record = await self._directory.get(client_ref)
            history = [] if record is None else await self._directory.history(client_ref)
        except STORE_ERRORS as error:
            return _unavailable(error)
        if record is None:
            return _unknown(client_ref)
        now = self._clock()
        allowed = {
            channel.value: (found.decision.reason if isinstance(found, rules.Reach)
                            else f"not allowed: {found.reason}")
            for channel in rules.SUBJECT_OF
            for found in [rules.reach(record, history, channel, at=now,
                                      defaults=self._defaults)]
        }
        return Result(ResultKind.APPLIED, f"client {client_ref}", data={
            "client": record.model_dump(mode="json"), "consent_now": allowed,
        })

    async def export(self, client_ref: str) -> Result:
        """Right of access: the entry, its change log and the whole consent history.

        The history also comes as a FHIR R4B Bundle of Consent resources.
        """
        try:
            record = await self._directory.get(client_ref)
            if record is None:
                return _unknown(client_ref)
            history = await self._directory.history(client_ref)
            changes = await self._directory.changes(client_ref)
        except STORE_ERRORS as error:
            return _unavailable(error)
        return Result(ResultKind.APPLIED, f"client {client_ref} export", data={
            "client": record.model_dump(mode="json"),
            "changes": [{"action": c["action"], "fields": list(c["fields"]),
                         "source": c["source"], "recorded_by": c["recorded_by"],
                         "recorded_at": c["recorded_at"].isoformat()} for c in changes],
            "consent_history": [r.model_dump(mode="json") for r in history],
            "fhir_consent_bundle": consent_bundle(client_ref, history),
        })

    async def consent(self, data: object) -> Result:
        """Append one consent record (a withdrawal is a record with `granted: false`)."""
        try:
            entry = ConsentEntry.model_validate(data)
        except ValidationError as error:
            return _bad(error, "consent")
        try:
            stored = await self._directory.append_consent(entry)
        except UnknownClientError as error:
            return Result(ResultKind.NOT_FOUND, str(error),
                          problems=(Problem(("client_ref",), "unknown client"),))
        except STORE_ERRORS as error:
            return _unavailable(error)
        verb = "given" if stored.granted else "withdrawn"
        return Result(ResultKind.APPLIED,
                      f"{stored.subject.value} consent {verb}: {stored.record_id}",
                      data={"record_id": stored.record_id})

    async def text_keyword(self, number: str, *, opted_out: bool,
                           recorded_by: str = "inbound-text") -> Result:
        """A STOP (or START) from `number`: one number-wide record for every client using it."""
        return await self.consent({
            "client_ref": None, "subject": ConsentSubject.TEXT.value, "contact_point": number,
            "granted": not opted_out, "effective_at": self._clock().isoformat(),
            "source": (ConsentSource.STOP_REPLY if opted_out
                       else ConsentSource.START_REPLY).value,
            "recorded_by": recorded_by,
        })

    async def resolve_booking(self, data: object) -> object | Result:  # noqa: PLR0911
        """A booking's data with its client from the directory when it sends only the ref.

        An unknown ref is bad input naming it; full client details pass unchanged (they
        update the directory once the booking is valid: `record_booking`).
        """
        if not isinstance(data, Mapping):
            return data
        client = data.get("client")
        if not isinstance(client, Mapping) or set(client) != {"ref"}:
            return data
        ref = client["ref"]
        if not isinstance(ref, str):
            return bad_input("client.ref: must be a string",
                             (Problem(("client", "ref"), "must be a string"),))
        try:
            record = await self._directory.get(ref)
            history = [] if record is None else await self._directory.history(ref)
        except STORE_ERRORS as error:
            return _unavailable(error)
        if record is None:
            msg = f"client.ref: no client {ref!r} in the directory"
            return bad_input(msg, (Problem(("client", "ref"), "unknown client"),))
        risk = data.get("risk_tier", RiskTier.STANDARD.value)
        try:
            snapshot = rules.snapshot(record, history, at=self._clock(),
                                      defaults=self._defaults,
                                      risk_tier=RiskTier(risk))
        except ValueError as error:
            field = str(error).split(":", 1)[0]
            return bad_input(str(error), (Problem(("client", field), str(error)),))
        resolved: dict[str, Any] = dict(data)
        resolved["client"] = snapshot.model_dump(mode="json")
        return resolved

    async def record_booking(self, booking: SessionBooking, *, sent_details: bool) -> None:
        """A booking that carried client details updates the directory, recorded as such.

        Consents the booking states are appended with source `booking` where no record
        covers them yet, and withdrawals where the history allows it now; a booking never
        gives back a consent the history withdrew. The same again appends nothing.
        """
        if not sent_details:
            return
        client: Client = booking.client
        held = await self._directory.get(client.ref)
        history = [] if held is None else await self._directory.history(client.ref)
        now = self._clock()
        entries = []
        for entry in rules.consents_from_booking(client, at=now, recorded_by=BOOKING_RECORDER):
            held_answer = rules.decide(history, client_ref=client.ref, subject=entry.subject,
                                       contact_point=entry.contact_point, at=now,
                                       defaults=self._defaults)
            # What the booking states is recorded where nothing is on record yet; later
            # it may only narrow consent: a scheduler's snapshot never overrides a STOP
            # or a withdrawal the client made to the practice.
            if held_answer.record_id is None or (held_answer.allowed and not entry.granted):
                entries.append(entry)
        record = rules.record_from_booking(client, held)
        if held == record and not entries:
            return
        await self._directory.put(record, source=f"booking {booking.session_id}",
                                  recorded_by=BOOKING_RECORDER, consents=entries,
                                  must_exist=False)


def sends_details(data: object) -> bool:
    """Whether a booking's data carries the client's details (not only the ref)."""
    if not isinstance(data, Mapping):
        return True
    client = data.get("client")
    return not (isinstance(client, Mapping) and set(client) == {"ref"})


def _record(data: object) -> ClientRecord | Result:
    try:
        return ClientRecord.model_validate(data)
    except ValidationError as error:
        return _bad(error, "client")


def _bad(error: ValidationError, subject: str) -> Result:
    problems = problems_of(error)
    first = problems[0]
    message = (f"{first.dotted}: {first.message}" if first.path
               else first.message if ":" in first.message else f"{subject}: {first.message}")
    return bad_input(message, problems)


def _unknown(client_ref: str) -> Result:
    return Result(ResultKind.NOT_FOUND, f"client_ref: no client {client_ref!r} in the directory",
                  problems=(Problem(("client_ref",), "unknown client"),))


def _unavailable(error: BaseException) -> Result:
    return Result(ResultKind.UNAVAILABLE,
                  f"the client directory failed: {type(error).__name__}")
