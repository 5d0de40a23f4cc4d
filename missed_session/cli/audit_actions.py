"""`audit verify|replay|export|purge|conformance` and `projections rebuild`: compliance review."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio.service import RPCError

from missed_session.application.service import Application, UnavailableError
from missed_session.audit import cli as audit_cli
from missed_session.cli.render import BAD_INPUT, FAILED, fail
from missed_session.config import ConfigurationError, load_settings
from missed_session.store import checkpoints


async def _run(request: audit_cli.AuditActionRequest, app: Application) -> audit_cli.Verdict:
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
    if isinstance(request, audit_cli.ConformanceRequest):
        return await audit_cli.run_conformance(request, store)
    # Replay runs the workflow code itself: the one command that imports it.
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


async def run_audit_action(argv: list[str]) -> int:
    """`audit verify|replay ...`: 0 when everything checked out, 1 when not, 2 bad input."""
    try:
        settings = load_settings()
        request = audit_cli.parse(argv, retention_years=settings.audit_retention_years,
                                  now=datetime.now(UTC))
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except (audit_cli.AuditUsageError, ConfigurationError) as error:
        return fail(str(error), BAD_INPUT)
    async with Application(settings) as app:
        try:
            verdict = await _run(request, app)
        except UnavailableError as error:
            return fail(str(error), FAILED)
    print(verdict.text)
    return 0 if verdict.ok else FAILED
