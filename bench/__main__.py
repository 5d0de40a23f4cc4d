"""`python -m bench --size smoke|full`: every scenario, one table, one JSON file."""

from __future__ import annotations

import asyncio

from bench.run import main

if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
