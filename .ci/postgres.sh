#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests of shared studies (crates/ferkit-cli/tests/study.rs):
#   url=$(bash .ci/postgres.sh start DIR)   # initdb into DIR/data, start on 127.0.0.1, print its URL
#   bash .ci/postgres.sh stop DIR
# DIR must be a new empty folder. Uses Debian's PostgreSQL (postgresql package, any version under
# /usr/lib/postgresql). PostgreSQL refuses to run as root, so as root the server runs as the
# postgres user that Debian's package makes. Port: FERKIT_PG_PORT, default 54329.
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?a folder for the server}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)" >&2; exit 1; }
port=${FERKIT_PG_PORT:-54329}
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# The caller's folder may be closed to the postgres user (a root-only temporary checkout); every
# path below is absolute.
cd /
case "$cmd" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_server "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=50" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_server "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
