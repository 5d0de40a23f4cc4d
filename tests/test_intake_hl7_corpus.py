"""Real HL7 v2 SIU messages written by others, each through the real MLLP listener.

Every file under tests/data/hl7/ is a message as published by its authors (a converter's
sample data, a library's test fixtures, an EHR integration's specs, a vendor export), with
`# source:` (repository, commit, path), `# licence:` and `# expect:` header lines. The
message's segments are stored one per line and sent CR-separated, framed as MLLP, to the
listener of a running stack (worker, Temporal, PostgreSQL); the ACK must carry the expected
code and words. Nothing in a message is changed for the test.

`# expect: AA|AE|AR [ERR code] | words the answer must hold`

Most published samples are dated years ago, so a booking among them is refused for its
past start. To show that their shapes (SCH-11 or TQ1 timing, PID-13 repetitions, AIP, PV1
or SCH-16 therapists, 2.3 to 2.8) are read, a booking sample also has
`# rebased: <expected answer>`: the same message with only its times moved (every whole
timestamp component shifted by one delta, so the start is tomorrow at 10:00; MSH-7 one
minute ago) and its appointment ids suffixed per test run (the Temporal server outlives a
test, and a session id must be new).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.intake_stack import Stack, framed, running_stack

CORPUS = Path(__file__).parent / "data" / "hl7"


@dataclass(frozen=True)
class Sample:
    """One corpus file."""

    name: str
    message: str
    source: str
    licence: str
    code: str
    error: str
    words: tuple[str, ...]
    rebased: Expected | None = None


@dataclass(frozen=True)
class Expected:
    """An expected answer: its code, its ERR code and words it must hold."""

    code: str
    error: str
    words: tuple[str, ...]


def expected(text: str) -> Expected:
    answer, _, words = text.partition(" | ")
    code, _, error = answer.partition(" ")
    return Expected(code, error, tuple(word for word in words.split(" | ") if word))


def load(path: Path) -> Sample:
    headers: dict[str, str] = {}
    segments: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ") and not segments:
            key, _, value = line[2:].partition(": ")
            headers[key] = value
        elif line:
            segments.append(line)
    answer = expected(headers["expect"])
    return Sample(path.name, "\r".join(segments) + "\r", headers["source"],
                  headers["licence"], answer.code, answer.error, answer.words,
                  expected(headers["rebased"]) if "rebased" in headers else None)


DTM = re.compile(r"(?<=[|^&~])(\d{12}(?:\d{2})?)(\.\d{1,4})?([+-]\d{4})?(?=[|^&~\r]|$)")
"""A whole timestamp component (to the minute or second, optional fraction and offset)."""
PRACTICE_ZONE = ZoneInfo("America/Los_Angeles")
"""The zone the test stack reads times without an offset in."""


def rebased(message: str, token: str) -> str:
    """The message with its times moved so its start is tomorrow 10:00, its ids made new."""
    segments = message.split("\r")
    fields = {segment[:3]: segment.split("|") for segment in segments if segment}
    raw = ""
    if "TQ1" in fields and len(fields["TQ1"]) > 7:
        raw = fields["TQ1"][7].split("^")[0]
    if not raw:
        raw = fields["SCH"][11].split("^")[3]
    match = DTM.fullmatch(raw) or DTM.search("|" + raw)
    assert match is not None, raw
    start = _instant(match)
    target = datetime.now(PRACTICE_ZONE).replace(hour=10, minute=0, second=0,
                                                 microsecond=0) + timedelta(days=1)
    delta = target - start

    def shift(found: re.Match[str]) -> str:
        moved = _instant(found) + delta
        digits = moved.strftime("%Y%m%d%H%M%S")[:len(found.group(1))]
        return digits + (found.group(2) or "") + (
            moved.strftime("%z") if found.group(3) else "")

    out = []
    for original in segments:
        segment = original
        if segment.startswith("SCH"):
            parts = segment.split("|")
            for index in (1, 2):
                if len(parts) > index and parts[index].split("^")[0]:
                    first, *rest = parts[index].split("^")
                    parts[index] = "^".join([f"{first}x{token}", *rest])
            segment = "|".join(parts)
        segment = DTM.sub(shift, segment)
        if segment.startswith("MSH"):
            parts = segment.split("|")
            parts[6] = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y%m%d%H%M%S+0000")
            segment = "|".join(parts)
        out.append(segment)
    return "\r".join(out)


def _instant(found: re.Match[str]) -> datetime:
    d = found.group(1).ljust(14, "0")
    parts = (int(d[0:4]), int(d[4:6]), int(d[6:8]), int(d[8:10]), int(d[10:12]),
             int(d[12:14]))
    offset = found.group(3)
    if offset is None:
        return datetime(*parts, tzinfo=PRACTICE_ZONE)
    sign = 1 if offset[0] == "+" else -1
    return datetime(*parts, tzinfo=UTC) - sign * timedelta(hours=int(offset[1:3]),
                                                           minutes=int(offset[3:5]))


SAMPLES = [load(path) for path in sorted(CORPUS.glob("*.hl7"))]


@pytest.fixture
async def stack(time_skipping_env: WorkflowEnvironment, pool: asyncpg.Pool,
                task_queue: str) -> AsyncIterator[Stack]:
    async with running_stack(time_skipping_env, pool, task_queue) as running:
        yield running


def test_every_corpus_file_names_its_source_licence_and_answer() -> None:
    assert len(SAMPLES) >= 25
    for sample in SAMPLES:
        assert sample.source.startswith("https://github.com/"), sample.name
        assert sample.licence, sample.name
        assert sample.code in {"AA", "AE", "AR"}, sample.name


@pytest.mark.parametrize("sample", SAMPLES, ids=[sample.name for sample in SAMPLES])
async def test_a_real_message_gets_its_expected_answer(stack: Stack, sample: Sample) -> None:
    [ack] = await stack.mllp(framed(sample.message))
    segments = {segment[:3]: segment.split("|") for segment in ack.split("\r") if segment}
    msa = segments["MSA"]
    assert msa[1] == sample.code, ack
    control_id = next(line for line in sample.message.split("\r")
                      if line.startswith("MSH")).split("|")[9]
    assert msa[2] == control_id, ack
    if sample.code != "AA":
        err = "|".join(segments["ERR"])
        assert f"{sample.error}&" in err or f"|{sample.error}^" in err, ack
    elif any("recorded" in words for words in sample.words):
        assert "ERR" in segments, ack  # an AA that applied nothing says so in full
    for words in sample.words:
        assert words in ack, ack


REBASED = [sample for sample in SAMPLES if sample.rebased is not None]


@pytest.mark.parametrize("sample", REBASED, ids=[sample.name for sample in REBASED])
async def test_a_real_booking_moved_to_tomorrow_gets_its_expected_answer(
        stack: Stack, sample: Sample) -> None:
    assert sample.rebased is not None
    message = rebased(sample.message, uuid.uuid4().hex[:6])
    [ack] = await stack.mllp(framed(message))
    msa = next(s for s in ack.split("\r") if s.startswith("MSA")).split("|")
    assert msa[1] == sample.rebased.code, ack
    for words in sample.rebased.words:
        assert words in ack, ack
    sch = next(s for s in message.split("\r") if s.startswith("SCH")).split("|")
    session = sch[2].split("^")[0] or sch[1].split("^")[0]
    assert await stack.exists(session) is (sample.rebased.code == "AA")
