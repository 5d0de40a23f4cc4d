"""Size limits on what a scheduling system may send, checked before anything is parsed.

A booking is a few hundred bytes; the limits are generous for real input and small enough
that a runaway or hostile sender cannot make a process hold gigabytes.
"""

from __future__ import annotations

MAX_BOOKING_BYTES = 64 * 1024
"""One booking (a `--file` booking, one line of a day file, an HTTP body)."""
MAX_DAY_FILE_BYTES = 32 * 1024 * 1024
"""A day's schedule or an import file: some 50,000 bookings."""
MAX_REQUEST_BYTES = MAX_BOOKING_BYTES
"""Any HTTP request body."""


class TooLargeError(ValueError):
    """Input over its size limit; the message names what and the limit."""


def check_size(what: str, size: int, limit: int) -> None:
    """Refuse `what` of `size` bytes when it exceeds `limit`."""
    if size > limit:
        msg = f"{what}: {size:,} bytes is over the limit of {limit:,} bytes"
        raise TooLargeError(msg)
