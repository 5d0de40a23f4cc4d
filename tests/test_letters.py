"""Letters after the calls (issue 27 item 3): the words, the PDF, the file, the step.

The words and the decisions are pure (property-tested); the PDF is read back with pypdf; the
step runs in the real session workflow on the time-skipping server with the real worker,
the client directory in the embedded PostgreSQL, and the conformance pack judges its trail.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import stat
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.outreach import Sender
from missed_session.channels.letter import render
from missed_session.domain import letters
from missed_session.domain.clients import (
    PostalAddress,
    consents_from_booking,
    record_from_booking,
)
from missed_session.domain.conformance import PACKS, Verdict, assess
from missed_session.domain.events import LetterPrepared
from missed_session.domain.letters import LetterKind, compose, letter_file, letters_due
from missed_session.domain.messages import REVEALING_WORDS, RevealingMessageError
from missed_session.domain.models import (
    ClientResponse,
    Outcome,
    ProtocolSettings,
    ResponseChannel,
    SessionBooking,
)
from missed_session.file_modes import write_owner_only
from missed_session.store.clients import ClientDirectory
from tests.support.factories import read_as
from tests.support.session_workflow import begin, book, inbox, run, sleep_until, trail, types
from worker import new_worker
from workflows.session import SessionWorkflow

SENDER = Sender("Alex", "+15555550100")
DAY = date(2026, 12, 7)
ADDRESS = PostalAddress(recipient="Robin Vale", lines=("12 Elm Street", "Apt 3"),
                        locality="Oakland", region="CA", postal_code="94607")
INSURER_LADDER = {"max_attempts": 2, "channels": ["call"],
                  "letters": ["first_class", "certified"], "letter_spacing_days": 7}
"""The insurer's ladder for a high-risk no-show: two calls, a first-class letter, a
certified one a week later."""


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


# -- the words (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(LetterKind))
def test_a_letter_with_an_address_greets_by_first_name_and_says_nothing_else(
    kind: LetterKind,
) -> None:
    letter = compose(kind, dated=DAY, first_name="Robin", address=ADDRESS,
                     sender_name=SENDER.name, callback_number=SENDER.callback_number)

    assert letter.greeting == "Dear Robin,"
    assert letter.address == ("Robin Vale", "12 Elm Street", "Apt 3", "Oakland, CA 94607")
    body = " ".join(letter.paragraphs)
    assert SENDER.callback_number in body
    assert ("certified mail" in body) is (kind is LetterKind.CERTIFIED)
    for word in REVEALING_WORDS:
        assert word not in " ".join((letter.greeting, body, letter.notice)).lower()


def test_without_a_postal_address_the_letter_names_nobody() -> None:
    letter = compose(LetterKind.FIRST_CLASS, dated=DAY, first_name="Robin", address=None,
                     sender_name=SENDER.name, callback_number=SENDER.callback_number)

    assert letter.address == ()
    assert letter.greeting == "Hello,"
    assert "Robin" not in " ".join(letter.paragraphs)


def test_what_the_font_cannot_print_is_left_out_not_mangled() -> None:
    far = ADDRESS.model_copy(update={"recipient": "Łukasz Vale"})
    letter = compose(LetterKind.FIRST_CLASS, dated=DAY, first_name="Łukasz", address=far,
                     sender_name=SENDER.name, callback_number=SENDER.callback_number)
    assert (letter.address, letter.greeting) == ((), "Hello,")
    named = compose(LetterKind.FIRST_CLASS, dated=DAY, first_name="Zoë", address=ADDRESS,
                    sender_name=SENDER.name, callback_number=SENDER.callback_number)
    assert named.greeting == "Dear Zoë,"


def test_a_sender_name_that_reveals_the_practice_is_refused() -> None:
    with pytest.raises(RevealingMessageError):
        compose(LetterKind.CERTIFIED, dated=DAY, first_name="Robin", address=ADDRESS,
                sender_name="Oakland Therapy Center", callback_number=SENDER.callback_number)


names = st.text(st.characters(codec="utf-8", categories=["L"]), min_size=1, max_size=20)


@given(first_name=names, recipient=names, with_address=st.booleans(),
       kind=st.sampled_from(list(LetterKind)))
def test_the_client_is_named_only_on_an_addressed_letter(
    first_name: str, recipient: str, with_address: bool, kind: LetterKind,
) -> None:
    address = ADDRESS.model_copy(update={"recipient": recipient}) if with_address else None
    try:
        letter = compose(kind, dated=DAY, first_name=first_name, address=address,
                         sender_name=SENDER.name, callback_number=SENDER.callback_number)
    except RevealingMessageError:
        assert any(word in f"dear {first_name.lower()}," for word in REVEALING_WORDS)
        return
    if letter.greeting != "Hello,":
        assert letter.address
        assert letter.greeting == f"Dear {first_name},"
    assert all(letters.printable(line) for line in letter.address)
    assert bool(letter.address) is (with_address and letters.printable(recipient))


@given(kinds=st.lists(st.sampled_from(list(LetterKind)), max_size=4),
       outcome=st.sampled_from(list(Outcome)))
def test_letters_follow_only_an_unreached_end(kinds: list[LetterKind], outcome: Outcome) -> None:
    due = letters_due(tuple(kinds), outcome)
    unreached = outcome in {Outcome.UNREACHABLE_ESCALATED, Outcome.UNREACHABLE_ESCALATION_BLOCKED}
    assert due == (tuple(kinds) if unreached else ())


def test_a_letter_file_stays_inside_the_letters_folder() -> None:
    assert str(letter_file("s-1", 2, LetterKind.CERTIFIED)) == "s-1/letter-2-certified.pdf"
    for bad in ("..", ".", "a/b"):
        with pytest.raises(ValueError, match="cannot name a folder"):
            letter_file(bad, 1, LetterKind.FIRST_CLASS)


def test_the_protocol_lists_no_letters_unless_it_says_so() -> None:
    assert ProtocolSettings().letters == ()
    ladder = ProtocolSettings.model_validate(INSURER_LADDER)
    assert ladder.letters == (LetterKind.FIRST_CLASS, LetterKind.CERTIFIED)


# -- the PDF and the file --------------------------------------------------------------------


def test_the_pdf_reads_back_and_the_same_letter_renders_the_same_bytes() -> None:
    letter = compose(LetterKind.CERTIFIED, dated=DAY, first_name="Robin", address=ADDRESS,
                     sender_name=SENDER.name, callback_number=SENDER.callback_number)
    pdf = render(letter)

    assert pdf.startswith(b"%PDF-")
    assert render(letter) == pdf
    text = text_of(pdf)
    assert "Dear Robin," in text
    assert "Oakland, CA 94607" in text
    assert SENDER.callback_number in text
    assert "7 December 2026" in text
    assert "Sent by certified mail." in text
    for word in REVEALING_WORDS:
        assert word not in text.lower()
    info = PdfReader(io.BytesIO(pdf)).metadata
    assert info is not None
    assert "Robin" not in str(dict(info))


def test_a_letter_file_is_its_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "letters" / "s-1" / "letter-1-first_class.pdf"
    write_owner_only(path, b"%PDF-1")
    write_owner_only(path, b"%PDF-2")  # a retried step replaces its own file

    assert path.read_bytes() == b"%PDF-2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]


# -- the step in the session workflow ---------------------------------------------------------


@pytest.fixture
def letters_folder(tmp_path: Path) -> Path:
    return tmp_path / "letters"


@pytest.fixture
async def worker(client: Client, pool: asyncpg.Pool, task_queue: str,
                 letters_folder: Path) -> AsyncIterator[Worker]:
    async with new_worker(client, pool, task_queue=task_queue, sender=SENDER,
                          letters_folder=letters_folder) as running:
        yield running


async def in_directory(pool: asyncpg.Pool, session: SessionBooking, *,
                       address: PostalAddress | None) -> None:
    """The client's entry as their booking makes it, with `address` on file."""
    record = record_from_booking(session.client, None)
    await ClientDirectory(pool).add(
        record.model_copy(update={"postal_address": address}), source="test",
        recorded_by="test",
        consents=consents_from_booking(session.client, at=session.start - timedelta(days=30),
                                       recorded_by="test"))


@pytest.mark.usefixtures("worker")
async def test_the_insurers_ladder_two_calls_then_a_first_class_and_a_certified_letter(
    client: Client, pool: asyncpg.Pool, task_queue: str,
    time_skipping_env: WorkflowEnvironment, letters_folder: Path,
) -> None:
    session = await book(time_skipping_env, risk_tier="high", protocol=INSURER_LADDER)
    await in_directory(pool, session, address=ADDRESS)

    result = await run(client, task_queue, session)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    events = await trail(pool, session.session_id)
    kinds = types(events)
    assert kinds.count("outreach_attempted") == 2
    assert kinds[-4:] == ["letter_prepared", "letter_prepared", "plan_created", "closed"]
    rows = [e for e in events if e.event_type == "letter_prepared"]
    first, second = (read_as(row, LetterPrepared) for row in rows)
    assert (first.number, first.kind, second.number, second.kind) == (
        1, LetterKind.FIRST_CLASS, 2, LetterKind.CERTIFIED)
    assert rows[1].occurred_at - rows[0].occurred_at >= timedelta(days=7)
    for prepared in (first, second):
        path = letters_folder / prepared.file
        pdf = path.read_bytes()
        assert hashlib.sha256(pdf).hexdigest() == prepared.digest
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert prepared.addressed
        assert "Dear Robin," in text_of(pdf)
        assert "12 Elm Street" in text_of(pdf)
        # The trail holds where and which, never the words or the address.
        row = next(e for e in rows if e.data["number"] == prepared.number)
        assert "Robin" not in str(row.data)
        assert "Elm" not in str(row.data)
    tasks = await inbox(pool, session.session_id)
    assert tasks[first.task]["kind"] == "task"
    assert "first class" in tasks[first.task]["title"]
    assert "by certified mail" in tasks[second.task]["title"]
    assert "confirm it was posted" in tasks[second.task]["title"]
    found = {f.rule: f.verdict for f in assess(PACKS["insurer-letters"], events)}
    assert found == {"two-calls": Verdict.MET, "first-class-letter": Verdict.MET,
                     "certified-letter": Verdict.MET}


@pytest.mark.usefixtures("worker")
async def test_without_a_postal_address_the_letter_is_unaddressed_and_the_task_says_so(
    client: Client, pool: asyncpg.Pool, task_queue: str,
    time_skipping_env: WorkflowEnvironment, letters_folder: Path,
) -> None:
    session = await book(time_skipping_env, protocol={**INSURER_LADDER,
                                                      "letters": ["first_class"]})

    result = await run(client, task_queue, session)

    assert result.outcome is Outcome.UNREACHABLE_ESCALATED
    events = await trail(pool, session.session_id)
    [row] = [e for e in events if e.event_type == "letter_prepared"]
    prepared = read_as(row, LetterPrepared)
    assert not prepared.addressed
    text = text_of((letters_folder / prepared.file).read_bytes())
    assert "Hello," in text
    assert "Robin" not in text
    tasks = await inbox(pool, session.session_id)
    assert "no postal address on file" in tasks[prepared.task]["title"]


@pytest.mark.usefixtures("worker")
async def test_the_client_getting_in_touch_between_letters_stops_them(
    client: Client, pool: asyncpg.Pool, task_queue: str,
    time_skipping_env: WorkflowEnvironment,
) -> None:
    session = await book(time_skipping_env, risk_tier="high", protocol=INSURER_LADDER)
    await in_directory(pool, session, address=ADDRESS)
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + timedelta(days=2))
    assert "letter_prepared" in types(await trail(pool, session.session_id))

    await handle.execute_update(SessionWorkflow.client_responded,
                                ClientResponse(channel=ResponseChannel.CALL,
                                               note="got the letter"))
    result = await handle.result()

    assert result.outcome is Outcome.REACHED
    kinds = types(await trail(pool, session.session_id))
    assert kinds.count("letter_prepared") == 1
    assert kinds[-3:] == ["client_responded", "plan_created", "closed"]


@pytest.mark.usefixtures("worker")
async def test_a_reached_client_gets_no_letter(
    client: Client, pool: asyncpg.Pool, task_queue: str,
    time_skipping_env: WorkflowEnvironment, letters_folder: Path,
) -> None:
    session = await book(time_skipping_env, protocol=INSURER_LADDER)
    handle = await begin(client, task_queue, session)
    await sleep_until(time_skipping_env, session.start + timedelta(minutes=20))
    await handle.execute_update(SessionWorkflow.client_responded,
                                ClientResponse(channel=ResponseChannel.TEXT))

    assert (await handle.result()).outcome is Outcome.REACHED
    assert "letter_prepared" not in types(await trail(pool, session.session_id))
    assert not await asyncio.to_thread(letters_folder.exists)
