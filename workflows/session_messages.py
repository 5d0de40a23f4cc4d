"""What a session hears from outside: the client's and the scheduler's news, decisions.

`SessionMessages` holds the session workflow's updates, its signal and its query, and how an
answer not clearly the client's is noted (a message's or the call's); `SessionWorkflow`
(`workflows.session`) is the protocol that acts on them. Every message is an update with a
validator: the validator refuses what can no longer change the session, so the sender hears
why at once; the handler checks again (the protocol may have moved on between the two) and
only notes the news in the session's facts: the protocol acts on it, and audits it, in
order. Clinician decisions are recorded before the caller hears back. One signal: a notice
of the session tells it of an acknowledgment or a run-out (`notice_news`).

News nothing in the protocol waits on (a note, an opt-out, a notice's word) is recorded
through `_record_news`: once the session has begun closing its trail takes none
(`workflows.trail`), and the handler answers for it: an update is refused with the reason
(its validator refuses it first, as a rule); a notice's word stays in the notice's trail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from missed_session.domain import acceptance, decisions, events, messages, protocol
    from missed_session.domain.facts import CLOSING, Escalation, NoticeNews, SessionFacts
    from missed_session.domain.models import (
        Cancellation,
        Channel,
        CheckIn,
        ClientResponse,
        ClinicianDecision,
        DecisionKind,
        NoticeKind,
        Priority,
        Reschedule,
        ResponseChannel,
        SessionBooking,
        SessionState,
        SessionStatus,
        TextReply,
    )

from workflows.clinicians import AWAIT_ACKNOWLEDGMENT, NOTICE_NEWS, Clinicians
from workflows.patches import Patches

UNCLEAR_ANSWER = (
    "recorded: not clearly the client; outreach goes on, and the therapist has a task to decide"
)


class SessionMessages:
    """The session workflow's updates and query, over its facts."""

    _booking: SessionBooking
    _facts: SessionFacts
    _escalate_now_pending: bool
    """A clinician's escalate_now is being carried out."""
    _clinicians: Clinicians
    _patches: Patches

    # What the protocol provides (`SessionWorkflow`):

    async def _record(self, details: events.EventDetails) -> None:
        raise NotImplementedError


    async def _escalate(self, override: ClinicianDecision | None = None) -> str:
        raise NotImplementedError

    if TYPE_CHECKING:
        async def _record_news(self, details: events.EventDetails) -> bool: ...

    # -- an answer not clearly the client's (a message's, or the call's) ------------------

    async def _note_unclear_answer(
        self, channel: ResponseChannel, responder: str, why: str, *,
        attempt: int | None = None, note: str = "",
    ) -> None:
        """An answer not clearly the client's: outreach goes on, and a person decides."""
        notice = self._clinicians.notice(
            "answer-unclear", NoticeKind.TASK, Priority.URGENT,
            "An answer to outreach was not clearly the client's: confirm who answered, "
            "then record the response or a decision", numbered=True,
        )
        await self._clinicians.tell(notice)
        await self._record(events.AnswerUnclear(
            channel=channel, responder=responder, why=why, attempt=attempt, note=note,
            task=notice.key,
        ))

    # -- news (updates: refused, with the reason, when too late) ---------------------------

    @workflow.update
    def check_in(self, check_in: CheckIn) -> str:
        """The client arrived or joined; too late once follow-up planning has begun."""
        _refuse_in_handler("check_in", self._check_in_problem())
        self._facts = self._facts.noted(check_in)
        if self._facts.before_no_show():
            return "recorded: the client checked in; the session closes as attended"
        return "recorded: a late check-in; outreach stops, the session closes as attended_late"

    @check_in.validator
    def _validate_check_in(self, check_in: CheckIn) -> None:
        _refuse("check_in", self._check_in_problem())

    @workflow.update
    def cancel(self, cancellation: Cancellation) -> str:
        """The session will not take place; only before it is declared a no-show."""
        _refuse_in_handler("cancel", self._cancel_problem())
        self._facts = self._facts.noted(cancellation)
        return "recorded: the session closes as cancelled"

    @cancel.validator
    def _validate_cancel(self, cancellation: Cancellation) -> None:
        _refuse("cancel", self._cancel_problem())

    @workflow.update
    def reschedule(self, reschedule: Reschedule) -> str:
        """Move the start; only before the session is declared a no-show, never into the past."""
        _refuse_in_handler("reschedule", self._reschedule_problem(reschedule))
        self._facts = self._facts.noted(reschedule)
        return f"recorded: the session now starts at {reschedule.start.isoformat()}"

    @reschedule.validator
    def _validate_reschedule(self, reschedule: Reschedule) -> None:
        _refuse("reschedule", self._reschedule_problem(reschedule))

    @workflow.update
    async def client_responded(self, response: ClientResponse) -> str:
        """The client got back in touch; it counts once the session is a no-show.

        For a high-risk client, a response from someone else is recorded as it came and
        leaves outreach open, with a task for the therapist.
        """
        _refuse_in_handler("client_responded", acceptance.response_problem(self._facts.status))
        unclear = protocol.response_not_the_client(self._booking, response.responder)
        if unclear is not None:
            await self._note_unclear_answer(
                response.channel, response.responder, unclear, note=response.note
            )
            return UNCLEAR_ANSWER
        self._facts = self._facts.noted(response)
        return await self._when_outreach_ends()

    @client_responded.validator
    def _validate_client_responded(self, response: ClientResponse) -> None:
        _refuse("client_responded", acceptance.response_problem(self._facts.status))

    @workflow.update
    async def text_reply(self, reply: TextReply) -> str:
        """The client texted back: STOP opts out of texts; other replies may be a response.

        A reply counts as reaching the client only as the protocol says (never a wrong
        number; for a high-risk client, never a text alone): otherwise it is recorded as it
        came, outreach goes on, and the therapist has a task.
        """
        _refuse_in_handler("text_reply", self._text_reply_problem(reply))
        if messages.is_opt_out(reply.body):
            if not self._facts.opted_out_of_text:
                self._facts = self._facts.opting_out()  # no text goes out from now, either way
                if not await self._record_news(events.OptedOut(channel=Channel.TEXT)):
                    _refuse_in_handler("text_reply", CLOSING)
            return "recorded: the client opted out of texts"
        unclear = protocol.reply_not_the_client(self._booking, reply.body)
        if unclear is not None:
            await self._note_unclear_answer(
                ResponseChannel.TEXT, "the client's number", unclear, note=reply.body
            )
            return UNCLEAR_ANSWER
        self._facts = self._facts.noted(
            ClientResponse(channel=ResponseChannel.TEXT, responder="client", note=reply.body)
        )
        return await self._when_outreach_ends()

    @text_reply.validator
    def _validate_text_reply(self, reply: TextReply) -> None:
        problem = self._text_reply_problem(reply)
        if problem is None and messages.is_opt_out(reply.body) and self._facts.closing_begun():
            problem = CLOSING  # (the handler asks the trail: `_record_news`)
        _refuse("text_reply", problem)

    async def _when_outreach_ends(self) -> str:
        """The answer to a message that ends outreach: how the session closes, once known."""
        await workflow.wait_condition(lambda: self._facts.outreach_outcome is not None)
        assert self._facts.outreach_outcome is not None
        return ("recorded: outreach stopped, the session closes as "
                f"{self._facts.outreach_outcome.value}")

    def _check_in_problem(self) -> str | None:
        return acceptance.check_in_problem(
            self._facts.status, cancelled=self._facts.cancellation is not None
        )

    def _cancel_problem(self) -> str | None:
        return acceptance.cancel_problem(self._facts.status,
                                         checked_in=self._facts.check_in is not None)

    def _reschedule_problem(self, reschedule: Reschedule) -> str | None:
        return acceptance.reschedule_problem(
            self._booking, reschedule.start, status=self._facts.status,
            checked_in=self._facts.check_in is not None,
            cancelled=self._facts.cancellation is not None, now=workflow.now(),
        )

    def _text_reply_problem(self, reply: TextReply) -> str | None:
        kind = messages.keyword(reply.body)
        status = self._facts.status
        if kind is messages.Keyword.OPT_OUT:
            # An opt-out is honoured whenever it comes, until the session begins closing
            # (the validator's word; a texted STOP is the number's consent record before
            # any session hears it).
            return acceptance.where(status) if status is SessionStatus.CLOSED else None
        if kind is messages.Keyword.OPT_IN:
            return "an opt-in (START) is the client's consent to texts, not a session's to record"
        return acceptance.response_problem(status)

    # -- clinician decisions (updates: validated, recorded, then acted on) ----------------

    @workflow.update
    async def mark_safe(self, decision: ClinicianDecision) -> str:
        """The clinician knows the client is safe: outreach and escalation stop now."""
        self._facts = self._facts.noted(DecisionKind.MARK_SAFE)
        await self._record_decision(DecisionKind.MARK_SAFE, decision)
        return await self._when_outreach_ends()

    @mark_safe.validator
    def _validate_mark_safe(self, decision: ClinicianDecision) -> None:
        self._validate(DecisionKind.MARK_SAFE, decision)

    @workflow.update
    async def escalate_now(self, decision: ClinicianDecision) -> str:
        """Reach the emergency contact now, with or without consent, on a legal basis.

        Carried out at once, beside any step in flight; the answer says what came of it
        (told; not carried out, and why; uncertain), and a task goes with any but the first.
        """
        self._escalate_now_pending = True
        try:
            await self._record_decision(DecisionKind.ESCALATE_NOW, decision)
            return f"recorded: {await self._escalate(override=decision)}"
        finally:
            self._escalate_now_pending = False

    @escalate_now.validator
    def _validate_escalate_now(self, decision: ClinicianDecision) -> None:
        self._validate(DecisionKind.ESCALATE_NOW, decision)

    @workflow.update
    async def stand_down(self, decision: ClinicianDecision) -> str:
        """Stop outreach and escalation now (the practice reached the client another way)."""
        self._facts = self._facts.noted(DecisionKind.STAND_DOWN)
        await self._record_decision(DecisionKind.STAND_DOWN, decision)
        return await self._when_outreach_ends()

    @stand_down.validator
    def _validate_stand_down(self, decision: ClinicianDecision) -> None:
        self._validate(DecisionKind.STAND_DOWN, decision)

    @workflow.update
    async def add_note(self, decision: ClinicianDecision) -> str:
        """Add a clinician's note to the session's trail (the note is the `reason`).

        Not once the session has begun closing: the note is refused, and its sender told.
        """
        if not await self._record_news(_decision_made(DecisionKind.ADD_NOTE, decision)):
            _refuse_in_handler("add_note", CLOSING)
        return "recorded"

    @add_note.validator
    def _validate_add_note(self, decision: ClinicianDecision) -> None:
        self._validate(DecisionKind.ADD_NOTE, decision)

    def _validate(self, kind: DecisionKind, decision: ClinicianDecision) -> None:
        problem = decisions.problem(
            kind, decision, status=self._facts.status,
            escalated=(self._facts.escalation is Escalation.SENT
                       or self._escalate_now_pending),
            decided=self._facts.decided(),
        )
        if problem is None and kind is DecisionKind.ADD_NOTE and self._facts.closing_begun():
            problem = CLOSING
        _refuse(kind.value, problem)

    async def _record_decision(self, kind: DecisionKind, decision: ClinicianDecision) -> None:
        await self._record(_decision_made(kind, decision))

    # -- what the session's notices say (a signal from each notice workflow) -------------

    @workflow.signal(name=NOTICE_NEWS)
    async def notice_news(self, news: NoticeNews) -> None:
        """A notice of this session was acknowledged, or ran out of steps with nobody.

        Recorded in the session's trail, and so folded into its facts: whether a person has
        the session decides whether it may close. Not once the session has begun closing
        (`_record_news`; nothing waits on it then): the notice's own trail holds it, and the
        session's trail ends with its outcome.

        The first test below is the one 4565274 added for follow-up, before the trail's
        gate (`trail-closing`) took every handler's news in: kept as it is, without asking
        the patch, because histories recorded since then skip the news there with no
        marker: asked there, the patch would say False to them on replay, and record it.
        """
        if (self._facts.outcome is not None
                or self._facts.status in {SessionStatus.FOLLOW_UP, SessionStatus.CLOSED}
                or not self._patches.has(AWAIT_ACKNOWLEDGMENT)):
            return
        if not await self._record_news(news.event()):
            workflow.logger.info("notice_news_not_recorded", extra={"notice": news.notice})

    @workflow.query
    def state(self) -> SessionState:
        """Status, attempts made, and what happens next and when."""
        known = self._facts
        return SessionState(status=known.status, attempts_made=known.attempts,
                            next_action=known.next_action,
                            next_action_at=known.next_action_at, outcome=known.outcome)


def _decision_made(kind: DecisionKind, decision: ClinicianDecision,
                   ) -> events.ClinicianDecisionMade:
    return events.ClinicianDecisionMade(
        decision=kind, clinician_id=decision.clinician_id, reason=decision.reason,
        legal_basis=decision.legal_basis if kind is DecisionKind.ESCALATE_NOW else None,
        authenticated_by=decision.authenticated_by,
    )


def _refuse(name: str, problem: str | None) -> None:
    """A validator's refusal: the caller hears `<name> refused: <reason>`; nothing changed."""
    if problem is not None:
        msg = f"{name} refused: {problem}"
        raise ValueError(msg)


def _refuse_in_handler(name: str, problem: str | None) -> None:
    """The protocol moved on after the validator accepted: refuse rather than ignore."""
    if problem is not None:
        raise ApplicationError(f"{name} refused: {problem}", type="ValueError")
