"""HL7 v2 answers and MLLP framing, pure: what a sender is told and how frames are read.

MSA-3 cut at a word with the whole text in ERR, a NUL byte named by its field, UTF-8 or
the ISO 8859 that MSH-18 names, MSH-11 training and debugging, batches; the MLLP frame
reader (split, joined, resynchronised on 0x0B, oversized, a frame timeout) and the AR it
answers from a cut MSH.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from missed_session.intake import ack, hl7v2, mllp
from missed_session.intake.ack import AckCode
from missed_session.intake.commands import Refuse
from missed_session.intake.fields import IntakeDefaults
from tests.support import intake_samples as samples

DEFAULTS = IntakeDefaults(time_zone="America/Los_Angeles", country_code="1")
START = datetime(2030, 3, 4, 10, 0, tzinfo=timezone(timedelta(hours=-8)))
NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)

# -- ACK text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("short enough", "short enough"),
    ("word " * 30, ("word " * 15).strip() + " ..."),
    ("x" * 100, "x" * 76 + " ..."),
])
def test_msa_text_is_cut_at_a_word(text: str, expected: str) -> None:
    assert ack.short(text) == expected
    assert len(ack.short(text)) <= ack.MSA_TEXT_LIMIT


def test_an_aa_that_applied_nothing_carries_a_warning_err_in_full() -> None:
    header = hl7v2.translate(samples.siu("S12", "M1", "1", START, version="2.5"),
                             DEFAULTS).header
    long = "session 1: recorded, not applied: " + "because " * 20
    text = ack.build(header, AckCode.ACCEPT, long, control_id="A", now=NOW, severity="W")
    _, msa, err, _ = text.split("\r")
    assert msa.startswith("MSA|AA|M1|session 1: recorded, not applied:")
    assert err.split("|")[3].startswith("0^")
    assert err.split("|")[4] == "W"
    assert err.split("|")[8] == " ".join(long.split())


@pytest.mark.parametrize(("mangle", "where"), [
    (lambda t: t.replace("|M1|", "|M\x001|"), "MSH-10"),
    (lambda t: t.replace("SMITH^PAUL", "SMITH^PA\x00UL"), "PID-5"),
    (lambda t: t.replace("|MESA_OP|", "|MESA\x00OP|"), "MSH-3"),
    (lambda t: t.replace("SCH|", "SCH|\x00", 1), "SCH-1"),
])
def test_a_nul_byte_is_refused_naming_its_field(mangle: Any, where: str) -> None:
    translated = hl7v2.translate(mangle(samples.siu("S12", "M1", "1", START)), DEFAULTS)
    command = translated.incoming.command
    assert isinstance(command, Refuse)
    assert command.malformed
    assert command.reason.startswith(f"{where}: holds a NUL byte")
    assert translated.error_code == "102"
    assert "\x00" not in translated.incoming.key
    assert translated.header.control_id in {"M1", "M\x001".replace("\x00", "")}


def test_bytes_are_utf8_or_iso_8859_when_msh_18_says_so() -> None:
    text = samples.siu("S12", "M1", "1", START).replace("SMITH^PAUL", "SMITH^JOS\xc9")
    assert hl7v2.decode(text.encode()) == text
    refused = hl7v2.decode(text.encode("latin-1"))
    assert isinstance(refused, hl7v2.Translated)
    assert isinstance(refused.incoming.command, Refuse)
    assert "not valid UTF-8" in refused.incoming.command.reason
    named = text.replace("|P|2.3|||", "|P|2.3||||||8859/1|")
    assert hl7v2.decode(named.encode("latin-1")) == named


@pytest.mark.parametrize(("processing", "non_production"), [
    ("P", False), ("T", True), ("D", True), ("P^T", False), ("T^A", True)])
def test_msh_11_training_and_debugging_are_not_production(processing: str,
                                                          non_production: bool) -> None:
    text = samples.siu("S12", "M1", "1", START).replace("|P|2.3", f"|{processing}|2.3")
    assert hl7v2.translate(text, DEFAULTS).non_production is non_production


def test_a_batch_is_refused_with_its_first_control_id() -> None:
    message = samples.siu("S12", "M1", "1", START, ack="NE")
    translated = hl7v2.translate("FHS|^~\\&|X\rBHS|^~\\&|X\r" + message + "BTS|1\rFTS|1",
                                 DEFAULTS)
    assert isinstance(translated.incoming.command, Refuse)
    assert translated.incoming.command.reason.startswith("FHS: HL7 batches are not supported")
    assert translated.header.control_id == "M1"
    assert ack.wanted(translated.header, AckCode.REJECT)


# -- MLLP framing ---------------------------------------------------------------------------------


async def frames_of(*chunks: bytes, limit: int = 1_000, frame_timeout: float = 5.0,
                    eof: bool = True) -> list[mllp.Frame]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    frames = mllp.FrameReader(reader, limit, frame_timeout)
    found = []
    while True:
        frame = await frames.next()
        found.append(frame)
        goes_on = frame.kind is mllp.FrameKind.MESSAGE or frame.complete
        if not goes_on:
            return found


async def test_frames_split_joined_and_resynchronised() -> None:
    found = await frames_of(b"junk\x0bA\x1c", b"\x0d\x0bB\x1c\x0d\x0bC-abandoned",
                            b"\x0bD\x1c\x0d")
    assert [(f.kind.value, f.data, f.skipped) for f in found] == [
        ("message", b"A", 4), ("message", b"B", 0), ("message", b"D", 12),
        ("closed", b"", 0)]


async def test_an_oversized_frame_whole_or_endless() -> None:
    whole = await frames_of(b"\x0b" + b"x" * 1_500 + b"\x1c\x0d\x0bOK\x1c\x0d")
    assert [(f.kind.value, f.complete) for f in whole[:2]] == [("oversized", True),
                                                               ("message", False)]
    assert whole[1].data == b"OK"
    endless = await frames_of(b"\x0bMSH|" + b"x" * 1_500)
    assert (endless[0].kind, endless[0].complete) == (mllp.FrameKind.OVERSIZED, False)
    assert endless[0].data.startswith(b"MSH|")


async def test_a_frame_that_never_ends_times_out() -> None:
    found = await frames_of(b"\x0bMSH|partial", frame_timeout=0.2, eof=False)
    assert found[0].kind is mllp.FrameKind.TIMEOUT
    assert found[0].data == b"MSH|partial"


def test_a_refusal_answers_from_a_cut_msh_or_bare() -> None:
    answer = mllp.refusal(b"MSH|^~\\&|A|B|C|D|20300101||SIU^S12|X9|P|2.5\rSCH|", "too big")
    assert "MSA|AR|X9|too big" in answer
    assert mllp.refusal(b"garbage", "too big").split("\r")[1] == "MSA|AR||too big"
