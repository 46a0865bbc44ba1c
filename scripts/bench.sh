#!/usr/bin/env bash
# The benchmark command (not part of the tests): release build, throwaway cluster, every case of
# bench/run.py, report in bench/results/<date>.md with an SVG chart beside it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/cluster.sh

bash scripts/setup.sh
python3 -c 'import psycopg' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'psycopg[binary]'
echo "[bench] release build and install"
cargo pgrx install --release --pg-config "$PG_BIN/pg_config" >/tmp/pg_rls_auth_bench_install.log 2>&1 \
  || { tail -50 /tmp/pg_rls_auth_bench_install.log; exit 1; }

dir=$(mktemp -d /tmp/pg_rls_auth_bench.XXXXXX)
trap 'cluster_stop "$dir"' EXIT
cluster_start "$dir" "max_connections = 50" "shared_buffers = '256MB'" "work_mem = '64MB'" \
  "synchronous_commit = off" "max_parallel_workers_per_gather = 0"
cluster_psql "$dir" -d postgres -qc "CREATE DATABASE bench"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
header="Machine: $(nproc) cores ($cpu), $(free -g | awk '/Mem:/ {print $2}') GiB. \
PostgreSQL: $("$PG_BIN/postgres" --version). Commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench/results' || echo '+changes'). \
Build: release (cargo pgrx install --release)."
python3 bench/run.py --host "$dir" --port "$PG_PORT" --baselines bench/baselines.sql \
  --out bench/results --header "$header"
