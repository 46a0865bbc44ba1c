#!/usr/bin/env bash
# The benchmark command (not part of the tests): for each PostgreSQL version in
# PG_RLS_AUTH_BENCH_VERSIONS (default "15 18"), a release build of the extension, a throwaway
# cluster of a release (assertion-free) PostgreSQL, every case of bench/run.py, and a report
# in bench/results/<date>-pg<major>.md with an SVG chart beside it; then
# bench/results/<date>-versions.md sets the versions side by side. 15 is Debian's package;
# other versions are built from source without assertions (scripts/postgres.sh MAJOR-release).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/versions.sh
read -r -a versions <<<"${PG_RLS_AUTH_BENCH_VERSIONS:-15 18}"

PG_RLS_AUTH_VERSIONS=15 bash scripts/setup.sh
python3 -c 'import psycopg' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'psycopg[binary]'

release_bin_of() {
  if [[ $1 == 15 ]]; then
    dirname "$(pg_config_of 15)"
  else
    bash scripts/postgres.sh "$1-release" >&2
    echo "$PG_RLS_AUTH_PG_PREFIX/$1-release/bin"
  fi
}

today=$(date -u +%F)
# PG_RLS_AUTH_BENCH_CASES (e.g. "rls_scan per_row") measures only those cases of bench/run.py;
# the reports then carry the cases in their names.
cases=${PG_RLS_AUTH_BENCH_CASES:-}
suffix=${cases:+-${cases// /-}}
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench/results' || echo '+changes')"
reports=()
for major in "${versions[@]}"; do
  PG_BIN=$(release_bin_of "$major")
  export PG_BIN
  source scripts/cluster.sh
  echo "[bench] PostgreSQL $major: release build and install"
  # `bench` adds #[pg_extern] twins of two accessors, to measure what the hand-written ones save.
  cargo pgrx install --release --no-default-features --features "pg$major bench" \
    --pg-config "$PG_BIN/pg_config" >/tmp/pg_rls_auth_bench_install.log 2>&1 \
    || { tail -50 /tmp/pg_rls_auth_bench_install.log; exit 1; }

  dir=$(mktemp -d /tmp/pg_rls_auth_bench.XXXXXX)
  trap 'cluster_stop "$dir"' EXIT
  cluster_start "$dir" "max_connections = 50" "shared_buffers = '256MB'" "work_mem = '64MB'" \
    "synchronous_commit = off" "max_parallel_workers_per_gather = 0"
  cluster_psql "$dir" -d postgres -qc "CREATE DATABASE bench"
  header="Machine: $(nproc) cores ($cpu), $(free -g | awk '/Mem:/ {print $2}') GiB. \
PostgreSQL: $("$PG_BIN/postgres" --version) ($([[ $major == 15 ]] && echo "Debian's package" || echo "built from Debian's source without assertions")). \
Commit: $commit. Build: release (cargo pgrx install --release)."
  python3 bench/run.py --host "$dir" --port "$PG_PORT" --pgbench "$PG_BIN/pgbench" \
    --baselines bench/baselines.sql --out bench/results --name "$today$suffix-pg$major" --header "$header"
  cluster_stop "$dir"
  trap - EXIT
  reports+=("bench/results/$today$suffix-pg$major.json")
done
if ((${#reports[@]} > 1)); then
  python3 bench/compare.py --out "bench/results/$today$suffix-versions.md" "${reports[@]}"
fi
