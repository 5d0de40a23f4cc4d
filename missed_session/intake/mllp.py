"""The MLLP listener: HL7 v2 over TCP, each message answered with its ACK.

Framing is the `hl7` package's asyncio MLLP streams (0x0B message 0x1C 0x0D): several
messages in one read and a message split across reads come out as whole blocks. Messages
on one connection are answered in order, one at a time, as MLLP senders expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hl7.mllp import InvalidBlockError, start_hl7_server
from hl7.mllp.streams import HL7StreamReader, HL7StreamWriter

from missed_session.intake.service import StandardsIntake

logger = logging.getLogger(__name__)


async def serve(intake: StandardsIntake, host: str, port: int,
                limit: int = 1_000_000) -> asyncio.Server:
    """Start listening; the caller closes the returned server."""

    async def connected(reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        await _session(intake, reader, writer)

    server: asyncio.Server = await start_hl7_server(connected, host, port, limit=limit)
    return server


async def _session(intake: StandardsIntake, reader: HL7StreamReader,
                   writer: HL7StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    try:
        while True:
            try:
                block: bytes = await reader.readblock()
            except InvalidBlockError:
                logger.warning("MLLP: bytes outside a 0x0B...0x1C0D frame from %s skipped", peer)
                continue
            except ValueError:
                logger.warning("MLLP: a message from %s exceeded the size limit", peer)
                continue
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            try:
                _, ack = await intake.hl7(block.decode("utf-8", errors="replace"))
            except Exception as error:  # an unforeseen failure: no ACK; the sender resends
                # The type only: a message may carry health data, and so may its errors.
                logger.error("MLLP: a message from %s failed (%s); connection closed", peer,
                             type(error).__name__)
                return
            if ack:
                writer.writeblock(ack.encode("utf-8"))
                await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
