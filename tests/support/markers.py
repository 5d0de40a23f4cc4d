"""Which tests need servers or a browser, found from what they use, not from a list.

`pytest -m "not server and not browser"` is the inner loop: pure tests that need neither
PostgreSQL, a Temporal server nor Chromium (docs/development.md). A test is marked `server`
when it or any fixture it uses (item.fixturenames is already the whole closure) calls
something that starts a server, and `browser` likewise for Chromium; `e2e` tests are
`server` tests too. Classifying by the code the fixtures run rather than by fixture names
means a new fixture that starts a server is marked without anyone updating a list.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable
from typing import Any

import pytest

SERVER_NAMES = frozenset({
    "start_test_server", "start_dev_server",  # tests/support/servers.py's
    "start_local", "start_time_skipping",  # Temporal's servers
    "embedded", "get_server", "postgres_server_url", "StoppablePostgres",  # PostgreSQL
    "STACK_PROCESS",  # tests/test_worker_lifecycle.py's child process running the stack
    "running_stack", "temporal_cli",  # the dev stack (dev server, worker, PostgreSQL)
})
"""Names whose use, in a test or a fixture, means a server starts."""
BROWSER_NAMES = frozenset({"CHROMIUM", "async_playwright", "chromium"})
"""Names whose use means Chromium starts."""


def names_used(function: Callable[..., Any]) -> frozenset[str]:
    """Global and attribute names a function's code (nested functions included) refers to."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    todo: list[types.CodeType] = [code] if code is not None else []
    found: set[str] = set()
    while todo:
        current = todo.pop()
        found.update(current.co_names)
        found.update(current.co_varnames)  # a fixture asking for postgres_server_url
        todo.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return frozenset(found)


def functions_of(item: pytest.Item) -> Iterable[Callable[..., Any]]:
    """The test function and every fixture function it depends on."""
    function = getattr(item, "function", None)
    if function is not None:
        yield function
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return
    for definitions in info.name2fixturedefs.values():
        for definition in definitions:
            yield definition.func


def mark(items: Iterable[pytest.Item]) -> None:
    """Add `server` and `browser` to the tests that need them."""
    for item in items:
        used = frozenset().union(*(names_used(f) for f in functions_of(item)))
        used |= frozenset(getattr(item, "fixturenames", ()))
        if used & SERVER_NAMES or item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.server)
        if used & BROWSER_NAMES:
            item.add_marker(pytest.mark.browser)
