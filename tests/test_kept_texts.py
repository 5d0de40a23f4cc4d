"""A client's inbound text is never lost because no worker (or no Temporal) takes it.

Against the Temporal dev server (sessions are found by number through visibility) and the
embedded PostgreSQL: a session is booked and brought to outreach by a real worker, the
worker is stopped, and the client's texts are posted to the real HTTP API, signed as Twilio
and the webhook channel sign them. They are answered 200 and kept (sealed); once a worker
runs again the deliverer hands them over, each exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import starter
from demo import temporal_cli
from missed_session.api.app import create_app
from missed_session.api.server import ApiServer
from missed_session.api.settings import ApiSettings
from missed_session.application import Application
from missed_session.application.kept_texts import (
    Attempt,
    KeptTexts,
    late_response_notice,
    unseal,
)
from missed_session.application.results import Result, ResultKind
from missed_session.application.text_deliverer import TextDeliverer, retry_after
from missed_session.domain.models import (
    AuditEvent,
    AuditEventType,
    Cancellation,
    NoticeKind,
    Priority,
    SessionBooking,
    workflow_id_for,
)
from missed_session.store.audit import AuditStore
from missed_session.store.kept_texts import (
    CLAIM_LEASE,
    RENEW_EVERY,
    InboundProvider,
    KeptText,
    KeptTextStore,
    Settlement,
)
from missed_session.temporal import search_attributes
from tests.support.factories import booking_data
from tests.support.inbound_texts import signed_webhook, twilio
from tests.support.kept_texts import SENDER, in_outreach, settings, until_event
from tests.support.servers import TEST_CONVERTER, TEST_KEYS
from worker import new_worker


@pytest.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=TEST_CONVERTER, dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=search_attributes.dev_server_flags(),
    )
    yield env
    await env.shutdown()


async def count(store: AuditStore, session_id: str, wanted: AuditEventType) -> int:
    return sum(event.event_type is wanted for event in await store.trail(session_id))


async def accepted_updates(client: Client, session_id: str) -> list[str]:
    """The ids of the text updates the session's history accepted, in order."""
    handle = client.get_workflow_handle(workflow_id_for(session_id))
    return [event.workflow_execution_update_accepted_event_attributes.accepted_request.meta
            .update_id async for event in handle.fetch_history_events()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
            and event.workflow_execution_update_accepted_event_attributes.accepted_request
            .input.name == "text_reply"]


def test_retries_wait_longer_each_time_up_to_a_minute() -> None:
    assert [retry_after(n).total_seconds() for n in (0, 1, 2, 3, 7, 50)] == \
        [1, 1, 2, 4, 60, 60]


async def test_texts_sent_while_no_worker_runs_are_kept_and_delivered_once(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
) -> None:
    phone = "+14155550161"
    client = dev_server.client
    store = KeptTextStore(pool)
    audit = AuditStore(pool)
    async with Application(settings(task_queue), client=client, pool=pool) as application:
        async with new_worker(client, pool, task_queue=task_queue, sender=SENDER):
            session_id = await in_outreach(application, pool, phone)
        # No worker polls the session's task queue now.
        app = create_app(application, ApiSettings(), deliver_kept_texts=False)
        async with ApiServer(app) as server, httpx.AsyncClient(timeout=30) as http:
            stop = await twilio(http, server.url, "STOP", "SMkept-stop", phone=phone)
            assert stop.status_code == 200, stop.text
            assert stop.headers["content-type"].startswith("application/xml")
            assert "<Message>" not in stop.text  # the carrier confirms a STOP
            reply = await twilio(http, server.url, "call me please", "SMkept-reply", phone=phone)
            assert reply.status_code == 200, reply.text
            again = await twilio(http, server.url, "call me please", "SMkept-reply", phone=phone)
            assert again.status_code == 200, again.text
            hook = await signed_webhook(http, server.url, {"from": phone, "body": "on my way",
                                                           "id": "wh-kept"})
            assert hook.status_code == 200, hook.text
            assert hook.json() == {"kind": "response", "outcome": "kept", "reply": None,
                                   "sessions": 0}

        rows = await store.rows(pending_only=True)
        assert [(r.message_id, r.channel, r.kind, r.sessions) for r in rows] == [
            ("SMkept-stop", "twilio", "opt_out", {session_id: "pending"}),
            ("SMkept-reply", "twilio", "response", {session_id: "pending"}),
            ("wh-kept", "webhook", "response", {session_id: "pending"}),
        ]
        raw = await pool.fetch("SELECT sealed FROM kept_texts")
        for row in raw:  # neither the number nor the text is readable in the table
            sealed = bytes(row["sealed"])
            for plain in (phone, phone.removeprefix("+"), "STOP", "call me", "on my way"):
                assert plain.encode() not in sealed
        kept = KeptTexts(application)
        assert await unseal(kept.codec, bytes(raw[0]["sealed"])) in {
            (phone, "STOP"), (phone, "call me please"), (phone, "on my way")}
        # Still no worker: a round tries the oldest and waits for the next try.
        deliverer = TextDeliverer(application)
        assert await deliverer.deliver_due() == {Settlement.PENDING: 1}
        [first] = [r for r in await store.rows(pending_only=True)
                   if r.message_id == "SMkept-stop"]
        assert (first.attempts, first.last_error) == (1, "NoAnswer")
        assert await count(audit, session_id, AuditEventType.OPTED_OUT) == 0

        async with new_worker(client, pool, task_queue=task_queue, sender=SENDER):
            delivered = 0
            for _ in range(30):  # a worker just started may not take the first try in time
                await deliverer.retry_now()
                delivered += (await deliverer.deliver_due()).get(Settlement.DELIVERED, 0)
                if not await store.rows(pending_only=True):
                    break
            assert delivered == 3
            await until_event(audit, session_id, AuditEventType.CLOSED)
        assert await store.rows(pending_only=True) == []
        settled = await store.rows(pending_only=False)
        assert {(r.message_id, r.outcome) for r in settled} == {
            ("SMkept-stop", "delivered"), ("SMkept-reply", "delivered"),
            ("wh-kept", "delivered")}
        assert await pool.fetchval(
            "SELECT count(*) FROM kept_texts WHERE sealed IS NOT NULL") == 0
        # Each text once: one accepted update per message id in the session's history
        # (though the route tried each, the redelivery came, and the deliverer tried twice).
        assert await accepted_updates(client, session_id) == [
            "text-SMkept-stop", "text-SMkept-reply", "text-wh-kept"]
        assert await count(audit, session_id, AuditEventType.OPTED_OUT) == 1
        assert await count(audit, session_id, AuditEventType.CLIENT_RESPONDED) == 1
        counts = await store.counts()
        assert (counts["pending"], counts["delivered"]) == (0, 3)


async def test_a_text_for_a_gone_session_or_one_the_session_refuses_is_recorded(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
) -> None:
    client = dev_server.client
    async with Application(settings(task_queue), client=client, pool=pool) as application, \
            new_worker(client, pool, task_queue=task_queue, sender=SENDER):
        open_session = await in_outreach(application, pool, "+14155550162")
        data = booking_data()
        closed: str = data["session_id"]
        assert (await application.schedule(data)).ok
        assert (await application.cancel(closed, Cancellation(reason="moved"))).ok
        await until_event(AuditStore(pool), closed, AuditEventType.CLOSED)
        kept = KeptTexts(application)
        waiting = Result(ResultKind.UNAVAILABLE, "no answer")
        await kept.keep(message_id="wh-gone", channel=InboundProvider.WEBHOOK, kind="response",
                        phone="+14155550162", body="hello?",
                        sessions={closed: waiting, "never-booked": waiting})
        # START is the client's consent to texts, which a session refuses to record.
        await kept.keep(message_id="wh-start", channel=InboundProvider.WEBHOOK, kind="response",
                        phone="+14155550162", body="START", sessions={open_session: waiting})
        assert await TextDeliverer(application).deliver_due() == {
            Settlement.LATE_RESPONSE: 1, Settlement.REFUSED: 1}
    rows = {row["message_id"]: row for row in await pool.fetch(
        "SELECT t.message_id, t.outcome AS text, d.session_id, d.outcome, d.reason"
        " FROM kept_texts t JOIN kept_text_deliveries d USING (message_id)"
        " WHERE d.session_id <> 'never-booked'")}
    # The closed session's therapist is given the text: never settled gone in silence.
    assert rows["wh-gone"]["text"] == "late_response"
    assert rows["wh-gone"]["reason"] == f"{closed}/late-text-wh-gone"
    notice = await pool.fetchrow("SELECT kind, priority, title FROM therapist_inbox"
                                 " WHERE key = $1", f"{closed}/late-text-wh-gone")
    assert notice is not None
    assert (notice["kind"], notice["priority"]) == ("alert", "routine")
    assert "hello?" not in notice["title"]
    assert rows["wh-start"]["text"] == "refused"
    assert "text_reply refused: an opt-in (START)" in rows["wh-start"]["reason"]
    never = await pool.fetchrow("SELECT outcome, reason FROM kept_text_deliveries"
                                " WHERE session_id = 'never-booked'")
    assert never is not None
    assert never["outcome"] == "session_gone"
    assert never["reason"].startswith("no session never-booked")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_text_kept_while_temporal_is_unreachable_is_delivered_after_a_restart(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str,
) -> None:
    phone = "+14155550163"
    client: Client = dev_server.client
    audit = AuditStore(pool)
    async with Application(settings(task_queue), client=client, pool=pool) as application, \
            new_worker(client, pool, task_queue=task_queue, sender=SENDER):
        session_id = await in_outreach(application, pool, phone)
    # An API process that cannot reach Temporal: the text is kept, sessions not looked up.
    nowhere = settings(task_queue, temporal_address=f"127.0.0.1:{closed_port()}")
    async with Application(nowhere, pool=pool) as cut_off, \
            ApiServer(create_app(cut_off, ApiSettings())) as server, \
            httpx.AsyncClient(timeout=60) as http:
        answer = await signed_webhook(http, server.url, {"from": phone, "body": "I'm ok",
                                                         "id": "wh-cut-off"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["outcome"] == "kept"
    row = await pool.fetchrow("SELECT sessions_known, state FROM kept_texts"
                              " WHERE message_id = 'wh-cut-off'")
    assert row is not None
    assert (row["sessions_known"], row["state"]) == (False, "pending")
    # A new API process (its lifespan runs the deliverer) and a worker: the text arrives.
    async with Application(settings(task_queue), client=client, pool=pool) as application, \
            new_worker(client, pool, task_queue=task_queue, sender=SENDER), \
            ApiServer(create_app(application, ApiSettings())):
        await until_event(audit, session_id, AuditEventType.CLOSED)
        for _ in range(100):
            state = await pool.fetchval("SELECT outcome FROM kept_texts"
                                        " WHERE message_id = 'wh-cut-off'")
            if state is not None:
                break
            await asyncio.sleep(0.1)
    assert state == "delivered"
    assert await accepted_updates(client, session_id) == ["text-wh-cut-off"]
    assert await count(audit, session_id, AuditEventType.CLIENT_RESPONDED) == 1


async def test_operators_see_the_backlog_with_starter_kept_texts(
    pool: asyncpg.Pool, service_database_url: str, task_queue: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("MSR_CONFIG_FILE", "MSR_ENCRYPTION_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MSR_DATABASE_URL", service_database_url)
    monkeypatch.setenv("MSR_ENCRYPTION_KEYS", json.dumps(TEST_KEYS))
    monkeypatch.setenv("MSR_DATA_DIR", str(tmp_path / "data"))
    async with Application(settings(task_queue), pool=pool) as application:
        kept = KeptTexts(application)
        await kept.keep(message_id="SMbacklog", channel=InboundProvider.TWILIO, kind="opt_out",
                        phone="+14155550164", body="STOP", sessions=None)
        await KeptTextStore(pool).postpone("SMbacklog", "NoAnswer", timedelta(hours=1))
    assert await asyncio.to_thread(starter.main, ["kept-texts", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["counts"]["pending"] == 1
    [text] = shown["texts"]
    assert (text["message_id"], text["kind"], text["attempts"], text["last_error"],
            text["sessions"]) == ("SMbacklog", "opt_out", 1, "NoAnswer", {})
    assert "+14155550164" not in json.dumps(shown)
    assert await asyncio.to_thread(starter.main, ["kept-texts", "--retry-now"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "1 kept text(s) due now"
    assert "kept texts: pending 1, delivered 0" in out
    assert "SMbacklog (twilio, opt_out)" in out
    assert "sessions: not looked up" in out
    assert await KeptTextStore(pool).seconds_to_next() == 0


def postgres_socket(url: str) -> str:
    """The Unix socket of the embedded server the URL names."""
    host = parse_qs(urlsplit(url).query)["host"][0]
    [socket_file] = [p for p in Path(host).glob(".s.PGSQL.*") if p.suffix != ".lock"]
    return str(socket_file)


class Outage:
    """A TCP port forwarding to PostgreSQL's socket that can be cut (connections dropped,
    new ones closed at once) and restored: a database outage the deliverer must wait out."""

    def __init__(self, socket_path: str) -> None:
        self._socket_path = socket_path
        self._writers: set[asyncio.StreamWriter] = set()
        self.down = False
        self.connections = 0
        """Connections forwarded so far."""
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        self.down = True
        for writer in list(self._writers):
            writer.close()

    def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_unix_connection(self._socket_path)
        self._writers |= {writer, up_writer}
        self.connections += 1

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def test_the_deliverer_waits_out_a_postgresql_outage(
    dev_server: WorkflowEnvironment, pool: asyncpg.Pool, service_database_url: str,
    task_queue: str,
) -> None:
    parts = urlsplit(service_database_url)
    outage = Outage(postgres_socket(service_database_url))
    port = await outage.start()
    forwarded = f"postgresql://msr_service@127.0.0.1:{port}{parts.path}"
    store = KeptTextStore(pool)
    async with Application(settings(task_queue), pool=pool) as keeping:
        await KeptTexts(keeping).keep(
            message_id="wh-outage", channel=InboundProvider.WEBHOOK, kind="response",
            phone="+14155550165", body="are you there?",
            sessions={"never-booked-2": Result(ResultKind.UNAVAILABLE, "no answer")})
    await store.postpone("wh-outage", "NoAnswer", timedelta(hours=1))
    try:
        with capture_logs() as logs:
            async with Application(settings(task_queue, database_url=forwarded),
                                   client=dev_server.client) as application, \
                    TextDeliverer(application).running() as deliverer:
                for _ in range(100):  # the deliverer has opened its pool and reads the table
                    if outage.connections:
                        break
                    await asyncio.sleep(0.05)
                outage.cut()
                deliverer.wake()
                for _ in range(200):
                    if any(log["event"] == "kept_text_deliverer_error" for log in logs):
                        break
                    await asyncio.sleep(0.05)
                assert await store.retry_now() == 1
                outage.down = False
                deliverer.wake()
                for _ in range(200):
                    if await pool.fetchval("SELECT outcome FROM kept_texts"
                                           " WHERE message_id = 'wh-outage'"):
                        break
                    await asyncio.sleep(0.05)
    finally:
        outage.close()
    errors = [log for log in logs if log["event"] == "kept_text_deliverer_error"]
    assert errors, logs
    assert set(errors[0]) <= {"event", "log_level", "error", "retry_in_seconds"}
    assert await pool.fetchval(
        "SELECT outcome FROM kept_texts WHERE message_id = 'wh-outage'") == "session_gone"


def test_a_late_text_is_urgent_when_the_session_escalated_while_it_was_kept() -> None:
    booking = SessionBooking.model_validate(booking_data())
    kept_at = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)
    text = KeptText("SMlate", InboundProvider.TWILIO, "response", b"", True, 3, kept_at)

    def escalation(at: datetime) -> AuditEvent:
        return AuditEvent(session_id=booking.session_id, sequence=9, occurred_at=at,
                          event_type=AuditEventType.ESCALATION_SENT)

    urgent = late_response_notice(booking, [escalation(kept_at + timedelta(minutes=2))], text)
    assert (urgent.kind, urgent.priority) == (NoticeKind.TASK, Priority.URGENT)
    assert "emergency contact" in urgent.title
    assert booking.client.ref in urgent.title
    assert booking.client.phone is not None
    assert booking.client.phone not in urgent.title
    before = late_response_notice(booking, [escalation(kept_at - timedelta(minutes=2))], text)
    assert (before.kind, before.priority) == (NoticeKind.ALERT, Priority.ROUTINE)
    assert late_response_notice(booking, [], text).key == urgent.key


async def test_a_claim_is_short_and_renewed_only_while_its_deliverer_works(
    pool: asyncpg.Pool, task_queue: str,
) -> None:
    """A dead deliverer's claim lapses within seconds; a live one's never does."""
    store = KeptTextStore(pool)
    await store.keep(message_id="wh-lease", channel=InboundProvider.WEBHOOK, kind="response",
                     sealed=b"x", sessions={"s-lease": (Settlement.PENDING, None)})
    claimed = await store.claim_due()
    assert claimed is not None
    assert claimed.message_id == "wh-lease"
    assert claimed.received_at is not None
    assert await store.claim_due() is None  # held: nobody else tries it now
    lease = await pool.fetchval("SELECT extract(epoch FROM next_attempt_at - now())::float8"
                                " FROM kept_texts WHERE message_id = 'wh-lease'")
    assert 0 < lease <= CLAIM_LEASE.total_seconds()

    class Slow(KeptTexts):
        async def _deliver(self, store: KeptTextStore, text: KeptText) -> Attempt:
            await asyncio.sleep(RENEW_EVERY.total_seconds() + 1.5)
            return Attempt(Settlement.PENDING, "NoAnswer")

    async with Application(settings(task_queue), pool=pool) as application:
        await Slow(application).deliver(claimed)
    renewed = await pool.fetchval("SELECT extract(epoch FROM next_attempt_at - now())::float8"
                                  " FROM kept_texts WHERE message_id = 'wh-lease'")
    assert renewed > CLAIM_LEASE.total_seconds() - 3  # renewed while it worked
