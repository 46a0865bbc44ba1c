#!/usr/bin/env bash
# Idempotent machine set-up: Debian packages, cargo-pgrx =0.18.1, PostgreSQL 17 and 18 built
# from Debian's source packages (scripts/postgres.sh; only the versions in
# PG_RLS_AUTH_VERSIONS), and `cargo pgrx init` against them and Debian's 15. A warm machine
# skips every step in seconds.
set -euo pipefail

PGRX_VERSION=0.18.1
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
DEB_PACKAGES=(postgresql-15 postgresql-server-dev-15 clang libclang-dev sudo pgbouncer pkg-config)

log() { printf '[setup] %s\n' "$*"; }

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's package creates and starts a default cluster; we run our own throwaway clusters.
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
      pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
    done
  fi
else
  log "Debian packages present"
fi

if [[ "$(cargo pgrx --version 2>/dev/null || true)" != "cargo-pgrx $PGRX_VERSION" ]]; then
  log "installing cargo-pgrx $PGRX_VERSION (takes a few minutes)"
  cargo install --locked cargo-pgrx --version "=$PGRX_VERSION"
else
  log "cargo-pgrx $PGRX_VERSION present"
fi

# The core's tests check tokens signed by an independent implementation (PyJWT on OpenSSL).
if ! python3 -c 'import jwt, cryptography' 2>/dev/null; then
  log "installing PyJWT and cryptography"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pyjwt cryptography
else
  log "PyJWT present"
fi

# PostgreSQL 17 and 18 from Debian's source packages (a warm machine has them already).
read -r -a versions <<<"${PG_RLS_AUTH_VERSIONS:-15 17 18}"
source "$(dirname "$0")/versions.sh"
others=()
for v in "${versions[@]}"; do [[ $v == 15 ]] || others+=("$v"); done
if ((${#others[@]})); then
  bash "$(dirname "$0")/postgres.sh" "${others[@]}"
fi

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
init_args=()
missing_init=0
for v in 15 "${others[@]}"; do
  init_args+=("--pg$v" "$(pg_config_of "$v")")
  grep -qs "pg$v = \"$(pg_config_of "$v")\"" "$PGRX_HOME/config.toml" || missing_init=1
done
if ((missing_init)); then
  log "cargo pgrx init ${init_args[*]}"
  cargo pgrx init "${init_args[@]}"
else
  log "pgrx already initialised for PostgreSQL 15 ${others[*]}"
fi
log "done"
