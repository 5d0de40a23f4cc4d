"""One notice to clinicians, delivered until a person acknowledges it.

Read `run` as the on-call ladder of the practice's policy: notify the rung's clinicians on
their channels (the session's therapist, then whoever is on call at that moment, then the
clinical supervisor), wait the rung's minutes for an acknowledgment, climb; at the top,
climb again or stop as the policy says. A notice that runs out of steps is not closed: it
becomes `exhausted`, an urgent state a supervisor sees (search attribute `NoticeState`, the
`notices_exhausted` metric, a `notice_exhausted` audit event), and it still takes an
acknowledgment. An alert ends when acknowledged; a task waits to be resolved with an
outcome.

A notice tracks its reason: when the session's reason for it ends (the client checked in
late or was reached, a clinician marked the client safe or stood outreach down), the
session signals `reason_ended`; a notice that reason ends (`domain.notices.ends`) and that
no person has acknowledged or resolved stops climbing, is resolved with the reason
(`notice_reason_ended`), and tells each clinician its ladder had told, once, on the route
it told them on (`notice_resolution_sent`), under one idempotency key per person.

The notice writes its own audit trail, whose stream id is the notice key
(`<session id>/<name>`): the session workflow numbers the session's trail, this one numbers
its own, and neither can ever take the other's place. Acknowledgments and resolutions are
updates with validators: a refused one changes nothing here (the caller records the
refusal); an accepted one is in the trail before the caller hears back.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notices import NoticeActivities
    from activities.outreach import CHANNEL_REJECTED, DELIVERY_UNCERTAIN, INVALID_CONTACT
    from missed_session.contracts.notices import (
        NoticeDelivery,
        NoticeRequest,
        NoticeStateRecord,
        Recipient,
        RecipientQuery,
        ResolutionDelivery,
    )
    from missed_session.domain import events, notices
    from missed_session.domain.facts import NoticeNews
    from missed_session.domain.models import Model, NoticeKind
    from missed_session.domain.notices import (
        Acknowledgment,
        EndReason,
        IssuedCode,
        ReasonEnded,
        Resolution,
        Step,
    )
    from missed_session.domain.roster import NoticeRoute
    from missed_session.domain.step_reports import Uncertain
    from missed_session.temporal import search_attributes as attrs

from workflows.clinicians import NOTICES_TRACK_REASON, tell_session
from workflows.steps import OUTREACH_HEARTBEAT, failure, failure_reason
from workflows.trail import RECORD_RETRY, RECORD_TIMEOUT, Trail

DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=[INVALID_CONTACT, CHANNEL_REJECTED, DELIVERY_UNCERTAIN],
)
"""A channel that keeps failing is a failed send: the ladder moves on rather than stall. A
send the provider may have accepted (`DeliveryUncertain`) is never repeated."""
DELIVERY_TIMEOUT = timedelta(minutes=2)



class NoticeView(Model):
    """Answer to the `state` query."""

    key: str
    """The notice key."""
    state: str
    """open, exhausted, acknowledged, resolved."""
    step: int
    """The rung reached (0 before the first)."""
    target: str | None
    """Who that rung notifies."""
    notified: tuple[str, ...]
    """Clinicians notified so far."""
    acknowledged_by: str | None
    """Who acknowledged."""
    resolved_by: str | None
    """Who resolved."""
    reason_ended: str | None = None
    """The session's reason that ended, when that resolved it (no person did)."""


@workflow.defn
class NoticeWorkflow:
    """An alert or task on its way to a clinician who acknowledges it."""

    @workflow.init
    def __init__(self, request: NoticeRequest) -> None:
        self._request = request
        self._trail = Trail(request.notice.key)
        """The notice's own trail (a refused write fails the notice, naming the event)."""
        self._opened_at: datetime = workflow.now()
        self._state = "open"
        self._round = 1
        self._step = 0
        self._target: str | None = None
        self._issued: dict[str, IssuedCode] = {}
        """Codes sent, by clinician (their hashes)."""
        self._codes: dict[str, str] = {}
        """The codes themselves, by clinician: a clinician notified again gets the same."""
        self._acknowledged_by: str | None = None
        self._resolved_by: str | None = None
        self._ended: EndReason | None = None
        """The session's reason that ended, resolving the notice without a person."""
        self._told: list[tuple[str, NoticeRoute]] = []
        """Who the ladder told (sent, or possibly delivered), and how, in order."""
        self._addresses: dict[tuple[str, NoticeRoute], str] = {}
        """Where each of them was told."""

    @workflow.run
    async def run(self, request: NoticeRequest) -> NoticeView:
        """Climb the ladder until acknowledged; then wait for resolution (tasks)."""
        plan = request.plan
        await self._record(events.NoticeOpened(
            kind=request.notice.kind, priority=request.notice.priority,
            risk_tier=request.risk_tier, therapist_id=request.notice.therapist_id,
            policy=plan.policy.name, roster_version=plan.roster_version,
        ))
        await self._save_state("open")
        await self._climb()
        if not self._answered():
            self._state = "exhausted"
            workflow.upsert_search_attributes([attrs.NOTICE_STATE.value_set("exhausted")])
            await self._record(events.NoticeExhausted(
                policy=plan.policy.name, rounds=plan.policy.rounds,
                notified=",".join(self._issued),
            ))
            await self._save_state("exhausted")
            await tell_session(NoticeNews(notice=request.notice.key, state="exhausted",
                                          again_after_minutes=plan.policy.steps[0].minutes))
        done = self._done_when_acknowledged()
        await workflow.wait_condition(
            lambda: self._resolved_by is not None or self._ended is not None
            or (done and self._acknowledged_by is not None)
        )
        if self._ended is not None:
            await self._resolve_for_reason(self._ended)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state()

    async def _climb(self) -> None:
        """Every rung of every round, until someone acknowledges."""
        policy = self._request.plan.policy
        for round_ in range(1, policy.rounds + 1):
            for number, step in enumerate(policy.steps, start=1):
                if self._answered():
                    return
                self._round, self._step, self._target = round_, number, step.notify.value
                workflow.upsert_search_attributes([attrs.NOTICE_TARGET.value_set(step.notify)])
                if (round_, number) != (1, 1):
                    await self._record(events.NoticeClimbed(
                        round=round_, step=number, target=step.notify.value
                    ))
                if await self._notify(step):
                    wait = timedelta(minutes=step.minutes) / self._request.time_scale
                    with contextlib.suppress(TimeoutError):
                        await workflow.wait_condition(self._answered, timeout=wait)

    async def _notify(self, step: Step) -> bool:
        """Send the rung's clinicians the notice; whether anyone could be sent it."""
        request = self._request
        found = await workflow.execute_activity_method(
            NoticeActivities.notice_recipients,
            RecipientQuery(target=step.notify, therapist_id=request.notice.therapist_id,
                           at=workflow.now()),
            start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
        )
        if not found.recipients:
            await self._record(events.NoticeSkipped(
                round=self._round, step=self._step, target=step.notify.value,
                reason=found.reason or "nobody to notify",
            ))
            return False
        sent = False
        for recipient in found.recipients:
            for channel, address in recipient.channels:
                if self._answered():
                    return True
                sent = await self._send(step, recipient, channel, address) or sent
        return sent

    async def _send(self, step: Step, recipient: Recipient, channel: NoticeRoute,
                    address: str) -> bool:
        request = self._request
        issued = self._issue(recipient)
        clinician = recipient.clinician_id
        delivery = NoticeDelivery(
            idempotency_key=(f"{workflow.info().workflow_id}/round-{self._round}/"
                             f"step-{self._step}/{clinician}/{channel.value}"),
            notice=request.notice, risk_tier=request.risk_tier, clinician_id=clinician,
            channel=channel, address=address, code=self._codes[clinician],
            issued_at=issued.issued_at, expires_at=issued.expires_at,
            first_name=request.client_first_name if request.plan.include_first_name else None,
            client_ref=request.client_ref,
        )
        try:
            await workflow.execute_activity_method(
                NoticeActivities.deliver_notice, delivery,
                start_to_close_timeout=DELIVERY_TIMEOUT, retry_policy=DELIVERY_RETRY,
                heartbeat_timeout=OUTREACH_HEARTBEAT,  # a dead worker's send: retried at once
            )
        except ActivityError as error:
            report = failure(error)
            if isinstance(report, Uncertain):  # it may have reached them: the rung waits
                self._was_told(clinician, channel, address)
                await self._record(events.NoticeUncertain(
                    round=self._round, step=self._step, clinician_id=clinician,
                    channel=channel.value, reason=report.reason,
                ))
                return True
            await self._record(events.NoticeFailed(
                round=self._round, step=self._step, clinician_id=clinician,
                channel=channel.value, reason=failure_reason(error),
            ))
            return False
        self._was_told(clinician, channel, address)
        await self._record(events.NoticeSent(
            round=self._round, step=self._step, target=step.notify.value,
            clinician_id=clinician, channel=channel.value,
        ))
        return True

    def _issue(self, recipient: Recipient) -> IssuedCode:
        """The clinician's code: made once, from the workflow's deterministic random."""
        clinician = recipient.clinician_id
        if clinician not in self._issued:
            code = notices.new_code(workflow.random())
            now = workflow.now()
            self._codes[clinician] = code
            self._issued[clinician] = IssuedCode(
                clinician_id=clinician, code_hash=notices.code_hash(code),
                number=recipient.sms, issued_at=now,
                expires_at=now + timedelta(hours=self._request.plan.ack_code_hours),
            )
        return self._issued[clinician]

    def _was_told(self, clinician: str, channel: NoticeRoute, address: str) -> None:
        self._told.append((clinician, channel))
        self._addresses.setdefault((clinician, channel), address)

    # -- the session's reason ended ----------------------------------------------------------

    @workflow.signal
    def reason_ended(self, ending: ReasonEnded) -> None:
        """The session's reason for notices ended: this one is resolved if it ends it.

        Not one a person acknowledged or resolved (theirs stands), nor one the reason does
        not end (`domain.notices.ends`). A signal, not an update: the session sends it as a
        durable command and need not wait for the notice's answer.
        """
        if self._answered() or not notices.ends(self._request.notice.key, ending.reason):
            return
        self._ended = ending.reason

    async def _resolve_for_reason(self, reason: EndReason) -> None:
        """Resolved by the reason: recorded, then one "resolved" message per person told."""
        workflow.patched(NOTICES_TRACK_REASON)  # the marker: older histories never get here
        tell = notices.to_tell(self._told)
        self._state = "resolved"
        workflow.upsert_search_attributes([attrs.NOTICE_STATE.value_set("resolved")])
        await self._record(events.NoticeReasonEnded(
            reason=reason.value, told=",".join(clinician for clinician, _ in tell)))
        await self._save_state("resolved", None, "reason")
        for clinician, route in tell:
            await self._send_resolution(clinician, route, reason)

    async def _send_resolution(self, clinician: str, route: NoticeRoute,
                               reason: EndReason) -> None:
        request = self._request
        delivery = ResolutionDelivery(
            idempotency_key=f"{workflow.info().workflow_id}/resolved/{clinician}",
            notice=request.notice, clinician_id=clinician, channel=route,
            address=self._addresses[(clinician, route)], client_ref=request.client_ref,
            reason=reason,
        )
        try:
            await workflow.execute_activity_method(
                NoticeActivities.deliver_resolution, delivery,
                start_to_close_timeout=DELIVERY_TIMEOUT, retry_policy=DELIVERY_RETRY,
                heartbeat_timeout=OUTREACH_HEARTBEAT,
            )
        except ActivityError as error:
            report = failure(error)
            await self._record(events.NoticeResolutionSent(
                clinician_id=clinician, channel=route.value,
                result="uncertain" if isinstance(report, Uncertain) else "failed",
                reason=failure_reason(error),
            ))
            return
        await self._record(events.NoticeResolutionSent(
            clinician_id=clinician, channel=route.value, result="sent"))

    # -- acknowledgment and resolution ---------------------------------------------------

    @workflow.update
    async def acknowledge(self, ack: Acknowledgment) -> str:
        """A clinician has it: the climb stops."""
        problem, clinician = self._ack_problem(ack)
        if problem is not None or clinician is None:  # a second one that passed validation
            if self._ended is not None:
                return f"already resolved: {self._ended.value}"
            return f"already acknowledged by {self._acknowledged_by}"
        await self._acknowledged(clinician, ack.via.value)
        if self._done_when_acknowledged():
            return f"acknowledged by {clinician}: the notice is closed"
        return f"acknowledged by {clinician}: the climb stops; resolve it when done"

    @acknowledge.validator
    def _validate_acknowledge(self, ack: Acknowledgment) -> None:
        problem, _ = self._ack_problem(ack)
        if problem is not None:
            raise ValueError(f"acknowledge refused: {problem}")

    @workflow.update
    async def resolve(self, resolution: Resolution) -> str:
        """A clinician closes it with an outcome (acknowledging it, if nobody had)."""
        if self._resolved_by is not None:
            return f"already resolved by {self._resolved_by}"
        if self._ended is not None:
            return f"already resolved: {self._ended.value}"
        self._resolved_by = resolution.clinician_id
        if self._acknowledged_by is None:
            await self._acknowledged(resolution.clinician_id, resolution.via.value)
        await self._record(events.NoticeResolved(
            clinician_id=resolution.clinician_id, via=resolution.via.value,
            outcome=resolution.outcome, note=resolution.note,
        ))
        self._state = "resolved"
        workflow.upsert_search_attributes([attrs.NOTICE_STATE.value_set("resolved")])
        await self._save_state("resolved", resolution.clinician_id, resolution.via.value)
        return f"resolved by {resolution.clinician_id}: {resolution.outcome}"

    @resolve.validator
    def _validate_resolve(self, resolution: Resolution) -> None:
        if self._resolved_by is not None:
            msg = f"resolve refused: the notice was already resolved by {self._resolved_by}"
            raise ValueError(msg)
        if self._ended is not None:
            msg = f"resolve refused: the notice was already resolved: {self._ended.value}"
            raise ValueError(msg)
        allowed = {self._request.notice.therapist_id, *self._issued}
        if resolution.clinician_id not in allowed:
            msg = (f"resolve refused: {resolution.clinician_id} is neither the therapist nor "
                   "a clinician this notice notified")
            raise ValueError(msg)

    async def _acknowledged(self, clinician: str, via: str) -> None:
        self._acknowledged_by = clinician
        waited = workflow.now() - self._opened_at
        self._state = "acknowledged"
        workflow.upsert_search_attributes([attrs.NOTICE_STATE.value_set("acknowledged")])
        await self._record(events.NoticeAcknowledged(
            clinician_id=clinician, via=via, step=self._step,
            seconds_to_acknowledge=max(int(waited.total_seconds()), 0),
        ))
        await self._save_state("acknowledged", clinician, via)
        await tell_session(NoticeNews(notice=self._request.notice.key, state="acknowledged",
                                      clinician_id=clinician))

    def _ack_problem(self, ack: Acknowledgment) -> tuple[str | None, str | None]:
        return notices.ack_problem(
            self._issued, ack, now=workflow.now(), acknowledged_by=self._acknowledged_by,
            resolved=self._resolved_by is not None or self._ended is not None,
        )

    @workflow.query
    def state(self) -> NoticeView:
        """Where the notice stands."""
        return NoticeView(
            key=self._request.notice.key, state=self._state, step=self._step,
            target=self._target, notified=tuple(self._issued),
            acknowledged_by=self._acknowledged_by, resolved_by=self._resolved_by,
            reason_ended=self._ended.value if self._ended is not None else None,
        )

    # -- helpers ---------------------------------------------------------------------------

    def _answered(self) -> bool:
        """Whether the climb is over: a person answered, or the reason ended."""
        return (self._acknowledged_by is not None or self._resolved_by is not None
                or self._ended is not None)

    def _done_when_acknowledged(self) -> bool:
        return self._request.notice.kind is NoticeKind.ALERT

    async def _save_state(self, state: str, clinician: str | None = None,
                          via: str | None = None) -> None:
        request = self._request
        await workflow.execute_activity_method(
            NoticeActivities.record_notice_state,
            NoticeStateRecord(notice=request.notice, state=state, at=workflow.now(),
                              risk_tier=request.risk_tier, policy=request.plan.policy.name,
                              clinician_id=clinician, via=via),
            start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
        )

    async def _record(self, details: events.EventDetails) -> None:
        """Append the next event of this notice's own trail."""
        await self._trail.record(details)
