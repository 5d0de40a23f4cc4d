"""The connection type every store function takes.

Its own module, below every other store module, so that none of them imports
`database` (migrations, URLs, pools) just to name a connection: that import ran in a
circle (`database` migrates through `roles` and `projections`, which both named
`database.Connection`) and was hidden behind function-local imports.
"""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection = asyncpg.Connection | PoolConnectionProxy
"""A plain connection or one borrowed from a pool: the store's functions take either."""
