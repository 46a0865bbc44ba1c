#!/usr/bin/env bash
# PostgreSQL 17 and 18 for the tests, built from Debian's source packages (trixie's
# postgresql-17, sid's postgresql-18; this bookworm machine has binaries for 15 only) with
# PostgreSQL's own configure and make, assertions on (--enable-cassert --enable-debug), into
# $PG_RLS_AUTH_PG_PREFIX/<major> (default /var/cache/pg_rls_auth/postgresql), outside the clone
# and kept between runs: a warm machine skips every step. Only deb-src lines are added (in a
# file of our own); no binary package of another suite is ever installed.
# MAJOR-release builds the same source without assertions into <prefix>/MAJOR-release, for the
# benchmarks (assertions slow everything down several times).
#   bash scripts/postgres.sh [MAJOR[-release]...]     (default: 17 18)
set -euo pipefail

prefix_root=${PG_RLS_AUTH_PG_PREFIX:-/var/cache/pg_rls_auth/postgresql}
majors=("$@")
((${#majors[@]})) || majors=(17 18)

log() { printf '[postgres] %s\n' "$*"; }

suite_of() {
  case $1 in
    17) echo trixie ;;
    18) echo sid ;;
    *) echo "no source suite known for PostgreSQL $1" >&2; return 1 ;;
  esac
}

build_deps=(bison flex make gcc perl pkg-config libreadline-dev zlib1g-dev libssl-dev dpkg-dev curl
  debian-keyring)

need_sources() {
  local list=/etc/apt/sources.list.d/pg_rls_auth-src.sources
  if [[ ! -f $list ]]; then
    log "adding deb-src lines for trixie and sid ($list)"
    cat >"$list" <<'EOF'
# pg_rls_auth: source packages of PostgreSQL 17 (trixie) and 18 (sid), built by scripts/postgres.sh.
# Source lines only: no binary package is installed from these suites.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update -qq
  fi
}

# Fetches postgresql-MAJOR's source package into DIR: the version the suite's index names, or,
# when the mirror does not have its files yet (seen for trixie's postgresql-17), the newest
# earlier point release the mirror has. Either way dpkg-source then checks the maintainer's
# signature and every checksum.
fetch_source() {
  local major=$1 suite=$2 dir=$3
  if (cd "$dir" && apt-get source -qq --download-only "postgresql-$major/$suite" >/dev/null 2>&1); then
    return 0
  fi
  local pool=http://deb.debian.org/debian/pool/main/p/postgresql-$major
  local indexed minor rev
  indexed=$(apt-cache showsrc "postgresql-$major" | sed -n 's/^Version: //p' | head -1)
  minor=${indexed#"$major".}; minor=${minor%%-*}
  rev=${indexed#*-}
  log "the mirror lacks postgresql-$major $indexed; looking for an earlier point release"
  local m version files f
  for ((m = minor - 1; m >= 0; m--)); do
    version=$major.$m-$rev
    curl -fsS -o "$dir/postgresql-${major}_$version.dsc" "$pool/postgresql-${major}_$version.dsc" 2>/dev/null || continue
    files=$(awk '/^Files:/ {on=1; next} on && /^ / {print $3} on && !/^ / {on=0}' "$dir/postgresql-${major}_$version.dsc")
    for f in $files; do
      curl -fsS -o "$dir/$f" "$pool/$f" || return 1
    done
    log "using postgresql-$major $version"
    return 0
  done
  echo "no source of postgresql-$major is available" >&2
  return 1
}

for build in "${majors[@]}"; do
  major=${build%-release}
  prefix=$prefix_root/$build
  if [[ $build == *-release ]]; then
    flavor="without assertions"; checks=()
  else
    flavor="with assertions"; checks=(--enable-cassert)
  fi
  if [[ -x $prefix/bin/pg_config && -f $prefix/.built ]]; then
    log "PostgreSQL $build present ($prefix)"
    continue
  fi
  suite=$(suite_of "$major")
  missing=()
  for p in "${build_deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing build dependencies: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  need_sources
  src=$prefix_root/src/$build
  rm -rf "$src" && mkdir -p "$src"
  log "fetching the source of postgresql-$major ($suite)"
  fetch_source "$major" "$suite" "$src"
  dsc=$(ls "$src"/postgresql-"$major"_*.dsc)
  # Upstream's tree as released: Debian's packaging patches are not needed for a test build.
  # The signature and checksums of every file are verified (Debian's keyrings).
  (cd "$src" && dpkg-source --require-valid-signature --skip-patches -x "$dsc" tree >/dev/null)
  log "building PostgreSQL $major $flavor into $prefix (several minutes)"
  (
    cd "$src/tree"
    ./configure --prefix="$prefix" "${checks[@]}" --enable-debug --without-icu \
      >"$src/configure.log" 2>&1 || { tail -30 "$src/configure.log"; exit 1; }
    make -j"$(nproc)" -s >"$src/make.log" 2>&1 || { tail -40 "$src/make.log"; exit 1; }
    make -s install >"$src/install.log" 2>&1 || { tail -40 "$src/install.log"; exit 1; }
  )
  touch "$prefix/.built"
  rm -rf "$src"
  log "PostgreSQL $major built: $("$prefix/bin/pg_config" --version)"
done
