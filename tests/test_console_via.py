"""A clinician's acknowledgment or resolution in the console is recorded `via=console`,
not `via=http` (the HTTP API's bearer tokens are another way in; issue 22)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from missed_session.application import console as cases
from missed_session.application import notices as notice_cases
from missed_session.application.results import ResultKind
from missed_session.application.service import Application
from missed_session.domain.access import Viewer, ViewerRole
from missed_session.domain.notices import Acknowledgment, AckVia, Resolution


class Offline:
    async def temporal(self) -> None:
        return None

    async def pool(self) -> None:
        return None


async def test_console_acknowledgments_and_resolutions_say_via_console(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[Acknowledgment | Resolution] = []

    async def record(_: Any, __: Any, key: str, what: Acknowledgment | Resolution) -> Any:
        sent.append(what)
        return notice_cases.NoticeResult(ResultKind.APPLIED, "ok", key)

    monkeypatch.setattr(notice_cases, "acknowledge", record)
    monkeypatch.setattr(notice_cases, "resolve", record)
    app = cast(Application, Offline())
    ana = Viewer("t-ana", ViewerRole.THERAPIST, "")
    await cases.acknowledge(app, ana, "s-1/no-show-alert")
    await cases.resolve(app, ana, "s-1/escalation-blocked", "called the client", "")
    assert [item.via for item in sent] == [AckVia.CONSOLE, AckVia.CONSOLE]
