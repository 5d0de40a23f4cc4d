"""One-shot set-up steps of a deployment, run before any worker starts.

`python -m missed_session.provision migrate` brings the service's database schema up to
date; `python -m missed_session.provision search-attributes` registers the search
attributes sessions are filtered by (missed_session/temporal/search_attributes.py is the one list)
on the configured namespace. Both are idempotent, so a compose one-shot may run them on
every `up`. Workers migrate on start too; a separate step makes a failed migration stop
the deployment visibly instead of every worker restarting on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

import asyncpg

from missed_session.config import ConfigurationError, Settings, load_settings
from missed_session.store.database import database_url, migrate, owner_database_url
from missed_session.temporal import search_attributes
from missed_session.temporal.client import connect


async def migrate_database(settings: Settings) -> list[str]:
    """Apply the migrations the database lacks; the names applied.

    As the schema owner when one is configured (`database_owner_url`): the service's own
    role may not change the schema.
    """
    connection = await asyncpg.connect(owner_database_url(settings) or database_url(settings))
    try:
        return await migrate(connection)
    finally:
        await connection.close()


async def register_search_attributes(settings: Settings) -> list[str]:
    """Register the attributes the namespace lacks; the names it has afterwards."""
    client = await connect(settings)
    await search_attributes.register(client)
    return [key.name for key in search_attributes.ALL]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one step; exit 0 when it is done, 2 on a configuration error."""
    parser = argparse.ArgumentParser(prog="python -m missed_session.provision")
    parser.add_argument("step", choices=("migrate", "search-attributes"))
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(error, file=sys.stderr)
        return 2
    if args.step == "migrate":
        applied = asyncio.run(migrate_database(settings))
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
    else:
        names = asyncio.run(register_search_attributes(settings))
        print(f"search attributes registered on {settings.temporal_namespace}: "
              f"{', '.join(names)}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    code = main()
    if "search-attributes" not in sys.argv[1:]:
        sys.exit(code)  # no Temporal client: a normal exit (atexit stops an embedded server)
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without tearing the Temporal runtime down: at interpreter shutdown it can abort
    # ("PyGILState_Release", sdk-python issue 300) and turn a completed step into a failure.
    os._exit(code)
