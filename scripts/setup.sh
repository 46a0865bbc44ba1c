#!/usr/bin/env bash
# Idempotent machine set-up: Debian packages, cargo-pgrx =0.18.1, `cargo pgrx init` against
# Debian's PostgreSQL 15. A warm machine skips every step in seconds.
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

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs "pg15 = \"$PG_CONFIG\"" "$PGRX_HOME/config.toml"; then
  log "cargo pgrx init --pg15 $PG_CONFIG"
  cargo pgrx init --pg15 "$PG_CONFIG"
else
  log "pgrx already initialised for $PG_CONFIG"
fi
log "done"
