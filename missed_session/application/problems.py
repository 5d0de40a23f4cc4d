"""Turning validation failures into field paths and messages that never echo the input."""

from __future__ import annotations

from pydantic import ValidationError

from missed_session.application.results import Problem


def problems_of(error: ValidationError, *, prefix: tuple[str | int, ...] = ()) -> tuple[
        Problem, ...]:
    """Every error of `error` as a Problem; the input value is left out (it may be PII)."""
    return tuple(
        Problem((*prefix, *details["loc"]), details["msg"].removeprefix("Value error, "))
        for details in error.errors()
    )


def describe(error: ValidationError, *, subject: str = "booking") -> str:
    """The first error as `field.path: problem` (the line an operator reads)."""
    first = problems_of(error)[0]
    field = ".".join(str(part) for part in first.path) or subject
    return f"{field}: {first.message}"
