"""The MLLP listener: HL7 v2 over TCP, each message answered with its ACK.

Framing is `0x0B` message `0x1C 0x0D`. The reader always answers: several messages in one
read and a message split across reads come out whole; bytes outside a frame are skipped
(and counted), and a `0x0B` inside an unfinished frame starts a new frame (the sender gave
up on the first), so stray bytes never swallow the next message. A message larger than the
limit is answered AR with the reason (and when its end never came within the limit, the
connection is closed: what follows cannot be framed with certainty); so is one that does
not finish within the frame timeout, and the connection is closed.
An unforeseen failure while handling a message is answered AR "send it again", never
silence. Messages on one connection are answered in order, one at a time, as MLLP senders
expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from missed_session.intake import ack, hl7v2
from missed_session.intake.service import StandardsIntake

logger = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
READ_SIZE = 65_536
HEAD_BYTES = 4_096
"""How much of an oversized or unfinished message is kept to read its MSH for the AR."""
DEFAULT_FRAME_TIMEOUT = 30.0


class FrameKind(StrEnum):
    """What the reader found next on a connection."""

    MESSAGE = "message"
    OVERSIZED = "oversized"
    TIMEOUT = "timeout"
    CLOSED = "closed"


@dataclass(frozen=True)
class Frame:
    """One message (or why there is none), and how many stray bytes were skipped before."""

    kind: FrameKind
    data: bytes = b""
    """The message; for an oversized or unfinished one, its first bytes only."""
    skipped: int = 0
    complete: bool = False
    """An oversized frame that was read to its end: the connection can go on."""


class FrameReader:
    """Reads MLLP frames from a stream, resynchronising on every start block."""

    def __init__(self, reader: asyncio.StreamReader, limit: int,
                 frame_timeout: float = DEFAULT_FRAME_TIMEOUT) -> None:
        self._reader = reader
        self._limit = limit
        self._timeout = frame_timeout
        self._buffer = bytearray()

    async def next(self) -> Frame:
        """The next frame; waits as long as needed for one to begin, then `frame_timeout`."""
        skipped = 0
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            start = self._buffer.find(START_BLOCK)
            if start < 0:
                skipped += len(self._buffer)
                self._buffer.clear()
                deadline = None
            else:
                if start > 0:
                    skipped += start
                    del self._buffer[:start]
                if deadline is None:
                    deadline = loop.time() + self._timeout
                end = self._buffer.find(END_BLOCK, 1)
                restart = self._buffer.find(START_BLOCK, 1)
                if restart > 0 and (end < 0 or restart < end):
                    skipped += restart  # an abandoned frame: the sender started again
                    del self._buffer[:restart]
                    continue
                if end > 0:
                    message = bytes(self._buffer[1:end])
                    del self._buffer[:end + len(END_BLOCK)]
                    if len(message) > self._limit:  # whole, so the next frame is readable
                        return Frame(FrameKind.OVERSIZED, message[:HEAD_BYTES], skipped,
                                     complete=True)
                    return Frame(FrameKind.MESSAGE, message, skipped)
                if len(self._buffer) - 1 > self._limit:
                    return Frame(FrameKind.OVERSIZED, bytes(self._buffer[1:HEAD_BYTES]),
                                 skipped)
            chunk = await self._read(None if deadline is None else deadline - loop.time())
            if chunk is None:
                return Frame(FrameKind.TIMEOUT, bytes(self._buffer[1:HEAD_BYTES]), skipped)
            if not chunk:
                return Frame(FrameKind.CLOSED, b"", skipped + len(self._buffer))
            self._buffer.extend(chunk)

    async def _read(self, left: float | None) -> bytes | None:
        """Some bytes (b"" at end of stream), or None when the frame's time ran out."""
        if left is not None and left <= 0:
            return None
        try:
            async with asyncio.timeout(left):
                return await self._reader.read(READ_SIZE)
        except TimeoutError:
            return None


async def serve(intake: StandardsIntake, host: str, port: int,
                limit: int = 1_000_000,
                frame_timeout: float = DEFAULT_FRAME_TIMEOUT) -> asyncio.Server:
    """Start listening; the caller closes the returned server."""

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _session(intake, FrameReader(reader, limit, frame_timeout), writer, limit)

    return await asyncio.start_server(connected, host, port)


async def _session(intake: StandardsIntake, frames: FrameReader,
                   writer: asyncio.StreamWriter, limit: int) -> None:
    peer = writer.get_extra_info("peername")
    try:
        while True:
            try:
                frame = await frames.next()
            except ConnectionError:
                return
            if frame.skipped:
                logger.warning("MLLP: %d bytes outside a 0x0B...0x1C0D frame from %s skipped",
                               frame.skipped, peer)
            if frame.kind is FrameKind.CLOSED:
                return
            if frame.kind is not FrameKind.MESSAGE:
                reason = (f"the message is larger than {limit} bytes "
                          "(MSR_INTAKE_MAX_MESSAGE_BYTES); nothing done"
                          if frame.kind is FrameKind.OVERSIZED else
                          "the message did not end (0x1C 0x0D) within the frame timeout; "
                          "nothing done")
                logger.warning("MLLP: a message from %s refused (%s)", peer, frame.kind.value)
                await _write(writer, refusal(frame.data, reason))
                if frame.complete:
                    continue
                return  # what follows cannot be framed with certainty
            try:
                _, answer = await intake.hl7(frame.data)
            except Exception as error:  # an unforeseen failure still answers
                # The type only: a message may carry health data, and so may its errors.
                logger.error("MLLP: a message from %s failed (%s); answered AR", peer,
                             type(error).__name__)
                answer = refusal(frame.data, "the message could not be processed "
                                 f"({type(error).__name__}); send it again", "207")
            await _write(writer, answer)
    except ConnectionError:
        return
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def refusal(data: bytes, reason: str, code: str = "207") -> str:
    """An AR for a message this listener could not take, from whatever of its MSH is readable.

    Empty when the sender's MSH-15/16 declines error ACKs.
    """
    header = hl7v2.header_of(data.decode("utf-8", errors="replace"))
    if not ack.wanted(header, ack.AckCode.REJECT):
        return ""
    return ack.build(header, ack.AckCode.REJECT, reason, control_id=uuid.uuid4().hex[:20],
                     now=datetime.now(UTC), error_code=code)


async def _write(writer: asyncio.StreamWriter, answer: str) -> None:
    if not answer:
        return
    writer.write(START_BLOCK + answer.encode("utf-8") + END_BLOCK)
    await writer.drain()
