"""`audit verify|replay|export|purge|conformance` and `projections rebuild`: compliance review."""

from __future__ import annotations

from datetime import UTC, datetime

from missed_session.application.audit_review import run_action
from missed_session.application.service import Application, UnavailableError
from missed_session.audit import cli as audit_cli
from missed_session.cli.render import BAD_INPUT, FAILED, fail
from missed_session.config import ConfigurationError, load_settings


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
            verdict = await run_action(request, app)
        except UnavailableError as error:
            return fail(str(error), FAILED)
    print(verdict.text)
    return 0 if verdict.ok else FAILED
