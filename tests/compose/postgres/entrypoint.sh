#!/bin/sh
# The official image's start as compose/cloud.yaml relies on it: root reads the password
# file (a Compose secret, owned by another UID), then PostgreSQL runs as `postgres`; an empty
# data directory is initialised first, with password logins over TCP.
set -eu
if [ "$(id -u)" = 0 ]; then
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
        export POSTGRES_PASSWORD
        unset POSTGRES_PASSWORD_FILE
    fi
    install -d -o postgres -g postgres -m 0700 "$PGDATA"
    install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
user=${POSTGRES_USER:-postgres}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256
    rm -f "$pwfile"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    db=${POSTGRES_DB:-$user}
    if [ "$db" != postgres ]; then
        pg_ctl --wait --options="-c listen_addresses=''" start
        psql --username="$user" --dbname=postgres --set=ON_ERROR_STOP=1 \
            --command="CREATE DATABASE \"$db\""
        pg_ctl --wait --mode=fast stop
    fi
fi
unset POSTGRES_PASSWORD
exec "$@"
