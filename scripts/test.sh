#!/usr/bin/env bash
# The test command: sets the machine up, then runs every test layer and prints a summary.
# Exits non-zero if any layer fails. CI runs exactly this (.ci/run).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

bash scripts/setup.sh || { echo "setup failed"; exit 1; }

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
  local pgdata
  pgdata=$(mktemp -d /tmp/pg_rls_auth_pgrx.XXXXXX)
  chown postgres: "$pgdata"
  CARGO_PGRX_TEST_RUNAS=postgres CARGO_PGRX_TEST_PGDATA="$pgdata/data" \
    cargo pgrx test pg15 --package pg_rls_auth
  local rc=$?
  rm -rf "$pgdata"
  return $rc
}

install_extension() {
  cargo pgrx install --pg-config "$PG_CONFIG" >/tmp/pg_rls_auth_install.log 2>&1 \
    || { tail -50 /tmp/pg_rls_auth_install.log; return 1; }
}

layer "cargo fmt --check" cargo fmt --all --check
layer "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
layer "core unit and property tests (cargo test)" cargo test -p pg_rls_auth_core
layer "#[pg_test] tests (cargo pgrx test)" pgrx_tests
layer "install into PostgreSQL 15" install_extension
layer "pg_regress (plain and parallel)" bash scripts/regress.sh
layer "integration tests (pgrx-tests/)" cargo test -p pg_rls_auth_it -- --test-threads=1
layer "fuzzing, briefly (15 s per target; long runs: scripts/fuzz.sh)" bash scripts/fuzz.sh 15

echo
if ((failed)); then
  echo "failed layers: ${failures[*]}"
fi
echo "test layers: $passed passed, $failed failed"
((failed == 0))
