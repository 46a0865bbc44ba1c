#!/usr/bin/env bash
# Runs the pg_regress suite (sql/*.sql against expected/*.out, in the order of sql/schedule)
# as the postgres user against a throwaway cluster: once plain, once with parallel query forced
# (debug_parallel_query = regress; force_parallel_mode on PostgreSQL 15). The extension must be
# installed already.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/cluster.sh"
PG_REGRESS=$("$PG_BIN/pg_config" --pkglibdir)/pgxs/src/test/regress/pg_regress

work=$(mktemp -d /tmp/pg_rls_auth_regress.XXXXXX)
chmod 755 "$work"
trap 'cluster_stop "$work/cluster"; rm -rf "$work"' EXIT
# The clone may sit where the postgres user cannot read: give pg_regress its own copy.
mkdir -p "$work/in" "$work/out"
cp -r "$here/sql" "$here/expected" "$work/in/"
chown -R postgres: "$work/in" "$work/out" 2>/dev/null || true

major=$("$PG_BIN/pg_config" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')
parallel_guc=debug_parallel_query
((major < 16)) && parallel_guc=force_parallel_mode

status=0
for mode in plain parallel; do
  cluster_start "$work/cluster" "max_worker_processes = 8" "max_parallel_workers_per_gather = 2"
  opts=""
  [[ $mode == parallel ]] && opts="-c $parallel_guc=regress"
  echo "== pg_regress ($mode)"
  if ! as_postgres env PGOPTIONS="$opts" "$PG_REGRESS" --bindir="$PG_BIN" --host="$work/cluster" --port="$PG_PORT" \
      --user=postgres --inputdir="$work/in" --outputdir="$work/out" --schedule="$work/in/sql/schedule" \
      --dbname=regression; then
    status=1
    cat "$work/out/regression.diffs" 2>/dev/null | head -200
    mkdir -p "$here/results" && cp -r "$work/out/." "$here/results/" 2>/dev/null || true
  fi
  cluster_stop "$work/cluster"
done
exit $status
