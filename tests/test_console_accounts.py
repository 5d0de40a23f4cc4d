"""Console accounts, sign-ins and the access log against a real PostgreSQL; roles, pure.

The browser test covers the pages; this covers what a browser cannot reach quickly: an
expired sign-in, a clinician taken off the roster, a reset password ending sessions, the
access log refusing changes, the `starter.py console set-password` verb.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from missed_session.application import console as cases
from missed_session.application.results import ResultKind
from missed_session.application.service import Application
from missed_session.config import Settings
from missed_session.domain.access import Viewer, ViewerRole, may_decide, may_view
from missed_session.store.console import ConsoleStore
from tests.support.console import PASSWORD, ROSTER, load
from tests.support.servers import TEST_KEYS
from tests.support.starter import cli, cli_env, temporal_env  # noqa: F401 - fixtures, used by name

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def app(pool: asyncpg.Pool) -> Application:
    await load(pool, ROSTER)
    return Application(Settings(encryption_keys=TEST_KEYS), pool=pool)


async def test_a_sign_in_acts_in_its_roster_role_until_it_expires(app: Application) -> None:
    assert (await cases.set_password(app, "t-ana", PASSWORD)).ok
    assert await cases.sign_in(app, "t-ana", "wrong password!", NOW) is None
    assert await cases.sign_in(app, "nobody", PASSWORD, NOW) is None
    signed = await cases.sign_in(app, "t-ana", PASSWORD, NOW)
    assert isinstance(signed, cases.SignIn)
    assert signed.expires_at == NOW + cases.SESSION_LIFETIME
    who = await cases.viewer(app, signed.token, NOW + timedelta(hours=1))
    assert who == Viewer("t-ana", ViewerRole.THERAPIST, signed.csrf_token)
    assert await cases.viewer(app, signed.token, signed.expires_at) is None  # expired
    assert await cases.viewer(app, "a-guessed-token", NOW) is None

    stored = await (await app.pool()).fetchval(
        "SELECT password_hash FROM console_accounts WHERE clinician_id = 't-ana'")
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    tokens = await (await app.pool()).fetchval("SELECT token_hash FROM console_sessions")
    assert signed.token not in tokens


async def test_a_reset_password_or_leaving_the_roster_ends_the_sign_in(
    app: Application, pool: asyncpg.Pool,
) -> None:
    assert (await cases.set_password(app, "oc-lee", PASSWORD)).ok
    first = await cases.sign_in(app, "oc-lee", PASSWORD, NOW)
    assert isinstance(first, cases.SignIn)
    assert (await cases.set_password(app, "oc-lee", PASSWORD + "!")).ok
    assert await cases.viewer(app, first.token, NOW) is None

    second = await cases.sign_in(app, "oc-lee", PASSWORD + "!", NOW)
    assert isinstance(second, cases.SignIn)
    assert (await cases.viewer(app, second.token, NOW)).role is ViewerRole.ON_CALL  # type: ignore[union-attr]
    await load(pool, ROSTER.split("[roster.clinicians.oc-lee]", maxsplit=1)[0])  # off the roster
    assert await cases.viewer(app, second.token, NOW) is None
    assert await cases.sign_in(app, "oc-lee", PASSWORD + "!", NOW) is None


async def test_accounts_refuse_bad_input(app: Application) -> None:
    short = await cases.set_password(app, "t-ana", "short")
    assert (short.kind, short.message) == (ResultKind.BAD_INPUT,
                                           "password: must be 12 to 256 characters")
    stranger = await cases.set_password(app, "x-unknown", PASSWORD)
    assert stranger.kind is ResultKind.NOT_FOUND
    assert "not on the roster" in stranger.message
    reviewer = await cases.set_password(app, "rev-kai", PASSWORD, reviewer=True)
    assert reviewer.ok
    signed = await cases.sign_in(app, "rev-kai", PASSWORD, NOW)
    assert isinstance(signed, cases.SignIn)
    who = await cases.viewer(app, signed.token, NOW)
    assert who is not None
    assert (who.role, who.decides, who.sees_practice, who.sees_board) == (
        ViewerRole.COMPLIANCE, False, True, False)


async def test_the_access_log_is_append_only_even_for_the_owner(
    app: Application, pool: asyncpg.Pool, owner_database_url: str,
) -> None:
    who = Viewer("t-ana", ViewerRole.THERAPIST, "")
    await cases.record_view(app, who, "session", "s-1")
    await cases.record_view(app, who, "session", "s-2", allowed=False)
    log = await ConsoleStore(pool).accesses()
    assert [(a.clinician_id, a.session_id, a.allowed) for a in log] == [
        ("t-ana", "s-1", True), ("t-ana", "s-2", False)]
    owner = await asyncpg.connect(owner_database_url)
    try:
        for change in ("UPDATE console_access_log SET allowed = true",
                       "DELETE FROM console_access_log"):
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await owner.execute(change)
    finally:
        await owner.close()


def test_roles_decide_what_a_viewer_sees_and_does() -> None:
    ana = Viewer("t-ana", ViewerRole.THERAPIST, "")
    lee = Viewer("oc-lee", ViewerRole.ON_CALL, "")
    maya = Viewer("s-maya", ViewerRole.SUPERVISOR, "")
    kai = Viewer("rev-kai", ViewerRole.COMPLIANCE, "")
    assert [may_view(v, "t-bo") for v in (ana, lee, maya, kai)] == [False, True, True, True]
    assert [may_decide(v, "t-bo") for v in (ana, lee, maya, kai)] == [False, True, True, False]
    assert (may_view(ana, "t-ana"), may_decide(ana, "t-ana"), may_view(ana, None)) == (
        True, True, False)
    assert [v.sees_board for v in (ana, lee, maya, kai)] == [False, True, True, False]


@pytest.mark.usefixtures("cli_env")
async def test_set_password_verb(pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    await load(pool, ROSTER)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert await cli("console", "set-password", "t-ana", "--password-stdin") == 0
    assert "console password set for t-ana (clinician)" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert await cli("console", "set-password", "t-ana", "--password-stdin") == 2
    assert "password: must be 12 to 256 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert await cli("console", "set-password", "nobody", "--password-stdin") == 1
    assert "not on the roster" in capsys.readouterr().err
    app = Application(Settings(encryption_keys=TEST_KEYS), pool=pool)
    assert isinstance(await cases.sign_in(app, "t-ana", PASSWORD, NOW), cases.SignIn)


async def test_the_service_role_appends_to_the_access_log_and_changes_nothing(
    app: Application, service_database_url: str,
) -> None:
    service = await asyncpg.connect(service_database_url)
    try:
        await service.execute("INSERT INTO console_access_log (clinician_id, page, session_id,"
                              " allowed) VALUES ('t-ana', 'session', 's-1', true)")
        for statement in ("UPDATE console_access_log SET allowed = false",
                          "DELETE FROM console_access_log", "TRUNCATE console_access_log"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await service.execute(statement)
        await service.execute("DELETE FROM console_sessions")  # sign-outs: a working table
    finally:
        await service.close()
    assert len(await ConsoleStore(await app.pool()).accesses()) == 1


async def test_a_resolution_needs_an_outcome_and_a_reviewer_acknowledges_nothing(
    app: Application,
) -> None:
    ana = Viewer("t-ana", ViewerRole.THERAPIST, "")
    empty = await cases.resolve(app, ana, "s-1/no-show-alert", "  ", "")
    assert empty.kind is ResultKind.BAD_INPUT
    assert empty.message.startswith("outcome: ")
    kai = Viewer("rev-kai", ViewerRole.COMPLIANCE, "")
    for result in (await cases.acknowledge(app, kai, "s-1/no-show-alert"),
                   await cases.resolve(app, kai, "s-1/no-show-alert", "done", "")):
        assert (result.kind, result.message) == (
            ResultKind.REFUSED, "a compliance_reviewer acknowledges nothing")
