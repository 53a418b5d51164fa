#!/usr/bin/env bash
# A throwaway PostgreSQL on loopback for the tests and benchmarks: installs the Debian package when missing,
# creates a cluster in DIR owned by the postgres user, starts it on PORT and prints its URL.
#   bash scripts/postgres.sh start DIR PORT      bash scripts/postgres.sh stop DIR
set -euo pipefail
action=${1:?usage: postgres.sh start DIR PORT | stop DIR}
dir=${2:?usage: postgres.sh start DIR PORT | stop DIR}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "$action" = stop ]; then
    [ -n "$bin" ] && as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    exit 0
fi
port=${3:?usage: postgres.sh start DIR PORT}
if [ -z "$bin" ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    else
        echo "postgresql is not installed and cannot be installed here" >&2
        exit 1
    fi
fi
mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
if [ ! -d "$dir/data" ]; then
    as_postgres "$bin/initdb" -D "$dir/data" -U radsight --auth=trust >/dev/null
fi
as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
echo "postgresql://radsight@127.0.0.1:$port/postgres"
