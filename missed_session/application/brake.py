"""The mass no-show brake's use cases: what it holds, release, and stand down.

The CLI (`starter.py brake status|release|stand-down`) and any other entry point call these;
they never signal a session themselves. A release or stand-down of the whole episode marks
the episode decided first (so a session missed after the decision is not held by it), then
signals each session it holds (`brake_decision`): each session records in its own trail
what its hold became. A session that is no longer held (its high-risk limit passed, it
closed) ignores the signal, and the answer counts it apart. The episode's page is
acknowledged by the deciding clinician (its climb stops: the decision is the answer).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from temporalio.client import Client
from temporalio.service import RPCError

from missed_session.application import notices as notice_cases
from missed_session.application.results import Result, ResultKind
from missed_session.application.service import Application, UnavailableError
from missed_session.domain.brake import BrakeDecision
from missed_session.domain.models import workflow_id_for
from missed_session.store.brake import BrakeStore, Episode, HeldSession

SIGNALS_AT_ONCE = 20
"""Signals in flight at once: two hundred held sessions are released in a few seconds
without flooding the Temporal frontend."""


@dataclass(frozen=True)
class BrakeStatus:
    """The brake's episodes (newest first) and, for the open ones, their sessions."""

    episodes: list[Episode]
    held: dict[str, list[HeldSession]]
    """By episode id: the sessions of each episode still open."""


async def status(app: Application) -> BrakeStatus | Result:
    """The recent episodes and who the open ones hold."""
    try:
        store = BrakeStore(await app.pool())
        episodes = await store.episodes()
        held = {e.episode: await store.held_sessions(e.episode)
                for e in episodes if e.state == "open"}
    except (UnavailableError, OSError, asyncpg.PostgresError) as error:
        return Result(ResultKind.UNAVAILABLE, f"PostgreSQL: {error}")
    return BrakeStatus(episodes=episodes, held=held)


async def release(app: Application, clinician_id: str, *, session_id: str | None = None,
                  reason: str = "") -> Result:
    """Release the open episode's hold (outreach proceeds), or one session's."""
    return await _decide(app, BrakeDecision(kind="release", clinician_id=clinician_id,
                                            reason=reason), session_id)


async def stand_down(app: Application, clinician_id: str, *, session_id: str | None = None,
                     reason: str = "") -> Result:
    """Stand the open episode's held sessions down (no client outreach), or one session."""
    return await _decide(app, BrakeDecision(kind="stand_down", clinician_id=clinician_id,
                                            reason=reason), session_id)


async def _decide(app: Application, decision: BrakeDecision, session_id: str | None) -> Result:
    verb = "released" if decision.kind == "release" else "stood down"
    try:
        store = BrakeStore(await app.pool())
        client = await app.temporal()
        if session_id is not None:
            episode = await store.episode_of(session_id)
            if episode is None:
                return Result(ResultKind.NOT_FOUND,
                              f"session {session_id} was never held by the brake", session_id)
            sent = await _signal(client, [session_id],
                                 decision.model_copy(update={"episode": episode}))
            if not sent:
                return Result(ResultKind.NOT_FOUND, f"session {session_id} has closed",
                              session_id)
            return Result(ResultKind.APPLIED, f"session {session_id}: {verb} (episode "
                          f"{episode}; its trail records it if it was still held)", session_id)
        open_episodes = await store.episodes(open_only=True)
        if not open_episodes:
            return Result(ResultKind.REFUSED, "the brake holds nothing: no open episode")
        lines: list[str] = []
        for opened in open_episodes:
            await store.decide(opened.episode, "released" if decision.kind == "release"
                               else "stood_down", decision.clinician_id, datetime.now(UTC))
            sessions = [s.session_id for s in await store.held_sessions(opened.episode)
                        if s.state == "held"]
            sent = await _signal(client, sessions,
                                 decision.model_copy(update={"episode": opened.episode}))
            page = f"{opened.opened_by}/brake-episode-{opened.episode}"
            acked = await notice_cases.acknowledge_on_decision(client, [page],
                                                               decision.clinician_id)
            lines.append(f"episode {opened.episode}: {verb}; {sent} held sessions told"
                         + (f", {len(sessions) - sent} had closed" if sent < len(sessions)
                            else "")
                         + (f"; page {page} acknowledged" if acked else ""))
    except (UnavailableError, OSError, asyncpg.PostgresError, RPCError) as error:
        return Result(ResultKind.UNAVAILABLE, f"{type(error).__name__}: {error}")
    return Result(ResultKind.APPLIED, "; ".join(lines))


async def _signal(client: Client, session_ids: list[str], decision: BrakeDecision) -> int:
    """Signal each session; how many took the signal (a closed session cannot)."""
    gate = asyncio.Semaphore(SIGNALS_AT_ONCE)

    async def one(session_id: str) -> bool:
        async with gate:
            try:
                await client.get_workflow_handle(workflow_id_for(session_id)).signal(
                    "brake_decision", decision)
            except RPCError:
                return False
            return True

    return sum(await asyncio.gather(*(one(s) for s in session_ids)))
