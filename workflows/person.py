"""One person, one ladder: a session's part when its person is already in outreach.

Read with `missed_session.domain.person` (the rules) and `workflows.session` (the protocol,
which calls three methods here: `_running_ladder` at the no-show, `_outreach` for the
ladder, its own or joined, and `_ladder_ended` once its outreach is over).

The joiner (the later no-show) asks the trail whether a session of the same person is in
outreach (an activity: a read of PostgreSQL, so its answer is in the history). When the
client may be reached now, the session's first step asks, before it sends anything
(`OutreachRequest.ladder_since`), and the no-show's records ask for the alert's words, so
a burst of no-shows pays no round before its first calls; otherwise (outside the contact
window), or before anything other than a client step reaches out (an escalation), a local
activity asks (`LADDER_IN_STEP`). The joiner records
`joined_outreach` naming it and signals it. The leader records `outreach_joined` and, when
its outreach ends, signals each joiner how it ended. The joiner waits for that (bounded by
`person.join_wait`), then closes referring to the leader, or, when the practice spaces
ladders or the leader went silent, runs its own ladder no sooner than an attempt spacing
after the leader's last step. If the person comes back through the joiner's session (a late
check-in, a call back), the joiner tells the leader, whose ladder stops with them reached.

Everything that crosses between the two sessions is a signal, so it is in both histories
and survives a worker restart; nothing is held outside them. A session recorded before
this existed replays without it (`ONE_LADDER`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.outreach import LadderActivities
    from missed_session.domain import acceptance, events, person, protocol
    from missed_session.domain.facts import SessionFacts, window_opens
    from missed_session.domain.models import (
        ClientResponse,
        Outcome,
        ResponseChannel,
        SessionBooking,
        SessionStatus,
        workflow_id_for,
    )
    from missed_session.domain.person import (
        LadderEnded,
        LadderJoin,
        LadderLookup,
        OwnLadder,
        PersonReached,
        RunningLadder,
    )

from workflows.patches import Patches
from workflows.steps import LadderRunning, wait_until
from workflows.trail import RECORD_RETRY, RECORD_TIMEOUT

ONE_LADDER = "one-ladder"
"""Patch id: a no-show looks for its person's running ladder (sessions recorded before it
never looked, and replay so)."""
LADDER_IN_STEP = "ladder-in-step"
"""Patch id: the no-show's question rides on its first step and its records, not on a local
activity before the first call (sessions recorded before ask first, and replay so)."""
JOIN_SIGNAL = "outreach_joined"
"""Joiner -> leader: a session joins the leader's ladder."""
ENDED_SIGNAL = "joined_outreach_ended"
"""Leader -> joiner: the ladder has ended, and how."""
REACHED_SIGNAL = "person_reached"
"""Joiner -> leader: the person came back through the joiner's session."""


class PersonLadder:
    """The session workflow's side of its person's one ladder (mixed into it)."""

    _booking: SessionBooking
    _facts: SessionFacts
    _patches: Patches
    _ladder_news: LadderEnded | None = None
    """The leader's word that its ladder ended (a joiner's; the first counts)."""
    _told: frozenset[str] = frozenset()
    """Joiners already told how this session's ladder ended (a leader's)."""
    _asking: datetime | None = None
    """The no-show's instant while the question is unasked: the first step carries it."""

    if TYPE_CHECKING:  # what the session provides; no runtime stubs to shadow it in the MRO
        async def _reach_out(self) -> Outcome: ...

    # What the protocol provides (`SessionWorkflow`):

    async def _record(self, details: events.EventDetails) -> None:
        raise NotImplementedError

    def _stops(self) -> bool:
        raise NotImplementedError

    def _plan(self, status: SessionStatus, action: str | None, at: datetime | None) -> None:
        raise NotImplementedError

    if TYPE_CHECKING:
        async def _record_news(self, details: events.EventDetails) -> bool: ...

    # -- the joiner ------------------------------------------------------------------------

    async def _running_ladder(self) -> RunningLadder | None:
        """At the no-show: the session of the same person in outreach now, if any.

        None also while the question waits for the first step to ask it (`_asking`).
        """
        if self._patches.has(LADDER_IN_STEP):
            booking, now = self._booking, workflow.now()
            since = min(now, self._facts.start + protocol.grace_period(booking))
            if window_opens(booking, now) <= now:  # a step goes out now: it asks
                self._asking = since
                return None
            return await self._ask(since)  # outreach waits for the window anyway
        if not self._patches.has(ONE_LADDER):
            return None
        return await self._ask(workflow.now())

    def _lookup(self, since: datetime) -> LadderLookup:
        """The question: a ladder of this session's person whose no-show came before `since`."""
        booking = self._booking
        return LadderLookup(session_id=booking.session_id, client_ref=booking.client.ref,
                            phone=booking.client.phone, no_show_at=since)

    async def _ask(self, since: datetime) -> RunningLadder | None:
        found: RunningLadder | None = await workflow.execute_local_activity_method(
            LadderActivities.running_ladder, self._lookup(since),
            start_to_close_timeout=RECORD_TIMEOUT, retry_policy=RECORD_RETRY,
        )
        return found

    def _question(self) -> datetime | None:
        """The unasked question's instant, handed to whoever asks it first (None: asked).

        The first client step carries it (`OutreachRequest.ladder_since`); anything else
        that reaches out before a step asks it itself (`_ask_unasked`).
        """
        since, self._asking = self._asking, None
        return since

    async def _ask_unasked(self) -> None:
        """Before anything but a client step reaches out: the question, if still unasked.

        Raises `LadderRunning` when the person's ladder runs (the protocol joins it).
        """
        since = self._question()
        if since is not None and (leader := await self._ask(since)) is not None:
            raise LadderRunning(leader)

    async def _outreach(self, leader: RunningLadder | None) -> Outcome:
        """Join the person's running ladder, or run this session's own.

        A ladder found by the first step (or before an escalation) is joined as one found
        at the no-show; the step was not taken.
        """
        try:
            return await self._followed(leader) or await self._reach_out()
        except LadderRunning as running:
            return await self._followed(running.leader) or await self._reach_out()

    async def _followed(self, leader: RunningLadder | None) -> Outcome | None:
        """Join `leader`'s ladder: the outcome to close with, or None to reach out here.

        None also when the person came back through this session meanwhile (or a clinician
        ended its outreach): the protocol then acknowledges that, as for any session.
        """
        if leader is None:
            return None
        booking, lead = self._booking, leader.session_id
        rule = booking.protocol.same_person
        await self._record(events.JoinedOutreach(leader=lead, rule=rule.value))
        until = workflow.now() + person.join_wait(booking)
        self._plan(SessionStatus.OUTREACH, f"follow the outreach of session {lead}", until)
        # A leader that closed meanwhile will never tell: this session goes on at once.
        if await _signal(lead, JOIN_SIGNAL, LadderJoin(session_id=booking.session_id)):
            await wait_until(lambda: self._ladder_news is not None or self._stops(), until)
        if self._stops():
            await self._tell_leader(lead)
            await self._record(events.JoinedOutreachEnded(
                leader=lead, outcome=None, own_ladder=False,
                reason="the outreach of this session stopped first"))
            return None
        then = person.after_leader(rule, self._ladder_news, now=workflow.now(),
                                   spacing=protocol.attempt_spacing(booking),
                                   last_seen=leader.last_event_at)
        ended = self._ladder_news.outcome if self._ladder_news is not None else None
        if isinstance(then, OwnLadder):
            await self._record(events.JoinedOutreachEnded(
                leader=lead, outcome=ended, own_ladder=True, reason=then.reason))
            self._plan(SessionStatus.OUTREACH, "outreach attempt 1", then.not_before)
            await wait_until(self._stops, then.not_before)
            return None
        await self._record(events.JoinedOutreachEnded(
            leader=lead, outcome=ended, own_ladder=False,
            reason=f"followed the outreach of session {lead}"))
        return then.outcome

    async def _tell_leader(self, leader: str) -> None:
        """The person came back here: the leader's ladder stops with them reached."""
        facts = self._facts
        if facts.response is not None:
            note = f"via session {self._booking.session_id}: {facts.response.note}".strip()
            response = facts.response.model_copy(update={"note": note[:500]})
        elif facts.check_in is not None:
            response = ClientResponse(
                channel=ResponseChannel.IN_PERSON, responder="client",
                note=f"checked in late to session {self._booking.session_id}")
        else:
            return  # a clinician's decision here is about this session only
        # A leader that has closed has nothing left to stop.
        await _signal(leader, REACHED_SIGNAL,
                      PersonReached(session_id=self._booking.session_id, response=response))

    @workflow.signal(name=ENDED_SIGNAL)
    def _joined_outreach_ended(self, ended: LadderEnded) -> None:
        """The leader's ladder ended (the first word counts)."""
        if self._ladder_news is None:
            self._ladder_news = ended

    # -- the leader ------------------------------------------------------------------------

    @workflow.signal(name=JOIN_SIGNAL)
    async def _outreach_joined(self, join: LadderJoin) -> None:
        """A session of the same person joined this one's ladder.

        Recorded, and told how the ladder ended once it has (at once, if it already has).
        Not recorded once this session has begun closing (the joiner's own trail holds the
        join; it is told the outcome all the same).
        """
        if self._facts.outcome is None and join.session_id not in self._facts.joiners:
            await self._record_news(events.OutreachJoined(joiner=join.session_id))
        if self._facts.outreach_outcome is not None:
            await self._tell_joiner(join.session_id, self._facts.outreach_outcome)

    @workflow.signal(name=REACHED_SIGNAL)
    def _person_reached(self, reached: PersonReached) -> None:
        """The person came back through a joiner's session: they are reached here too."""
        if acceptance.response_problem(self._facts.status) is None:
            self._facts = self._facts.noted(reached.response)

    async def _ladder_ended(self, outcome: Outcome) -> None:
        """The session's outreach ended with `outcome`: every joiner is told."""
        for joiner in self._facts.joiners:
            await self._tell_joiner(joiner, outcome)

    async def _tell_joiner(self, joiner: str, outcome: Outcome) -> None:
        if joiner in self._told:
            return
        self._told = self._told | {joiner}
        # A joiner that closed on its own (it stopped waiting, or its wait ran out) is gone.
        await _signal(joiner, ENDED_SIGNAL, LadderEnded(
            leader=self._booking.session_id, outcome=outcome, ended_at=workflow.now()))


async def _signal(session_id: str, name: str, arg: object) -> bool:
    """Signal the session's workflow; False when it has closed (or never existed)."""
    try:
        await workflow.get_external_workflow_handle(workflow_id_for(session_id)).signal(
            name, arg)
    except FailureError:
        return False
    return True
