from datetime import timedelta

from activities.outreach import Sender
from missed_session.domain.models import Outcome
from missed_session.store.audit import AuditStore
from tests.factories import booking
from worker import new_worker
from workflows.session import SessionWorkflow


async def test_no_show_unreachable_escalated(client, pool, task_queue, time_skipping_env):
    b = booking()
    async with new_worker(client, pool, task_queue=task_queue, sender=Sender("Alex", "+15555550100")):
        result = await client.execute_workflow(
            SessionWorkflow.run, b, id=b.workflow_id, task_queue=task_queue
        )
    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    trail = await AuditStore(pool).trail(b.session_id)
    print([(e.sequence, e.event_type.value, e.occurred_at - b.start) for e in trail])
    assert [e.sequence for e in trail] == list(range(1, len(trail) + 1))
