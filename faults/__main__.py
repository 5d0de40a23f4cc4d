"""`python -m faults --size smoke|full`: every fault scenario, one table, exit 1 on a miss."""

from __future__ import annotations

import asyncio

from faults.run import main

if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
