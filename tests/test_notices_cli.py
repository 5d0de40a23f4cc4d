"""`starter.py roster ...` and `starter.py notices ...` against the real servers."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.notices import notice_workflow_id
from missed_session.store.notices import NoticeStore
from tests.support.factories import booking, booking_data, daytime, without_consent
from tests.support.notices import ANA, ROSTER
from tests.support.starter import cli, cli_env, running_worker, temporal_env  # noqa: F401 - fixtures, used by name
from workflows.session import SessionWorkflow

PRACTICE = 'version = "2026-11-01"\n[protocols.standard]\n' + ROSTER


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.usefixtures("cli_env")
async def test_a_roster_with_a_gap_is_refused_and_a_full_one_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    gap = PRACTICE + 'days = ["mon", "tue", "wed", "thu", "fri"]\n'
    assert await cli("roster", "load", write(tmp_path / "gap.toml", gap)) == 2
    err = capsys.readouterr().err
    assert "gap.toml: roster.on_call: nobody is on call sat 00:00-mon 00:00" in err
    assert await cli("roster", "show") == 2
    assert "no roster is loaded" in capsys.readouterr().err

    assert await cli("roster", "load", write(tmp_path / "ok.toml", PRACTICE)) == 0
    assert "3 clinicians, 1 on-call shifts" in capsys.readouterr().out
    assert await cli("roster", "on-call", "--at", "2026-12-25T03:00:00-08:00") == 0
    assert capsys.readouterr().out.strip().endswith(": oc-lee")
    assert await cli("notices", "list") == 0
    assert capsys.readouterr().out.strip() == "no notices"


@pytest.mark.usefixtures("cli_env", "running_worker")
async def test_acknowledge_resolve_and_reply_from_the_command_line(
    client: Client, pool: asyncpg.Pool, time_skipping_env: WorkflowEnvironment,
    tmp_path: Path, task_queue: str, capsys: pytest.CaptureFixture[str],
) -> None:
    env = time_skipping_env
    assert await cli("roster", "load", write(tmp_path / "practice.toml", PRACTICE)) == 0
    start = daytime(await env.get_current_time() + timedelta(hours=1)).replace(microsecond=0)
    session = booking(**without_consent(booking_data(risk_tier="high",
                                                     start=start.isoformat())))
    handle = await client.start_workflow(SessionWorkflow.run, session, id=session.workflow_id,
                                         task_queue=task_queue)
    await env.sleep(start + timedelta(minutes=10, seconds=30) - await env.get_current_time())
    alert, task = f"{session.session_id}/no-show-alert", f"{session.session_id}/escalation-blocked"
    capsys.readouterr()

    assert await cli("notices", "list") == 0
    listed = capsys.readouterr().out
    assert alert in listed
    assert task in listed
    assert await cli("notices", "ack", task, "--clinician", "oc-lee") == 2
    assert "oc-lee was not notified of this notice" in capsys.readouterr().err
    assert await cli("notices", "ack", task, "--clinician", "t-ana") == 0
    assert "acknowledged by t-ana" in capsys.readouterr().out
    assert await cli("notices", "resolve", task, "--clinician", "t-ana",
                     "--outcome", "plan agreed") == 0
    assert await cli("notices", "sms-reply", "--from", ANA, "--body", "1") == 0
    assert "acknowledged by t-ana" in capsys.readouterr().out
    assert await cli("notices", "show", task) == 0
    shown = capsys.readouterr().out
    assert "notice_acknowledged" in shown
    assert "via=cli" in shown
    assert "notice_resolved" in shown
    assert re.search(r"\n  #\d+ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC notice_acknowledged", shown)
    assert re.search(r"\n  resolved \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by t-ana", shown)
    assert await cli("audit", task) == 0  # the notice's own trail, by its key
    assert "notice_acknowledged" in capsys.readouterr().out
    for key in (alert, task):
        await client.get_workflow_handle(notice_workflow_id(key)).result()
    assert (await NoticeStore(pool).get(alert)).acknowledged_via == "sms"  # type: ignore[union-attr]
    assert await cli("notices", "ack", "s-none/no-show-alert", "--clinician", "t-ana") == 2
    await handle.result()
