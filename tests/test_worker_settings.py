"""MSR_MAX_CACHED_WORKFLOWS: the worker's sticky cache, from the settings to the Worker."""

from __future__ import annotations

import os
from datetime import timedelta

import asyncpg
import pytest
from temporalio.client import Client

from activities.outreach import Sender
from missed_session.config import (
    DEFAULT_MAX_CACHED_WORKFLOWS,
    DEFAULT_STICKY_SECONDS,
    ConfigurationError,
    load_settings,
)
from worker import new_worker


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MSR_* variable from the developer's shell may leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("MSR_"):
            monkeypatch.delenv(name)


def test_the_default_cache_holds_a_burst_of_a_thousand_sessions() -> None:
    assert load_settings().max_cached_workflows == DEFAULT_MAX_CACHED_WORKFLOWS == 1_000


def test_the_cache_size_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSR_MAX_CACHED_WORKFLOWS", "600")
    assert load_settings().max_cached_workflows == 600


def test_zero_turns_the_cache_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSR_MAX_CACHED_WORKFLOWS", "0")
    assert load_settings().max_cached_workflows == 0


def test_a_negative_cache_size_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSR_MAX_CACHED_WORKFLOWS", "-1")
    with pytest.raises(ConfigurationError, match="max_cached_workflows"):
        load_settings()


async def test_new_worker_passes_the_cache_size_to_the_worker(
    client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    sender = Sender("Alex at the front desk", "+15555550100")
    default = new_worker(client, pool, task_queue=task_queue, sender=sender)
    assert default.config()["max_cached_workflows"] == DEFAULT_MAX_CACHED_WORKFLOWS
    small = new_worker(client, pool, task_queue=f"{task_queue}-small", sender=sender,
                       max_cached_workflows=250)
    assert small.config()["max_cached_workflows"] == 250


def test_the_sticky_wait_outlasts_a_burst_by_default() -> None:
    """Longer than the SDK's 10 s: a burst's queued tasks must not time out to a second round."""
    assert load_settings().sticky_seconds == DEFAULT_STICKY_SECONDS == 30.0


def test_the_sticky_wait_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSR_STICKY_SECONDS", "12.5")
    assert load_settings().sticky_seconds == 12.5


@pytest.mark.parametrize("value", ["0", "-3", "601", "soon"])
def test_a_sticky_wait_out_of_range_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str,
) -> None:
    monkeypatch.setenv("MSR_STICKY_SECONDS", value)
    with pytest.raises(ConfigurationError, match="sticky_seconds"):
        load_settings()


async def test_new_worker_passes_the_sticky_wait_to_the_worker(
    client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    sender = Sender("Alex at the front desk", "+15555550100")
    default = new_worker(client, pool, task_queue=task_queue, sender=sender)
    assert default.config()["sticky_queue_schedule_to_start_timeout"] == timedelta(seconds=30)
    short = new_worker(client, pool, task_queue=f"{task_queue}-short", sender=sender,
                       sticky_seconds=12)
    assert short.config()["sticky_queue_schedule_to_start_timeout"] == timedelta(seconds=12)
