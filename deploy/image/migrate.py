"""Apply one service's pending database migrations; then exit.

    python /opt/carebridge/bin/migrate.py intake|careplan|referral|gateway

The Kubernetes migration Jobs (`deploy/k8s/migrate/`) run this before a rollout, so the new
version's pods start on a schema that is already up to date and a failed migration stops the
release before any pod is replaced (deploy/README.md, "Upgrades").

The migrations are exactly those the service applies when it starts: the store's core
migrations plus the service's own (`ServiceRuntime.extra_migrations`, read from the app its
`create_app(settings)` builds, without starting it). On PostgreSQL they run under the store's
advisory lock, so a Job and a starting pod never migrate at the same time, and a second run
finds nothing to do. Settings come from the environment as for the service
(`INTAKE_DATABASE_URL`, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Sequence

from shared.settings import SETTINGS_BY_SERVICE
from shared.store import Store


async def migrate(service: str) -> list[tuple[str, int]]:
    """Apply `service`'s pending migrations; the (component, version) pairs applied."""
    settings = SETTINGS_BY_SERVICE[service]()
    app = importlib.import_module(f"services.{service}.app").create_app(settings)
    runtime = app.state.runtime
    store = await Store.open(settings.database_url, extra_migrations=runtime.extra_migrations)
    try:
        return list(store.applied_migrations)
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("service", choices=sorted(SETTINGS_BY_SERVICE))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    applied = asyncio.run(migrate(args.service))
    if applied:
        print(f"{args.service}: applied {', '.join(f'{c} v{v}' for c, v in applied)}")
    else:
        print(f"{args.service}: schema up to date, nothing to apply")
    return 0


if __name__ == "__main__":
    sys.exit(main())
