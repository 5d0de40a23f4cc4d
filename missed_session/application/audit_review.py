"""Compliance review: `audit verify|replay|export|purge|conformance`, `projections rebuild`.

PostgreSQL only, except replay, which fetches histories from Temporal and runs the workflow
code itself (the one use case that imports it); a Temporal error is `UnavailableError`.
"""

from __future__ import annotations

from temporalio.service import RPCError

from missed_session.application.service import Application, UnavailableError
from missed_session.audit import cli as audit_cli
from missed_session.store import checkpoints


async def run_action(request: audit_cli.AuditActionRequest,
                     app: Application) -> audit_cli.Verdict:
    """Carry out one review request; raises UnavailableError."""
    store = await app.store()
    if isinstance(request, audit_cli.VerifyRequest):
        return await audit_cli.run_verify(request, store,  # PostgreSQL only
                                          checkpoints.signer_for(app.settings),
                                          checkpoints.head_sink_for(app.settings))
    if isinstance(request, audit_cli.PurgeRequest):
        return await audit_cli.run_purge(request, store)
    if isinstance(request, audit_cli.ExportRequest):
        return await audit_cli.run_export(request, store)
    if isinstance(request, audit_cli.RebuildRequest):
        return await audit_cli.run_rebuild(store)
    if isinstance(request, audit_cli.ConformanceRequest | audit_cli.ConformanceReportRequest):
        return await audit_cli.run_conformance(request, store)  # one session, or a period
    # Replay runs the workflow code itself: the one use case that imports it.
    from worker import WORKFLOW_RUNNER  # noqa: PLC0415
    from workflows.notice import NoticeWorkflow  # noqa: PLC0415
    from workflows.session import SessionWorkflow  # noqa: PLC0415

    client = await app.temporal()
    setup = audit_cli.ReplaySetup([SessionWorkflow, NoticeWorkflow], WORKFLOW_RUNNER)
    try:
        return await audit_cli.run_replay(request, client, store, setup)
    except RPCError as error:
        msg = f"Temporal refused the request: {error}"
        raise UnavailableError(msg) from None
