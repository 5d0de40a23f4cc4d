"""Helpers first written for tests/test_end_to_end.py that other modules share.

Moved here (by homes-move.sh) so that no module imports a test module or
conftest: a test module can then change without breaking another."""

from __future__ import annotations

import asyncio
import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def scrape(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
    body = await reader.read()
    writer.close()
    return body.decode()

