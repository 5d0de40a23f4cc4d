"""Payload encryption: unit behaviour, and the raw history of a real session."""

from __future__ import annotations

import base64
from datetime import timedelta

import asyncpg
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.outreach import Sender
from missed_session.channels.base import InvalidContactError
from missed_session.channels.simulated import SimulatedPhone
from missed_session.codec.encryption import (
    CodecIntegrityError,
    CodecKeyError,
    EncryptionCodec,
    new_key,
    parse_key,
)
from missed_session.domain.models import CallResult, ClientResponse, ResponseChannel
from missed_session.temporal.client import PLAIN_CONVERTER
from tests.support.factories import booking, daytime
from worker import new_worker
from workflows.session import SessionWorkflow

KEY_A = parse_key("a", new_key())
KEY_B = parse_key("b", new_key())
NOTE = "Client said the bus broke down"


def payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


async def test_round_trip_hides_the_plaintext() -> None:
    codec = EncryptionCodec({"a": KEY_A}, "a")
    [sealed] = await codec.encode([payload('"Robin +14155550123"')])
    assert b"Robin" not in sealed.SerializeToString()
    assert sealed.metadata["encryption-key-id"] == b"a"
    assert await codec.decode([sealed]) == [payload('"Robin +14155550123"')]


async def test_rotated_keys_still_open_old_payloads() -> None:
    old = EncryptionCodec({"a": KEY_A}, "a")
    [sealed_with_a] = await old.encode([payload("1")])
    rotated = EncryptionCodec({"a": KEY_A, "b": KEY_B}, "b")
    [sealed_with_b] = await rotated.encode([payload("2")])
    assert sealed_with_b.metadata["encryption-key-id"] == b"b"
    assert await rotated.decode([sealed_with_a, sealed_with_b]) == [payload("1"), payload("2")]


async def test_unknown_key_and_tampering_are_refused() -> None:
    [sealed] = await EncryptionCodec({"b": KEY_B}, "b").encode([payload("x")])
    with pytest.raises(CodecKeyError, match="'b'"):
        await EncryptionCodec({"a": KEY_A}, "a").decode([sealed])
    flipped = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    tampered = Payload(metadata=sealed.metadata, data=flipped)
    with pytest.raises(CodecIntegrityError, match="payload 1 does not open with encryption key"):
        await EncryptionCodec({"b": KEY_B}, "b").decode([tampered])


def test_bad_keys_are_named() -> None:
    with pytest.raises(CodecKeyError, match=r"'k1'.*base64"):
        parse_key("k1", "not base64!")
    with pytest.raises(CodecKeyError, match=r"'k2'.*32 bytes"):
        parse_key("k2", base64.b64encode(b"short").decode())
    with pytest.raises(CodecKeyError, match="active"):
        EncryptionCodec({"a": KEY_A}, "b")


async def raw_history_of_a_reached_session(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> bytes:
    now = await env.get_current_time()
    session = booking(start=(now + timedelta(hours=1)).replace(microsecond=0).isoformat())
    sender = Sender("Alex", "+15555550100")
    async with new_worker(client, pool, task_queue=task_queue, sender=sender):
        handle = await client.start_workflow(
            SessionWorkflow.run, session, id=session.workflow_id, task_queue=task_queue
        )
        await env.sleep(session.start + timedelta(minutes=20) - await env.get_current_time())
        await handle.execute_update(SessionWorkflow.client_responded,
                                    ClientResponse(channel=ResponseChannel.CALL, note=NOTE))
        result = await handle.result()
    assert result.outcome.value == "reached"
    history = await handle.fetch_history()
    return history.to_json().encode() + b"".join(
        event.SerializeToString() for event in history.events
    )


SECRETS = (b"Robin", b"+14155550123", b"robin@example.org", b"+14155550999", NOTE.encode())


async def test_raw_history_holds_no_health_data(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    raw = await raw_history_of_a_reached_session(time_skipping_env, client, pool, task_queue)
    assert b"binary/encrypted" in raw
    for secret in SECRETS:
        assert secret not in raw, secret


async def test_the_raw_history_check_can_fail_without_the_codec(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    plain = Client(
        client.service_client, namespace=client.namespace, data_converter=PLAIN_CONVERTER
    )
    raw = await raw_history_of_a_reached_session(time_skipping_env, plain, pool, task_queue)
    assert b"Robin" in raw
    assert NOTE.encode() in raw


class RefusingPhone(SimulatedPhone):
    """A provider whose refusal quotes the number it refused, as real ones do."""

    async def call(self, key: str, session_id: str, to: str) -> CallResult:
        raise InvalidContactError(f"{to} is not in service")


async def test_raw_history_of_a_failed_activity_holds_no_health_data(
    time_skipping_env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    start = daytime(await time_skipping_env.get_current_time() + timedelta(hours=1))
    session = booking(start=start.isoformat(), protocol={"max_attempts": 1})
    phone = RefusingPhone(pool)
    sender = Sender("Alex", "+15555550100")
    async with new_worker(client, pool, task_queue=task_queue, sender=sender, phone=phone):
        handle = await client.start_workflow(
            SessionWorkflow.run, session, id=session.workflow_id, task_queue=task_queue
        )
        await handle.result()
    history = await handle.fetch_history()
    failed = [event for event in history.events
              if event.HasField("activity_task_failed_event_attributes")]
    assert failed, "the refused call must fail its activity"
    for event in failed:
        failure = event.activity_task_failed_event_attributes.failure
        assert failure.message == "Encoded failure"
        assert failure.stack_trace == ""
        assert failure.HasField("encoded_attributes")
    raw = history.to_json().encode() + b"".join(e.SerializeToString() for e in history.events)
    assert b"not in service" not in raw
    for secret in SECRETS:
        assert secret not in raw, secret
    # The failure still reads back, decoded, for a client holding the key.
    decoded = await client.data_converter.decode_failure(
        failed[0].activity_task_failed_event_attributes.failure
    )
    assert "not in service" in str(decoded)


# -- only key holders: the Temporal clients' and workers' codec ------------------------------


async def test_the_guard_refuses_what_is_not_sealed_with_a_known_key() -> None:
    from structlog.testing import capture_logs

    from missed_session.codec.encryption import REFUSED

    codec = EncryptionCodec({"a": KEY_A}, "a")
    guard = codec.guarding()
    [sealed] = await guard.encode([payload('{"note": "' + NOTE + '"}')])
    [foreign] = await EncryptionCodec({"a": KEY_B}, "a").encode([payload('"x"')])
    [unknown] = await EncryptionCodec({"z": KEY_B}, "z").encode([payload('"x"')])
    plain = payload('{"clinician_id": "t-x", "reason": "' + NOTE + '"}')
    null = Payload(metadata={"encoding": b"binary/null"})
    with capture_logs() as logs:
        opened = await guard.decode([sealed, plain, foreign, unknown, null])
    assert opened[0].data == ('{"note": "' + NOTE + '"}').encode()
    assert [p.metadata["encoding"] for p in opened[1:]] == [REFUSED] * 4
    assert all(p.data == b"" for p in opened[1:])
    assert [entry["reason"] for entry in logs] == [
        "not sealed", "does not open", "unknown key", "not sealed"]
    assert NOTE not in repr(logs)
    # The plain codec (the codec server's) is unchanged: plain payloads pass through.
    assert (await codec.decode([plain]))[0] == plain


async def test_the_guard_lets_the_servers_own_strings_through() -> None:
    guard = EncryptionCodec({"a": KEY_A}, "a").guarding()
    server = payload('"ACTIVITY_ID_NOT_STARTED"')
    assert await guard.decode([server]) == [server]


def test_no_handler_takes_a_bare_string() -> None:
    """Why the server's bare strings may pass: no input a Temporal client sends is one."""
    import inspect

    from pydantic import BaseModel
    from temporalio import workflow

    from workflows.notice import NoticeWorkflow

    for cls in (SessionWorkflow, NoticeWorkflow):
        definition = workflow._Definition.must_from_class(cls)
        handlers = [definition.run_fn, *(u.fn for u in definition.updates.values()),
                    *(s.fn for s in definition.signals.values()),
                    *(q.fn for q in definition.queries.values())]
        for handler in handlers:
            hints = inspect.get_annotations(handler, eval_str=True)
            for name, hint in hints.items():
                if name == "return":
                    continue
                assert isinstance(hint, type), (cls.__name__, handler.__name__, name)
                assert issubclass(hint, BaseModel), (cls.__name__, handler.__name__, name)
