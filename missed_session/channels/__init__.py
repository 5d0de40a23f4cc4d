"""Channels to the outside world: each places calls and messages, idempotently by key."""
