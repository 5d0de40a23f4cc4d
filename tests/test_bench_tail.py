"""bench.tail's reading of a history: the tasks after the expiry, and what timed out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.history.v1 import (
    HistoryEvent,
    TimerFiredEventAttributes,
    WorkflowTaskScheduledEventAttributes,
    WorkflowTaskStartedEventAttributes,
    WorkflowTaskTimedOutEventAttributes,
)

from bench.tail import describe

EXPIRY = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(EXPIRY + timedelta(seconds=seconds))
    return stamp


def test_a_task_that_waited_out_the_sticky_queue_is_named() -> None:
    events = [
        HistoryEvent(event_time=_at(-10.0),
                     timer_fired_event_attributes=TimerFiredEventAttributes()),  # the start
        HistoryEvent(event_time=_at(0.4),
                     timer_fired_event_attributes=TimerFiredEventAttributes()),
        HistoryEvent(event_time=_at(0.4), workflow_task_scheduled_event_attributes=(
            WorkflowTaskScheduledEventAttributes())),
        HistoryEvent(event_time=_at(10.4), workflow_task_timed_out_event_attributes=(
            WorkflowTaskTimedOutEventAttributes())),
        HistoryEvent(event_time=_at(10.4), workflow_task_scheduled_event_attributes=(
            WorkflowTaskScheduledEventAttributes())),
        HistoryEvent(event_time=_at(18.0), workflow_task_started_event_attributes=(
            WorkflowTaskStartedEventAttributes())),
    ]
    assert describe(events, EXPIRY.timestamp()) == (
        "fired@0.4 scheduled@0.4 timed_out@10.4 scheduled@10.4 started@18.0 "
        "{'workflow_task_timed_out': 1}")


def test_a_history_without_trouble_says_so() -> None:
    events = [
        HistoryEvent(event_time=_at(0.1),
                     timer_fired_event_attributes=TimerFiredEventAttributes()),
        HistoryEvent(event_time=_at(0.1), workflow_task_scheduled_event_attributes=(
            WorkflowTaskScheduledEventAttributes())),
    ]
    assert describe(events, EXPIRY.timestamp()) == "fired@0.1 scheduled@0.1"
