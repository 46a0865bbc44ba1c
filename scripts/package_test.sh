#!/usr/bin/env bash
# The Debian package for PostgreSQL 15, end to end on this machine: build it (scripts/package.sh,
# a debug build to reuse the test build), `apt-get install ./….deb` into the system PostgreSQL
# 15, install the extension from it in a throwaway cluster (as 0.2.0; 0.1.0 is refused; a
# database made by 0.1.0 before updates with ALTER EXTENSION), `apt-get remove` it and check
# every file it brought is gone. The extension
# was installed there by `cargo pgrx install` before (the test layers); it is put back after.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/versions.sh
source scripts/cluster.sh

PG_RLS_AUTH_PACKAGE_VERSIONS=15 PG_RLS_AUTH_PACKAGE_PROFILE=debug bash scripts/package.sh
version=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -1)
deb="$here/dist/postgresql-15-pg-rls-auth_${version}-1_$(dpkg --print-architecture).deb"
package=postgresql-15-pg-rls-auth

dir=$(mktemp -d /tmp/pg_rls_auth_package_test.XXXXXX)
chmod 755 "$dir"
restore() {
  cluster_stop "$dir/cluster"
  rm -rf "$dir"
  dpkg -s "$package" >/dev/null 2>&1 && apt-get remove -y -qq "$package" >/dev/null 2>&1
  # Back to what the test layers installed.
  cargo pgrx install --no-default-features --features pg15 --pg-config "$(pg_config_of 15)" >/dev/null 2>&1
  for frozen in sql/pg_rls_auth--*.sql; do
    [[ $frozen == *--*--* ]] || install -m 644 "$frozen" "$("$(pg_config_of 15)" --sharedir)/extension/"
  done
}
trap restore EXIT

# A database made by 0.1.0 (its frozen install script, on the library the test layers
# installed), as a server upgraded to this package has.
install -m 644 sql/pg_rls_auth--0.1.0.sql "$("$(pg_config_of 15)" --sharedir)/extension/"
cluster_start "$dir/cluster"
cluster_psql "$dir/cluster" -d postgres -qc "CREATE DATABASE old" -c "CREATE DATABASE fresh" \
  -c "CREATE DATABASE attempt"
cluster_psql "$dir/cluster" -d old -qc "CREATE EXTENSION pg_rls_auth VERSION '0.1.0'"
as_postgres "$PG_BIN/pg_ctl" -D "$dir/cluster/data" -m fast -w stop >/dev/null

# The package's own files replace the ones installed by hand.
rm -f /usr/lib/postgresql/15/lib/pg_rls_auth.so /usr/share/postgresql/15/extension/pg_rls_auth*
apt-get install -y -qq "$deb" >"$dir/apt.log" 2>&1 || { cat "$dir/apt.log"; exit 1; }
dpkg -s "$package" | grep -E '^(Package|Version|Depends):'
files=$(dpkg -L "$package" | while read -r f; do if [[ -f $f ]]; then echo "$f"; fi; done)
echo "$files" | grep -q 'lib/postgresql/15/lib/pg_rls_auth.so$'
echo "$files" | grep -q "extension/pg_rls_auth--$version.sql$"
echo "$files" | grep -q 'extension/pg_rls_auth--0.1.0--0.2.0.sql$'
# Only this version's install script: an older one's SQL cannot be installed.
[[ $(echo "$files" | grep -cE 'extension/pg_rls_auth--[^-]+\.sql$') == 1 ]] \
  || { echo "the package ships another install script: $files"; exit 1; }

as_postgres "$PG_BIN/pg_ctl" -D "$dir/cluster/data" -l "$dir/cluster/server.log" -w -t 60 start >/dev/null
got=$(cluster_psql "$dir/cluster" -d fresh -qAtc "CREATE EXTENSION pg_rls_auth" \
  -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_rls_auth'" \
  -c "SELECT auth.sign_jwt('{\"sub\":\"a\"}', auth.generate_jwk()::text) LIKE 'ey%'")
[[ $got == "$version"$'\nt' ]] || { echo "fresh install: $got"; exit 1; }
if got=$(cluster_psql "$dir/cluster" -d attempt -qAtc "CREATE EXTENSION pg_rls_auth VERSION '0.1.0'" 2>&1); then
  echo "0.1.0 installed from the package: $got"; exit 1
fi
got=$(cluster_psql "$dir/cluster" -d old -qAtc "SELECT extversion FROM pg_extension WHERE extname = 'pg_rls_auth'" \
  -c "ALTER EXTENSION pg_rls_auth UPDATE" \
  -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_rls_auth'")
[[ $got == "0.1.0"$'\n'"$version" ]] || { echo "0.1.0 updated: $got"; exit 1; }
cluster_stop "$dir/cluster"
echo "[package test] installed from $deb: CREATE EXTENSION gives $version, VERSION '0.1.0' is refused, a 0.1.0 database updates to it"

apt-get remove -y -qq "$package" >"$dir/apt.log" 2>&1 || { cat "$dir/apt.log"; exit 1; }
left=$(while read -r f; do if [[ -e $f ]]; then echo "$f"; fi; done <<<"$files")
[[ -z $left ]] || { echo "left after apt-get remove: $left"; exit 1; }
echo "[package test] apt-get remove took every file away"
