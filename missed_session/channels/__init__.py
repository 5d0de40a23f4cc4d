"""Providers that carry the protocol's channels to people, idempotently by key."""
