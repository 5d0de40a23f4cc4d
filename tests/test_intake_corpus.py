"""Real HL7 v2 SIU messages written by others, each through the real MLLP listener.

Every file under tests/data/hl7/ is a message as published by its authors (a converter's
sample data, a library's test fixtures, an EHR integration's specs, a vendor export), with
`# source:` (repository, commit, path), `# licence:` and `# expect:` header lines. The
message's segments are stored one per line and sent CR-separated, framed as MLLP, to the
listener of a running stack (worker, Temporal, PostgreSQL); the ACK must carry the expected
code and words. Nothing in a message is changed for the test.

`# expect: AA|AE|AR [ERR code] | words the answer must hold`
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.intake_stack import Stack, framed, running_stack

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


def load(path: Path) -> Sample:
    headers: dict[str, str] = {}
    segments: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# ") and not segments:
            key, _, value = line[2:].partition(": ")
            headers[key] = value
        elif line:
            segments.append(line)
    expected, _, words = headers["expect"].partition(" | ")
    code, _, error = expected.partition(" ")
    return Sample(path.name, "\r".join(segments) + "\r", headers["source"],
                  headers["licence"], code, error,
                  tuple(word for word in words.split(" | ") if word))


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
