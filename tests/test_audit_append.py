"""How the store appends (`store.append.record`, the one path): the hash computed in the
database from a cut canonical encoding, no row lock (nor UPDATE privilege), a missing
parent, refused values, and batches, which chain and project as single appends do."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import uuid
from datetime import UTC, timedelta, timezone

import asyncpg
import pytest
from asyncpg.pool import PoolConnectionProxy

from missed_session.audit.verify import verify_session
from missed_session.domain.models import AuditEvent, AuditEventType, Outcome
from missed_session.store import append, projections
from missed_session.store.append import AuditConflictError, AuditParentMissingError, Recorded
from missed_session.store.attendance import Attendance
from missed_session.store.audit import AuditStore
from missed_session.store.chain import (
    GENESIS,
    canonical_event,
    canonical_parts,
    event_hash,
)
from missed_session.store.database import open_pool
from tests.support.audit_append import START, event, trail
from tests.support.audit_projections import ATTENDANCE, TASKS, snapshot

OTHER_HASH = hashlib.sha256(b"some parent").hexdigest()


async def ok(store: AuditStore, session_id: str) -> bool:
    report = await verify_session(store, session_id)
    assert report.problem is None, report.problem
    return report.ok


async def count(pool: asyncpg.Pool, session_id: str | None = None) -> int:
    if session_id is None:
        return int(await pool.fetchval("SELECT count(*) FROM audit_events"))
    return int(await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE session_id = $1", session_id))


# -- the canonical encoding, cut around the previous hash ------------------------------------


@pytest.mark.parametrize("data", [
    {},
    {"attempt": 1, "channel": "call", "result": "no_answer"},
    {"note": "Zoë à l'hôpital — 東京 ✓ 😀", "late": False, "none": None},
    {"quote": 'say "hi" \\ bye\n\ttab', "big": 10**30, "negative": -1},
    # A key of the same name inside the data must not be mistaken for the chain's own.
    {"prev_hash": "", "z": "\"prev_hash\":\"\""},
    {"prev_hash": GENESIS},
])
@pytest.mark.parametrize("session_id", ["s-1", "séance-été", 'odd "id" \\'])
def test_prefix_prev_suffix_is_the_canonical_encoding(
    data: dict[str, str | int | bool | None], session_id: str
) -> None:
    fields = {"session_id": session_id, "sequence": 7, "event_type": "outreach_attempted",
              "occurred_at": START.astimezone(timezone(timedelta(hours=-5))), "data": data}
    encoding = canonical_parts(**fields)  # type: ignore[arg-type]
    assert json.loads(encoding.data) == data
    for prev_hash in (GENESIS, OTHER_HASH):
        whole = encoding.prefix + prev_hash.encode() + encoding.suffix
        assert whole == canonical_event(**fields, prev_hash=prev_hash)  # type: ignore[arg-type]
        assert encoding.hash(prev_hash) == event_hash(
            **fields, prev_hash=prev_hash)  # type: ignore[arg-type]
        # The definition, spelt out: sorted keys, no whitespace, UTF-8, UTC to the microsecond.
        assert whole == json.dumps(
            {"v": 1, "session_id": session_id, "sequence": 7, "event_type": "outreach_attempted",
             "occurred_at": START.isoformat(timespec="microseconds"), "data": data,
             "prev_hash": prev_hash},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
        ).encode()
        assert hashlib.sha256(whole).hexdigest() == event_hash(
            **fields, prev_hash=prev_hash)  # type: ignore[arg-type]


ALPHABET = ["a", "Z", "0", " ", '"', "\\", "/", "\n", "\t", "\x00", "\x1f", "\x7f", "é",
            "\u2028", "東", "😀", "\ufeff"]


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(8)))


def random_value(rng: random.Random) -> str | int | bool | None:
    return rng.choice([
        random_text(rng), rng.randrange(-10**20, 10**20), rng.choice([True, False]), None,
    ])


def test_the_parts_match_the_definition_for_random_events() -> None:
    rng = random.Random(20260302)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    for _ in range(2_000):
        fields = {
            "session_id": random_text(rng), "sequence": rng.randrange(1, 10**6),
            "event_type": rng.choice(list(AuditEventType)).value,
            "occurred_at": (START + timedelta(microseconds=rng.randrange(10**12))).astimezone(
                rng.choice(zones)),
            "data": {random_text(rng): random_value(rng) for _ in range(rng.randrange(6))},
        }
        encoding = canonical_parts(**fields)  # type: ignore[arg-type]
        prev_hash = rng.choice([GENESIS, OTHER_HASH])
        assert encoding.prefix + prev_hash.encode() + encoding.suffix == canonical_event(
            **fields, prev_hash=prev_hash)  # type: ignore[arg-type]
        assert encoding.hash(prev_hash) == event_hash(
            **fields, prev_hash=prev_hash)  # type: ignore[arg-type]


async def test_the_database_computes_the_hash_python_computes(pool: asyncpg.Pool) -> None:
    """The same bytes through PostgreSQL's sha256(), non-ASCII included."""
    data = {"note": "Zoë — 東京 😀", "quote": 'a "b" \\ c'}
    encoding = canonical_parts(session_id="s-é", sequence=2, event_type="scheduled",
                               occurred_at=START, data=data)
    computed = await pool.fetchval(
        "SELECT encode(sha256($1::bytea || convert_to($2::text, 'UTF8') || $3::bytea), 'hex')",
        encoding.prefix, OTHER_HASH, encoding.suffix,
    )
    assert computed == event_hash(session_id="s-é", sequence=2, event_type="scheduled",
                                  occurred_at=START, data=data, prev_hash=OTHER_HASH)


# -- the single append ------------------------------------------------------------------------


async def test_locking_a_row_is_not_refused_by_the_append_only_trigger(
    pool: asyncpg.Pool, owner_database_url: str,
) -> None:
    """As the owner, who may lock rows (the service's role may not: it has no UPDATE)."""
    store = AuditStore(pool)
    assert (await store.record([event("s-1", 1)])).new
    connection = await asyncpg.connect(owner_database_url)
    try:
        async with connection.transaction():
            for lock in ("FOR UPDATE", "FOR NO KEY UPDATE", "FOR SHARE", "FOR KEY SHARE"):
                assert await connection.fetchval(
                    f"SELECT hash FROM audit_events WHERE session_id = 's-1' {lock}"
                ) is not None
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await connection.execute("UPDATE audit_events SET data = data")
    finally:
        await connection.close()


async def test_appending_needs_no_update_privilege_on_the_trail(
    pool: asyncpg.Pool, database_url: str,
) -> None:
    """The append takes no row lock, so a role that may only read and insert can append."""
    role = f"msr_appender_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE ROLE "{role}" NOLOGIN')
    try:
        await admin.execute(f'GRANT SELECT, INSERT ON audit_events TO "{role}"')
        await admin.execute(f'GRANT SELECT, INSERT, UPDATE ON projection_attendance,'
                           f' projection_open_tasks TO "{role}"')

        async def as_appender(connection: PoolConnectionProxy) -> None:
            await connection.execute(f'SET ROLE "{role}"')

        limited = await asyncpg.create_pool(database_url, min_size=1, max_size=2,
                                            setup=as_appender)
        try:
            store = AuditStore(limited)
            for n in (1, 2, 3):
                assert (await store.record([event("s-1", n)])).new
            assert not (await store.record([event("s-1", 3)])).new  # a retry
            assert len((await store.record(trail("s-2", 4))).new) == 4
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await limited.execute("UPDATE audit_events SET data = data")
        finally:
            await limited.close()
        assert await ok(AuditStore(pool), "s-1")
        assert await ok(AuditStore(pool), "s-2")
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


async def test_a_connection_comes_back_to_the_pool_without_a_transaction(
    service_database_url: str,
) -> None:
    """The service's pool skips asyncpg's full reset; an open transaction is still undone."""
    service_pool = await open_pool(service_database_url, min_size=1, max_size=1)
    try:
        async with service_pool.acquire() as connection:
            await connection.execute("BEGIN")
            await connection.execute("INSERT INTO attendance (session_id, client_ref,"
                                     " therapist_id, start_at, outcome, closed_at) VALUES"
                                     " ('left-open', 'c', 't', now(), 'attended', now())")
        async with service_pool.acquire() as connection:
            assert not connection.is_in_transaction()
            assert await connection.fetchval(
                "SELECT count(*) FROM attendance WHERE session_id = 'left-open'") == 0
    finally:
        await service_pool.close()


async def test_an_event_before_its_parent_is_refused_until_the_parent_is_there(
    pool: asyncpg.Pool,
) -> None:
    store = AuditStore(pool)
    with pytest.raises(AuditParentMissingError, match=r"s-1#3 .*s-1#2 is not recorded"):
        await store.record([event("s-1", 3)])
    assert (await store.record([event("s-1", 1)])).new
    with pytest.raises(AuditParentMissingError, match="s-1#3"):
        await store.record([event("s-1", 3)])
    assert await count(pool) == 1
    # Not a conflict: the activity retries it, and it goes through once the parent is in.
    assert not issubclass(AuditParentMissingError, AuditConflictError)
    assert (await store.record([event("s-1", 2)])).new
    assert (await store.record([event("s-1", 3)])).new
    assert await ok(store, "s-1")


async def test_a_retry_is_compared_exactly_as_the_hash_sees_it(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    assert (await store.record([event("s-1", 1, late=True)])).new
    # The same instant in another zone, and the same data in another order: the same event.
    again = event("s-1", 1, late=True).model_copy(
        update={"occurred_at": (START + timedelta(minutes=1)).astimezone(
            timezone(timedelta(hours=2)))})
    assert not (await store.record([again])).new
    # 1 == True in Python, but not in the trail: another event, which supersedes the row.
    other = await store.record([event("s-1", 1, late=1)])
    assert [item.sequence for item in other.new] == [3]
    assert (await store.recorded("s-1", 1)) == event("s-1", 1, late=True)


async def test_a_retried_workflow_task_finds_its_first_write_and_keeps_its_time(
    pool: asyncpg.Pool,
) -> None:
    # A workflow task wrote #1 and #2, then its worker died; the task runs again later, with
    # a later workflow.now(), and builds the same events at later times.
    store = AuditStore(pool)
    first = [event("s-1", 1), event("s-1", 2, late=True)]
    for item in first:
        assert (await store.record([item])).new
    for item in first:
        later = item.model_copy(update={"occurred_at": item.occurred_at + timedelta(seconds=7)})
        assert not (await store.record([later])).new
        assert await store.recorded("s-1", item.sequence) == item  # the first write stands
    assert await count(pool) == 2
    assert await ok(store, "s-1")
    # Another branch at the same place is not a retry: the row is kept and superseded.
    other = await store.record([event("s-1", 2, late=False)])
    assert [item.sequence for item in other.new] == [4]
    marker = await store.recorded("s-1", 3)
    assert marker is not None
    assert marker.event_type is AuditEventType.TRAIL_SUPERSEDED


async def test_an_append_asked_for_the_expiry_reads_it_in_its_own_statement(
    pool: asyncpg.Pool,
) -> None:
    # The first-outreach metric's start (issue 28 item 2), without a read of the trail: the
    # trail's first `grace_period_expired`, as the whole-trail read found it.
    store = AuditStore(pool)
    expired = event("s-1", 2, AuditEventType.GRACE_PERIOD_EXPIRED, grace_period_minutes=15)
    await store.record([event("s-1", 1, AuditEventType.SCHEDULED), expired])
    step = event("s-1", 3, AuditEventType.OUTREACH_ATTEMPTED, attempt=1, channel="call")
    statements: list[str] = []
    async with pool.acquire() as connection:
        connection.add_query_logger(lambda query: statements.append(query.query))
        recorded = await append.record(connection, [step], expiry=True)
    assert recorded.new == (step,)
    assert recorded.expired_at == expired.occurred_at
    assert len(statements) == 1  # the append itself, nothing after it
    # A retry, and a batch placed after rows it supersedes, say it too; unasked, nothing.
    assert (await store.record([step], expiry=True)).expired_at == expired.occurred_at
    other = step.model_copy(update={"data": {"attempt": 1, "channel": "text"}})
    placed = await store.record([other], expiry=True)
    assert [item.sequence for item in placed.new] == [5]
    assert placed.expired_at == expired.occurred_at
    assert (await store.record([event("s-1", 6)])).expired_at is None
    # A trail without an expiry has none to tell.
    assert (await store.record([event("s-2", 1)], expiry=True)).expired_at is None


@pytest.mark.parametrize("value", [0.5, 1e20, 2.0, float("nan"), [1], {"a": 1}])
async def test_values_that_may_not_read_back_the_same_are_refused(
    pool: asyncpg.Pool, value: object
) -> None:
    store = AuditStore(pool)
    # Past the model's own validation, as a caller building events by hand could.
    odd = event("s-1", 1, note="fine").model_copy(update={"data": {"note": "x", "ratio": value}})
    with pytest.raises(ValueError, match=r"s-1#1: data\['ratio'\] is a "):
        await store.record([odd])
    assert await count(pool) == 0


async def test_a_retry_does_not_fold_the_event_into_the_projections_again(
    pool: asyncpg.Pool,
) -> None:
    store = AuditStore(pool)
    events = trail("s-1", 3)
    later = event("s-1", 4, AuditEventType.RESCHEDULED,
                  start=(START + timedelta(days=30)).isoformat())
    for item in [*events, later]:
        assert (await store.record([item])).new
    before = await snapshot(pool)
    assert not (await store.record([events[2]])).new  # the earlier reschedule, retried
    assert await snapshot(pool) == before
    assert before[0][0][3] == START + timedelta(days=30)


# -- batches -----------------------------------------------------------------------------------


def new_count(recorded: Recorded) -> int:
    return len(recorded.new)


async def test_a_batch_chains_like_single_appends(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    one, two = trail("s-1", 8), trail("s-2", 6)
    for item in one[:2]:
        assert (await store.record([item])).new
    assert new_count(await store.record(two)) == 6
    # A batch that starts with events already there (a retry) writes only the rest.
    assert new_count(await store.record(one[:6])) == 4
    assert (await store.record([one[6]])).new
    assert new_count(await store.record(one[7:])) == 1
    assert await ok(store, "s-1")
    assert await ok(store, "s-2")
    assert await store.trail("s-1") == one
    assert await store.trail("s-2") == two

    # Hashes are the ones a single append writes: the same events one by one, elsewhere.
    for item in one:
        assert (await store.record([item.model_copy(update={"session_id": "s-single"})])).new
    for batched, single in zip(await store.chain_rows("s-1"),
                               await store.chain_rows("s-single"), strict=True):
        assert batched.hash == event_hash(
            session_id="s-1", sequence=single.sequence, event_type=single.event_type,
            occurred_at=single.occurred_at, data=single.data, prev_hash=batched.prev_hash or "")


async def test_a_retried_batch_writes_nothing(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    batches = [trail("s-1", 5), trail("s-2", 5)]
    for batch in batches:
        assert new_count(await store.record(batch)) == 5
    rows = await pool.fetch("SELECT * FROM audit_events ORDER BY session_id, sequence")
    projected = await snapshot(pool)
    for batch in batches:
        again = await store.record(batch)
        assert (again.events, again.new) == (tuple(batch), ())
        assert new_count(await store.record(batch[:3])) == 0
    assert await pool.fetch("SELECT * FROM audit_events ORDER BY session_id, sequence") == rows
    assert await snapshot(pool) == projected


async def test_a_batch_needs_its_parent(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    events = trail("s-1", 5)
    with pytest.raises(AuditParentMissingError, match=r"s-1#4 .*s-1#3 is not recorded"):
        await store.record(events[3:])
    assert await count(pool) == 0
    assert new_count(await store.record(events[:3])) == 3
    assert new_count(await store.record(events[3:])) == 2  # parent recorded earlier: fine
    assert await ok(store, "s-1")


async def test_batches_project_like_a_rebuild(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    for n in range(5):
        await store.record(trail(f"s-{n}", 6))
    closing = event("s-0", 7, AuditEventType.CLOSED, outcome="reached", attempts=1)
    assert (await store.record([closing], attendance=Attendance(
        client_ref="c-1", therapist_id="t-ana", start=START, outcome=Outcome.REACHED))).new
    incremental = await snapshot(pool)
    assert len(incremental[0]) == 5
    assert len(incremental[1]) == 10
    await store.rebuild_projections()
    assert await snapshot(pool) == incremental
    row = await pool.fetchrow(ATTENDANCE.replace("ORDER BY", "WHERE session_id = 's-0' ORDER BY"))
    assert row is not None
    assert (row["start_at"], row["outcome"]) == (START + timedelta(days=6), "reached")
    assert {row["therapist_id"] for row in await pool.fetch(TASKS)} == {"t-ana"}


async def test_a_batch_projects_like_single_appends(pool: asyncpg.Pool) -> None:
    """A session's events in one batch, and one by one, side by side."""
    store = AuditStore(pool)
    for n in range(4):
        batch = trail(f"b-{n}", 7)
        await store.record(batch)
        for item in batch:
            assert (await store.record([item.model_copy(
                update={"session_id": item.session_id.replace("b-", "s-")})])).new
    attendance, tasks = await snapshot(pool)

    def side(rows: list[tuple[object, ...]], prefix: str) -> list[str]:
        return sorted(repr(row).replace(prefix, "?-") for row in rows
                      if prefix in str(row[0]) + str(row[1]))

    assert side(attendance, "b-") == side(attendance, "s-")
    assert side(tasks, "b-") == side(tasks, "s-")
    assert len(side(tasks, "b-")) == 8


async def _insert_elsewhere(connection: asyncpg.Connection, item: AuditEvent) -> None:
    """Row 1 as another writer would insert it (correctly hashed), in its own transaction."""
    await connection.execute(
        "INSERT INTO audit_events (session_id, sequence, event_type, occurred_at, data,"
        " prev_hash, hash) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)",
        item.session_id, item.sequence, item.event_type.value, item.occurred_at,
        json.dumps(item.data), GENESIS,
        event_hash(session_id=item.session_id, sequence=item.sequence,
                   event_type=item.event_type.value, occurred_at=item.occurred_at,
                   data=item.data, prev_hash=GENESIS),
    )


@pytest.mark.parametrize("same", [True, False])
async def test_a_batch_racing_another_writer_of_a_first_row(
    pool: asyncpg.Pool, database_url: str, same: bool
) -> None:
    """Row 1 has no parent: a writer can commit it while the batch waits on the primary key.
    The same row is the batch's own; another version is superseded, the batch after it."""
    store = AuditStore(pool)
    batch = trail("s-1", 3)
    theirs = batch[0] if same else batch[0].model_copy(update={"data": {"client_ref": "c-9"}})
    other = await asyncpg.connect(database_url)
    try:
        transaction = other.transaction()
        await transaction.start()
        await _insert_elsewhere(other, theirs)
        ours = asyncio.create_task(store.record(batch))
        await asyncio.sleep(0.3)
        assert not ours.done()  # waiting on the primary key
        await transaction.commit()
        recorded = await asyncio.wait_for(ours, 5)
        if same:
            assert new_count(recorded) == 2
        else:
            assert [item.sequence for item in recorded.events] == [3, 4, 5]
            assert await count(pool, "s-1") == 5
        assert await ok(store, "s-1")
    finally:
        await other.close()


async def test_a_task_named_twice_is_created_once(pool: asyncpg.Pool) -> None:
    store = AuditStore(pool)
    first = trail("s-1", 1)
    plan = event("s-1", 2, AuditEventType.PLAN_CREATED, tasks="safety_check,safety_check")
    assert new_count(await store.record([*first, plan])) == 2
    assert (await store.record([plan.model_copy(update={"session_id": "s-2", "sequence": 1})])).new
    assert [row["key"] for row in await pool.fetch(TASKS)] == [
        "s-1/task/safety_check", "s-2/task/safety_check"]


# -- the projections of a batch: net effect against the ops one by one ------------------------


def random_projecting_trail(rng: random.Random, session_id: str) -> list[AuditEvent]:
    """Events that change the projections, in any order (a `scheduled` late, or twice...)."""
    kinds = [AuditEventType.SCHEDULED, AuditEventType.RESCHEDULED, AuditEventType.CLOSED,
             AuditEventType.ESCALATION_BLOCKED, AuditEventType.PLAN_CREATED,
             AuditEventType.VOICEMAIL_LEFT]
    events = []
    for sequence in range(1, rng.randrange(2, 9)):
        kind = rng.choice(kinds)
        at = START + timedelta(hours=rng.randrange(1000))
        data: dict[str, str | int | bool | None] = {}
        if kind is AuditEventType.SCHEDULED:
            data = {"client_ref": rng.choice(["c-1", "c-2"]),
                    "therapist_id": rng.choice(["t-ana", "t-bo"]), "start": at.isoformat()}
        elif kind is AuditEventType.RESCHEDULED:
            data = {"start": at.isoformat()}
        elif kind is AuditEventType.CLOSED:
            data = {"outcome": rng.choice(["reached", "attended", ""])}
        elif kind is AuditEventType.ESCALATION_BLOCKED:
            data = rng.choice([{}, {"task": f"{session_id}/blocked-{rng.randrange(2)}"}])
        elif kind is AuditEventType.PLAN_CREATED:
            data = {"tasks": ",".join(rng.choice(["safety_check", "call_back", ""])
                                      for _ in range(rng.randrange(4)))}
        events.append(AuditEvent(session_id=session_id, sequence=sequence, event_type=kind,
                                 occurred_at=at, data=data))
    return events


def one_by_one(events: list[AuditEvent]) -> tuple[set[tuple[object, ...]], ...]:
    """The projections the module's rules give, the ops applied in order (the reference)."""
    attendance: dict[str, list[object]] = {}
    tasks: dict[str, tuple[object, ...]] = {}
    for event in events:  # noqa: F402
        for op in projections.ops(event):
            row = attendance.get(op.session_id)
            if op.action == "attendance" and row is None:
                attendance[op.session_id] = [op.session_id, op.client_ref, op.therapist_id,
                                             op.at, None, None]
            elif op.action == "start" and row is not None:
                row[3] = op.at
            elif op.action == "close" and row is not None:
                row[4:6] = [op.outcome, op.at]
            elif op.action == "task" and op.key not in tasks:
                tasks[op.key or ""] = (op.key, op.session_id, row[2] if row else "", op.kind,
                                       op.priority, op.at)
    return {tuple(row) for row in attendance.values()}, set(tasks.values())


async def projected(pool: asyncpg.Pool, prefix: str) -> tuple[set[tuple[object, ...]], ...]:
    attendance, tasks = await snapshot(pool)
    return ({row for row in attendance if str(row[0]).startswith(prefix)},
            {row for row in tasks if str(row[1]).startswith(prefix)})


async def test_batches_project_as_the_ops_one_by_one(pool: asyncpg.Pool) -> None:
    """Random trails: single appends, batches that start their sessions and batches that
    continue them, against the reference."""
    store = AuditStore(pool)
    rng = random.Random(7)
    trails = {f"{group}-{n}": random_projecting_trail(rng, f"{group}-{n}")
              for group in ("single", "fresh", "cont") for n in range(40)}
    everything = [event for trail in trails.values() for event in trail]
    for event in everything:  # noqa: F402
        if event.session_id.startswith("single"):
            assert (await store.record([event])).new
    for session_id, each in trails.items():
        if session_id.startswith("fresh"):
            assert new_count(await store.record(each)) == len(each)
    continued = [event for event in everything if event.session_id.startswith("cont")]
    cut = {session_id: rng.randrange(1, len(trail) + 1) for session_id, trail in trails.items()}
    for event in continued:
        if event.sequence <= cut[event.session_id]:
            assert (await store.record([event])).new
    for session_id, each in trails.items():
        if session_id.startswith("cont"):
            assert new_count(await store.record(each)) == len(each) - cut[session_id]
    for group in ("single", "fresh", "cont"):
        expected = one_by_one([event for event in everything
                               if event.session_id.startswith(group)])
        assert await projected(pool, group) == expected, group
    incremental = await snapshot(pool)
    await store.rebuild_projections()
    assert await snapshot(pool) == incremental
