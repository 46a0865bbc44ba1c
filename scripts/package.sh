#!/usr/bin/env bash
# Builds one Debian package per PostgreSQL version, named as Debian names extension packages:
#   dist/postgresql-<major>-pg-rls-auth_<version>-1_<arch>.deb
# each holding the library for that major, the install script of this version and every
# upgrade script (not earlier versions' install scripts: a new database gets this version, and
# databases made by an earlier one update), laid out as Debian's
# postgresql-<major> expects (/usr/lib/postgresql/<major>/lib, /usr/share/postgresql/<major>/
# extension), and depending on postgresql-<major>.
#
#   bash scripts/package.sh                 # 15, 17 and 18, release builds
#   PG_RLS_AUTH_PACKAGE_VERSIONS=15 PG_RLS_AUTH_PACKAGE_PROFILE=debug bash scripts/package.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
read -r -a versions <<<"${PG_RLS_AUTH_PACKAGE_VERSIONS:-15 17 18}"
profile=${PG_RLS_AUTH_PACKAGE_PROFILE:-release}
PG_RLS_AUTH_VERSIONS="${versions[*]}" bash scripts/setup.sh
source scripts/versions.sh

version=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
mkdir -p dist
# The library is built against the PostgreSQL it will run on: Debian's 15, and for 17 and 18
# (Debian's source, built without assertions, as Debian's own packages are) the release builds
# of scripts/postgres.sh; the debug profile (tests) uses the test builds.
pg_config_for() {
  if [[ $1 == 15 || $profile == debug ]]; then
    pg_config_of "$1"
  else
    bash scripts/postgres.sh "$1-release" >&2
    echo "$PG_RLS_AUTH_PG_PREFIX/$1-release/bin/pg_config"
  fi
}

for major in "${versions[@]}"; do
  name="postgresql-$major-pg-rls-auth"
  work=$(mktemp -d /tmp/pg_rls_auth_package.XXXXXX)
  flags=()
  [[ $profile == debug ]] && flags+=(--debug)
  echo "[package] $name $version ($profile build)"
  cargo pgrx package "${flags[@]}" --no-default-features --features "pg$major" \
    --pg-config "$(pg_config_for "$major")" --out-dir "$work/build" >"$work/build.log" 2>&1 \
    || { tail -50 "$work/build.log"; exit 1; }
  root="$work/root"
  lib="$root/usr/lib/postgresql/$major/lib"
  ext="$root/usr/share/postgresql/$major/extension"
  mkdir -p "$lib" "$ext" "$root/DEBIAN" "$root/usr/share/doc/$name"
  # pgrx lays files out under the build's own prefix; Debian's server packages use these paths.
  find "$work/build" -name 'pg_rls_auth.so' -exec install -m 644 {} "$lib/" \;
  find "$work/build" \( -name 'pg_rls_auth.control' -o -name 'pg_rls_auth--*.sql' \) \
    -exec install -m 644 {} "$ext/" \;
  install -m 644 CHANGELOG.md "$root/usr/share/doc/$name/CHANGELOG.md"
  [[ -f "$lib/pg_rls_auth.so" && -f "$ext/pg_rls_auth--$version.sql" ]] \
    || { echo "[package] the build did not produce the library and install script"; exit 1; }
  size=$(du -sk "$root/usr" | cut -f1)
  cat >"$root/DEBIAN/control" <<EOF
Package: $name
Version: $version-1
Architecture: $arch
Maintainer: pg_rls_auth maintainers <maintainers@users.noreply.b-seed-4bc7784e.example>
Depends: postgresql-$major, libc6
Section: database
Priority: optional
Installed-Size: $size
Description: verified JWT claims and a write-rate limiter for PostgreSQL RLS
 pg_rls_auth verifies a client's JWT inside PostgreSQL $major and answers RLS policies'
 auth.user_id(), auth.uid(), auth.jwt() and auth.claim() from it (a superset of Neon's
 pg_session_jwt and Supabase's auth helpers), limits write rates with
 auth.check_write_rate(), and lints policies with auth.lint().
 Install with CREATE EXTENSION pg_rls_auth; upgrade with ALTER EXTENSION pg_rls_auth UPDATE.
EOF
  deb="dist/${name}_${version}-1_${arch}.deb"
  dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
  echo "[package] $deb"
  rm -rf "$work"
done
