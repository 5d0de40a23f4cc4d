"""Running the API on uvicorn inside an event loop that other parts of a process share.

The socket is bound before uvicorn starts, so port 0 gives a free port whose address is
known at once (tests, the embedded stack). uvicorn's own signal handling is left out: the
process that embeds the server decides what SIGINT and SIGTERM stop; so is its logging
configuration (its records go through the process's own, see `log_setup`), and an error
that escapes the app never reaches uvicorn's error log (`errors.LastResort`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

from missed_session.api.errors import LastResort

SHUTDOWN_TIMEOUT_SECONDS = 10
"""In-flight requests get this long to finish when the server stops."""


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Leave signals to the embedding process (see the module docstring)."""
        yield


class ApiServer:
    """The API served on `host:port` until `stop`."""

    def __init__(self, api: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = socket.create_server((host, port), reuse_port=False)
        self._socket.setblocking(False)
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        # log_config=None: uvicorn installs no handlers of its own (its default writes
        # tracebacks to stderr); its records go through the process's structured logging
        # (log_setup), which keeps the type of an error and drops its traceback.
        config = uvicorn.Config(LastResort(api), log_level="warning", access_log=False,
                                log_config=None, server_header=False, lifespan="on",
                                timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_SECONDS)
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Start serving; returns the base URL once the server accepts connections."""
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                msg = "the HTTP API stopped while starting"
                raise RuntimeError(msg)
            await asyncio.sleep(0.02)
        return self.url

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, close the socket."""
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._socket.close()

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
