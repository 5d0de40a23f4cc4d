"""Benchmarks of the service side by side with bare Temporal and raw asyncpg (issue 6)."""
