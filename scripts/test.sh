#!/usr/bin/env bash
# The test command: sets the machine up, then runs every test layer and prints a summary with
# each layer's time. Exits non-zero if any layer fails. CI runs exactly this (.ci/run).
#
# PostgreSQL versions: PG_RLS_AUTH_VERSIONS (default "15 17 18"). 15 runs every layer; 17 and
# 18 (built from source with assertions by scripts/postgres.sh) run the #[pg_test] tests,
# pg_regress plain and with parallel query forced, and the integration tests. While developing,
# PG_RLS_AUTH_VERSIONS=15 bash scripts/test.sh runs one version only.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
export PG_RLS_AUTH_VERSIONS=${PG_RLS_AUTH_VERSIONS:-15 17 18}
read -r -a versions <<<"$PG_RLS_AUTH_VERSIONS"
total_start=$SECONDS

bash scripts/setup.sh || { echo "setup failed"; exit 1; }
echo "setup: $((SECONDS - total_start)) s"
source scripts/versions.sh

passed=0 failed=0 failures=()
layer() {
  local name=$1; shift
  echo
  echo "===== $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); echo "===== $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "===== $name: FAILED ($((SECONDS - start)) s)"
  fi
}

pgrx_tests() {
  # PostgreSQL refuses root: pgrx runs its test cluster as postgres, in a directory it owns.
  local major=$1 pgdata
  pgdata=$(mktemp -d /tmp/pg_rls_auth_pgrx.XXXXXX)
  chown postgres: "$pgdata"
  CARGO_PGRX_TEST_RUNAS=postgres CARGO_PGRX_TEST_PGDATA="$pgdata/data" \
    cargo pgrx test "pg$major" --package pg_rls_auth
  local rc=$?
  rm -rf "$pgdata"
  return $rc
}

install_extension() {
  local major=$1 pg_config frozen
  pg_config=$(pg_config_of "$major")
  cargo pgrx install --no-default-features --features "pg$major" --pg-config "$pg_config" \
    >/tmp/pg_rls_auth_install.log 2>&1 || { tail -50 /tmp/pg_rls_auth_install.log; return 1; }
  # Released versions' frozen install scripts (pgrx installs only the upgrade scripts), for the
  # upgrade tests' CREATE EXTENSION … VERSION.
  for frozen in sql/pg_rls_auth--*.sql; do
    [[ $frozen == *--*--* ]] || install -m 644 "$frozen" "$("$pg_config" --sharedir)/extension/"
  done
}

layer "cargo fmt --check" cargo fmt --all --check
layer "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
if [[ " ${versions[*]} " == *" 18 "* ]]; then
  # The code only PostgreSQL 16 and later compile (src/pg_versions.rs), and the benchmark's
  # `bench` feature.
  layer "cargo clippy (PostgreSQL 18, bench feature)" \
    cargo clippy -p pg_rls_auth --no-default-features --features "pg18 bench" -- -D warnings
fi
layer "core unit and property tests (cargo test)" cargo test -p pg_rls_auth_core
for major in "${versions[@]}"; do
  bin=$(dirname "$(pg_config_of "$major")")
  layer "PostgreSQL $major: #[pg_test] tests (cargo pgrx test)" pgrx_tests "$major"
  layer "PostgreSQL $major: install" install_extension "$major"
  layer "PostgreSQL $major: pg_regress (plain and parallel)" env PG_BIN="$bin" bash scripts/regress.sh
  layer "PostgreSQL $major: integration tests (pgrx-tests/)" \
    env PG_BIN="$bin" cargo test -p pg_rls_auth_it --no-fail-fast -- --test-threads=1
done
if [[ " ${versions[*]} " == *" 15 "* ]]; then
  layer "Debian package for PostgreSQL 15: build, apt-get install, use, remove" bash scripts/package_test.sh
fi
layer "fuzzing, briefly (15 s per target; long runs: scripts/fuzz.sh)" bash scripts/fuzz.sh 15

echo
if ((failed)); then
  echo "failed layers: ${failures[*]}"
fi
echo "setup and all layers: $((SECONDS - total_start)) s"
echo "test layers: $passed passed, $failed failed"
((failed == 0))
