"""schemathesis over the served OpenAPI document: no 5xx, no response outside the schema.

The API runs on a real uvicorn with a worker, the time-skipping server and PostgreSQL
behind it; schemathesis (its CLI, as a CI job would run it) sends generated requests,
valid and invalid, with each caller kind's token in turn, and a clinician's own token.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from missed_session.api.tokens import Scope
from tests.support.console import ROSTER, load
from tests.support.http_api import Served, served  # noqa: F401 (a fixture)
from tests.support.servers import start_test_server

EXAMPLES = os.environ.get("MSR_SCHEMATHESIS_EXAMPLES", "15")
"""Cases per operation and token; raise it for a longer run."""
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")


@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A server of this module's own: generated bookings leave sessions waiting on it."""
    env = await start_test_server()
    yield env
    await env.shutdown()


@pytest.mark.parametrize("scope", [Scope.SCHEDULER, Scope.CLINICIAN, "t-ana"])
async def test_schemathesis_finds_no_server_error(
    served: Served, scope: Scope | str, tmp_path: Path, pool: asyncpg.Pool,  # noqa: F811
) -> None:
    await load(pool, ROSTER)  # t-ana's own token decides: she must be on the roster
    token = (served.tokens[scope] if isinstance(scope, Scope)
             else served.clinician_tokens[scope])
    st = Path(sys.executable).parent / "st"
    process = await asyncio.create_subprocess_exec(
        str(st), "run", f"{served.url}/openapi.json", "--checks", CHECKS,
        "--max-examples", EXAMPLES, "--phases", "examples,fuzzing",
        "--header", f"Authorization: Bearer {token}",
        "--workers", "2", "--seed", "1", "--no-color", "--report-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-6000:]
    assert "No issues found" in text or "passed" in text, text[-2000:]
