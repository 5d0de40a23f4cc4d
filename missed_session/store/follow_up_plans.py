"""Follow-up plans (`follow_up_plans`): the first plan made for a session stands."""

from __future__ import annotations

import asyncpg

from missed_session.domain.models import FollowUpPlan


class FollowUpPlanStore:
    """Keeps each session's follow-up plan."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save_plan(self, *, session_id: str, client_ref: str,
                        plan: FollowUpPlan) -> FollowUpPlan:
        """Keep the first plan made for a session and return it.

        A retry may see a different attendance history (another session closed meanwhile);
        the plan already recorded is the one that stands.
        """
        stored: str = await self._pool.fetchval(
            "WITH saved AS ("
            " INSERT INTO follow_up_plans (session_id, client_ref, plan) VALUES ($1, $2, $3)"
            " ON CONFLICT (session_id) DO NOTHING RETURNING plan)"
            " SELECT plan FROM saved UNION ALL"
            " SELECT plan FROM follow_up_plans WHERE session_id = $1 LIMIT 1",
            session_id, client_ref, plan.model_dump_json(),
        )
        return FollowUpPlan.model_validate_json(stored)
