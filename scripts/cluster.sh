# Throwaway PostgreSQL 15 clusters for the demo and the tests: run as the postgres user (the
# server refuses root), listening only on a Unix socket in a temporary directory.
# Source this file; then: cluster_start DIR [postgresql.conf lines...]; cluster_psql DIR ...;
# cluster_stop DIR.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=${PG_PORT:-54329}

as_postgres() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cluster_start() {
  local dir=$1; shift
  mkdir -p "$dir"
  [[ $(id -u) == 0 ]] && chown postgres: "$dir"
  as_postgres "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log"; return 1; }
  {
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$dir'"
    echo "port = $PG_PORT"
    echo "shared_preload_libraries = 'pg_rls_auth'"
    echo "fsync = off"
    for line in "$@"; do echo "$line"; done
  } >>"$dir/data/postgresql.conf"
  as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log"; return 1; }
}

cluster_stop() {
  local dir=$1
  [[ -d "$dir/data" ]] && as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
  rm -rf "$dir"
}

cluster_psql() {
  local dir=$1; shift
  as_postgres psql -X -v ON_ERROR_STOP=1 -h "$dir" -p "$PG_PORT" -U postgres "$@"
}
