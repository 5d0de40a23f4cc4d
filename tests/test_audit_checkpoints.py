"""Signed checkpoints: a trail rewritten with recomputed hashes fails `audit verify`.

The attacker is a superuser who switches the trigger off and rewrites rows, recomputing
every hash after the change, so the chain alone holds; the checkpoint, signed with a key
PostgreSQL never sees, does not.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import starter
from missed_session.audit.cli import VerifyRequest, run_verify
from missed_session.audit.verify import verify_session
from missed_session.domain.models import AuditEvent, AuditEventType, Outcome
from missed_session.store import checkpoints
from missed_session.store.attendance import Attendance
from missed_session.store.audit import AuditStore
from missed_session.store.chain import GENESIS, ChainRow, event_hash
from missed_session.store.checkpoints import (
    Checkpointer,
    CheckpointSigner,
    FileHeadSink,
    IntegrityFinding,
    compare,
    make_checkpoint,
    write,
)
from tests.support.audit_chain import START, event, record_trail
from tests.support.audit_checkpoints import (
    KEY,
    SIGNER,
    forge,
    mark_safe,
    owner,  # noqa: F401 - fixtures, used by name
    owner_rewrite,
)
from tests.support.servers import TEST_KEYS


@pytest.fixture
async def attacker(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    await connection.execute("SET session_replication_role = replica")
    yield connection
    await connection.close()


async def rewrite(attacker: asyncpg.Connection, session_id: str,
                  rows: list[ChainRow]) -> None:
    """Replace the session's trail by `rows`, renumbered and with every hash recomputed."""
    await attacker.execute("DELETE FROM audit_events WHERE session_id = $1", session_id)
    prev = GENESIS
    for sequence, row in enumerate(rows, start=1):
        own = event_hash(session_id=session_id, sequence=sequence, event_type=row.event_type,
                         occurred_at=row.occurred_at, data=row.data, prev_hash=prev)
        await attacker.execute(
            "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at, data,"
            " prev_hash, hash) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
            session_id, sequence, row.event_type, row.occurred_at, json.dumps(dict(row.data)),
            prev, own,
        )
        prev = own


async def checkpointed(pool: asyncpg.Pool, session_id: str = "s-1", *,
                       close: bool = True) -> list[ChainRow]:
    store = AuditStore(pool)
    await record_trail(store, session_id, close=close)
    assert await Checkpointer(pool, SIGNER).round() >= 1
    return await store.chain_rows(session_id)


async def test_the_checkpointer_checkpoints_each_grown_session_once(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    await record_trail(store, "s-1", close=True)
    await record_trail(store, "s-2")
    checkpointer = Checkpointer(pool, SIGNER)
    assert await checkpointer.round() == 2
    assert await checkpointer.round() == 0
    [closing] = await store.checkpoints("s-1")
    assert closing.closing
    assert closing.sequence == 6
    assert closing.verifies(SIGNER)
    [running] = await store.checkpoints("s-2")
    assert not running.closing
    report = await verify_session(store, "s-1", SIGNER)
    assert report.ok
    assert report.anchor == "closing checkpoint at row 6"


async def test_a_rewrite_with_recomputed_hashes_is_named(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    store = AuditStore(pool)
    rows = await checkpointed(pool)
    changed = ChainRow(**{**rows[3].__dict__, "data": {**rows[3].data, "result": "answered"}})
    await rewrite(attacker, "s-1", [*rows[:3], changed, *rows[4:]])
    assert (await verify_session(store, "s-1")).ok  # the chain alone is fooled
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem is not None
    assert report.problem.startswith("row 4 (outreach_attempted) changed since its checkpoint")


async def test_an_inserted_row_is_named_inserted(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    store = AuditStore(pool)
    rows = await checkpointed(pool)
    forged = ChainRow(**{**rows[2].__dict__, "event_type": "clinician_decision_made",
                          "data": {"decision": "mark_safe"}})
    await rewrite(attacker, "s-1", [*rows[:3], forged, *rows[3:]])
    assert (await verify_session(store, "s-1")).ok
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem is not None
    assert report.problem.startswith("row 4 (clinician_decision_made) was inserted since its "
                                     "checkpoint")


async def test_a_removed_row_is_named_missing(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    store = AuditStore(pool)
    rows = await checkpointed(pool)
    await rewrite(attacker, "s-1", [*rows[:1], *rows[2:]])
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem is not None
    assert report.problem.startswith("checkpointed row 2 is missing since its checkpoint")


async def test_recomputed_hashes_over_the_same_content_are_named_rewritten(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    """Same events, but rechained from another genesis: content digests match, hashes not."""
    store = AuditStore(pool)
    rows = await checkpointed(pool, close=False)
    await attacker.execute("UPDATE audit_events SET hash = repeat('f', 64) WHERE sequence = 5")
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem is not None
    assert "rewritten with recomputed hashes" in report.problem
    assert len(rows) == 5


async def test_a_forged_checkpoint_is_named(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    """One signed with a key the attacker made up (the database never had the real one)."""
    store = AuditStore(pool)
    rows = await checkpointed(pool, close=False)
    await rewrite(attacker, "s-1", rows[:4])
    forger = CheckpointSigner({"c1": b"x" * 32}, "c1")
    forged = make_checkpoint(await store.chain_rows("s-1"), forger, datetime.now(UTC))
    await attacker.execute("DELETE FROM audit_checkpoints")
    assert await write(pool, forged)
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem == ("the checkpoint at row 4 is forged: its signature (key 'c1') "
                              "does not verify")


async def test_rows_appended_after_a_closing_checkpoint_are_named(
    pool: asyncpg.Pool, attacker: asyncpg.Connection,
) -> None:
    store = AuditStore(pool)
    rows = await checkpointed(pool)
    await rewrite(attacker, "s-1", [*rows, rows[4]])
    report = await verify_session(store, "s-1", SIGNER)
    assert report.problem == "row 7 (voicemail_left) was added after the closing checkpoint"


def test_compare_allows_rows_appended_after_an_ordinary_checkpoint() -> None:
    at = datetime(2026, 3, 2, tzinfo=UTC)
    rows = []
    prev = GENESIS
    for n in range(1, 4):
        own = event_hash(session_id="s", sequence=n, event_type="scheduled", occurred_at=at,
                         data={"n": n}, prev_hash=prev)
        rows.append(ChainRow("s", n, "scheduled", at, {"n": n}, prev, own))
        prev = own
    checkpoint = make_checkpoint(rows[:2], SIGNER, at)
    assert compare(rows, checkpoint) is None
    assert compare(rows[:2], checkpoint) is None
    assert compare(rows[:1], checkpoint) is not None


@pytest.fixture
def head_file(tmp_path: Path) -> Path:
    return tmp_path / "checkpoint-heads"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, service_database_url: str, head_file: Path,
            ) -> None:
    monkeypatch.setenv("MSR_CHECKPOINT_HEAD_FILE", str(head_file))
    for name in ("MSR_CONFIG_FILE", "MSR_ENCRYPTION_KEY_ID", "MSR_CHECKPOINT_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_CHECKPOINT_KEYS",
                       json.dumps({"c1": base64.b64encode(KEY).decode()}))
    monkeypatch.setenv("MSR_DATABASE_URL", service_database_url)


@pytest.mark.usefixtures("cli_env")
async def test_audit_verify_names_the_rewritten_session(
    pool: asyncpg.Pool, attacker: asyncpg.Connection, capsys: pytest.CaptureFixture[str],
    head_file: Path,
) -> None:
    store = AuditStore(pool)
    await record_trail(store, "s-a", close=True)
    assert await Checkpointer(pool, SIGNER, heads=FileHeadSink(head_file)).round() == 1
    rows = await store.chain_rows("s-a")
    await record_trail(store, "s-b", close=True)
    assert await asyncio.to_thread(starter.main, ["audit", "verify", "--all"]) == 0
    out = capsys.readouterr().out
    assert out == "verified 2 sessions: 2 intact, 0 broken\n"
    await rewrite(attacker, "s-a", [*rows[:2], *rows[3:]])
    assert await asyncio.to_thread(starter.main, ["audit", "verify", "--all"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("BROKEN s-a: checkpointed row 3 is missing")
    assert out.splitlines()[-1] == "verified 2 sessions: 1 intact, 1 broken"
    assert await asyncio.to_thread(starter.main, ["audit", "verify", "s-b"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(", not checkpointed yet")


# -- the forgeries of issue 24, as the database owner, against any number of rounds ----------

ROUNDS = 5


class Alarms:
    """Stands in for the supervisor's notice: what the checkpointer raised."""

    def __init__(self) -> None:
        self.raised: list[IntegrityFinding] = []

    async def __call__(self, finding: IntegrityFinding) -> None:
        self.raised.append(finding)


async def stays_broken(pool: asyncpg.Pool, head_file: Path, alarms: Alarms,
                       session_id: str = "s-1") -> list[str]:
    """Run checkpoint rounds (a fresh checkpointer each time: the worker restarting too) and
    verify after each; every verdict is BROKEN. Returns the problems named."""
    store = AuditStore(pool)
    problems = []
    for _ in range(ROUNDS):
        checkpointer = Checkpointer(pool, SIGNER, heads=FileHeadSink(head_file), alarm=alarms)
        await checkpointer.round()
        report = await verify_session(store, session_id, SIGNER)
        verdict = await run_verify(VerifyRequest(None), store, SIGNER, FileHeadSink(head_file))
        assert not verdict.ok, verdict.text
        problems.append(report.problem or verdict.text)
    return problems


async def two_checkpoints(pool: asyncpg.Pool, head_file: Path) -> list[ChainRow]:
    """A closed trail checkpointed twice: at row 3 while running, at row 6 when closed."""
    store = AuditStore(pool)
    for sequence in (1, 2, 3):
        assert (await store.record([event("s-1", sequence)])).new
    heads = FileHeadSink(head_file)
    assert await Checkpointer(pool, SIGNER, heads=heads).round() == 1
    for sequence in (4, 5):
        assert (await store.record([event("s-1", sequence)])).new
    closed = AuditEvent(session_id="s-1", sequence=6, event_type=AuditEventType.CLOSED,
                        occurred_at=START + timedelta(hours=1),
                        data={"outcome": "reached", "attempts": 1})
    assert (await store.record([closed], attendance=Attendance(
        client_ref="c-1", therapist_id="t-ana", start=START, outcome=Outcome.REACHED))).new
    assert await Checkpointer(pool, SIGNER, heads=heads).round() == 1
    assert [c.sequence for c in await store.checkpoints("s-1")] == [6, 3]
    verdict = await run_verify(VerifyRequest(None), store, SIGNER, heads)
    assert verdict.ok, verdict.text
    return await store.chain_rows("s-1")


async def test_a_forged_mark_safe_mid_trail_stays_broken(
    pool: asyncpg.Pool, owner: asyncpg.Connection, head_file: Path,  # noqa: F811
) -> None:
    """Issue 24: a "mark safe" inserted mid-trail with every later hash recomputed was
    signed by the next round and verified OK from then on."""
    rows = await two_checkpoints(pool, head_file)
    await owner_rewrite(owner, "s-1", [*rows[:4], mark_safe("s-1", rows[3]), *rows[4:]])
    store = AuditStore(pool)
    assert (await verify_session(store, "s-1")).ok  # the chain alone is fooled
    alarms = Alarms()
    problems = await stays_broken(pool, head_file, alarms)
    assert all(p.startswith("row 5 (clinician_decision_made) was inserted since its "
                            "checkpoint") for p in problems), problems
    assert [c.sequence for c in await store.checkpoints("s-1")] == [6, 3]  # nothing signed
    assert {(a.session_id, a.kind) for a in alarms.raised} == {("s-1", "trail_not_extending")}
    [(finding, _)] = await checkpoints.findings(pool)
    assert finding.problem.startswith("row 5 (clinician_decision_made) was inserted")


async def test_a_tail_replaced_by_a_longer_forged_tail_stays_broken(
    pool: asyncpg.Pool, owner: asyncpg.Connection, head_file: Path,  # noqa: F811
) -> None:
    """Issue 24: the tail cut and replaced by a longer one whose outcome is `marked_safe`."""
    rows = await two_checkpoints(pool, head_file)
    closed = ChainRow("s-1", 0, "closed", rows[-1].occurred_at,
                      {"outcome": "marked_safe", "attempts": 1}, None, None)
    forged_tail = [rows[3], mark_safe("s-1", rows[3]), rows[4], closed]
    await owner_rewrite(owner, "s-1", [*rows[:3], *forged_tail])
    await forge(owner, ("UPDATE attendance SET outcome = 'marked_safe'", ()))
    alarms = Alarms()
    problems = await stays_broken(pool, head_file, alarms)
    assert all(p.startswith("row 5 (clinician_decision_made) was inserted since its "
                            "checkpoint") for p in problems), problems
    assert {(a.session_id, a.kind) for a in alarms.raised} == {("s-1", "trail_not_extending")}
    assert len(await checkpoints.findings(pool)) == 1  # kept once


async def test_a_tail_cut_with_its_checkpoints_and_attendance_stays_broken(
    pool: asyncpg.Pool, owner: asyncpg.Connection, head_file: Path,  # noqa: F811
) -> None:
    """Issue 24: rows 4-6, the closing checkpoint and the attendance row deleted; the trail
    then verified against its remaining checkpoint, never noticed. The checkpoint log still
    names the closing checkpoint."""
    await two_checkpoints(pool, head_file)
    await forge(owner, ("DELETE FROM audit_events WHERE sequence > 3", ()),
                ("DELETE FROM audit_checkpoints WHERE sequence = 6", ()),
                ("DELETE FROM attendance", ()))
    alarms = Alarms()
    problems = await stays_broken(pool, head_file, alarms)
    assert all(p.startswith("the checkpoint at row 6 is missing: the checkpoint log names it")
               for p in problems), problems
    # The trail gained no rows, so it was never due: the sweep found it and raised the alarm.
    assert {(a.session_id, a.kind) for a in alarms.raised} == {("s-1", "trail_not_extending")}


async def test_a_tail_cut_with_its_checkpoints_and_their_log_entries_stays_broken(
    pool: asyncpg.Pool, owner: asyncpg.Connection, head_file: Path,  # noqa: F811
) -> None:
    """The same cut, and the log's last entry deleted too: the log is shorter than the head
    written outside PostgreSQL, and the checkpointer signs nothing more; then a forged
    shorter closing tail is added, and stays unsigned."""
    await two_checkpoints(pool, head_file)
    await forge(owner, ("DELETE FROM audit_events WHERE sequence > 3", ()),
                ("DELETE FROM audit_checkpoints WHERE sequence = 6", ()),
                ("DELETE FROM checkpoint_log WHERE sequence = 6", ()),
                ("DELETE FROM attendance", ()))
    store = AuditStore(pool)
    assert (await verify_session(store, "s-1", SIGNER)).ok  # the session alone is fooled
    alarms = Alarms()
    await stays_broken(pool, head_file, alarms)
    verdict = await run_verify(VerifyRequest(None), store, SIGNER, FileHeadSink(head_file))
    assert ("BROKEN checkpoint log: the checkpoint log was cut: it ends at entry 1, but the "
            "head written outside the database") in verdict.text
    assert {(a.session_id, a.kind) for a in alarms.raised} == {
        ("checkpoint-log", "checkpoint_log_broken")}
    # A forged closing tail after the cut: refused like everything else.
    forged = AuditEvent(session_id="s-1", sequence=4, event_type=AuditEventType.CLOSED,
                        occurred_at=START + timedelta(hours=1),
                        data={"outcome": "marked_safe", "attempts": 0})
    assert (await store.record([forged])).new
    await stays_broken(pool, head_file, alarms)
    assert [c.sequence for c in await store.checkpoints("s-1")] == [3]


async def test_a_cut_in_the_middle_of_the_log_is_named(
    pool: asyncpg.Pool, owner: asyncpg.Connection, head_file: Path,  # noqa: F811
) -> None:
    await two_checkpoints(pool, head_file)
    store = AuditStore(pool)
    await record_trail(store, "s-2", close=True)
    assert await Checkpointer(pool, SIGNER, heads=FileHeadSink(head_file)).round() == 1
    await forge(owner, ("DELETE FROM audit_events WHERE session_id = 's-1' AND sequence > 3",
                        ()),
                ("DELETE FROM audit_checkpoints WHERE session_id = 's-1' AND sequence = 6",
                 ()),
                ("DELETE FROM checkpoint_log WHERE position = 2", ()))
    verdict = await run_verify(VerifyRequest(None), store, SIGNER, FileHeadSink(head_file))
    assert "BROKEN checkpoint log: checkpoint log entries 2..2 are missing" in verdict.text


def _append_forged_head(head_file: Path) -> None:
    """A head naming entry 9, its signature copied from the real last head."""
    lines = head_file.read_text().splitlines()
    document = json.loads(lines[-1])
    document["position"] = 9
    head_file.write_text("\n".join([*lines, json.dumps(document)]) + "\n")


async def test_a_forged_head_line_is_named(pool: asyncpg.Pool, head_file: Path) -> None:
    await two_checkpoints(pool, head_file)
    await asyncio.to_thread(_append_forged_head, head_file)
    verdict = await run_verify(VerifyRequest(None), AuditStore(pool), SIGNER,
                               FileHeadSink(head_file))
    assert "outside head 3 (entry 9) is forged" in verdict.text


async def test_checkpoints_written_before_the_log_are_logged_once(
    pool: asyncpg.Pool, head_file: Path,
) -> None:
    store = AuditStore(pool)
    await record_trail(store, "s-1", close=True)
    assert await write(pool, make_checkpoint(await store.chain_rows("s-1"), SIGNER,
                                             datetime.now(UTC)))
    heads = FileHeadSink(head_file)
    assert await Checkpointer(pool, SIGNER, heads=heads).round() == 0
    assert [e.position for e in await checkpoints.log_entries_of(pool, "s-1")] == [1]
    assert await Checkpointer(pool, SIGNER, heads=heads).round() == 0
    assert len(await checkpoints.log_entries_of(pool, "s-1")) == 1
    assert (await run_verify(VerifyRequest(None), store, SIGNER, heads)).ok
    assert (await asyncio.to_thread(head_file.stat)).st_mode & 0o777 == 0o600


async def test_a_row_added_after_the_closing_checkpoint_with_an_old_time_is_swept(
    pool: asyncpg.Pool, owner: asyncpg.Connection, head_file: Path,  # noqa: F811
) -> None:
    """Backdated past the follower's window, so never due; the sweep still finds it."""
    rows = await two_checkpoints(pool, head_file)
    alarms = Alarms()
    running = Checkpointer(pool, SIGNER, heads=FileHeadSink(head_file), alarm=alarms)
    await running.round()  # a worker that has been following: past its first round
    prev = rows[-1].hash
    own = event_hash(session_id="s-1", sequence=7, event_type="clinician_decision_made",
                     occurred_at=rows[-1].occurred_at, data={"decision": "mark_safe"},
                     prev_hash=prev or "")
    await forge(owner, (
        "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at, data,"
        " prev_hash, hash, recorded_at) VALUES ('s-1', 7, 'clinician_decision_made', $1,"
        " '{\"decision\": \"mark_safe\"}'::jsonb, $2, $3, now() - interval '1 day')",
        (rows[-1].occurred_at, prev, own)))
    await running.round()  # not due: recorded "a day ago", before the follower's window
    assert alarms.raised == []
    for _ in range(4):  # the sweep comes round every fifth round
        await running.round()
    assert {(a.session_id, a.kind) for a in alarms.raised} == {("s-1", "trail_not_extending")}
    problems = await stays_broken(pool, head_file, alarms)
    assert all(p == "row 7 (clinician_decision_made) was added after the closing checkpoint"
               for p in problems), problems
