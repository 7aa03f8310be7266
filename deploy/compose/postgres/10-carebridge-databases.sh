#!/bin/sh
# PostgreSQL init script (docker-compose.yml mounts it into /docker-entrypoint-initdb.d/): one
# database per CareBridge service, owned by the application role. The services never read each
# other's databases (DESIGN.md); each creates and migrates its own tables when it starts.
#
# The postgres image runs init scripts once, when it creates an empty data directory, with the
# server listening on its Unix socket only; the health check (TCP on 127.0.0.1) passes only once
# they have finished. The IF NOT EXISTS dance keeps a re-run harmless.
set -eu

for database in intake careplan referral gateway; do
    exists="$(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$database'")"
    if [ "$exists" = "1" ]; then
        echo "carebridge: database $database exists"
    else
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
            -c "CREATE DATABASE \"$database\" OWNER \"$POSTGRES_USER\""
        echo "carebridge: database $database created"
    fi
done
