#!/usr/bin/env bash
# The demo command: set up, build, install into the local PostgreSQL 15, start a throwaway
# cluster and walk through what pg_rls_auth does. Cleans up after itself, also on failure.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/cluster.sh

bash scripts/setup.sh
echo "[demo] building and installing pg_rls_auth"
cargo pgrx install --pg-config "$PG_BIN/pg_config" >/tmp/pg_rls_auth_install.log 2>&1 \
  || { tail -50 /tmp/pg_rls_auth_install.log; exit 1; }

dir=$(mktemp -d /tmp/pg_rls_auth_demo.XXXXXX)
trap 'cluster_stop "$dir"' EXIT
echo "[demo] starting a throwaway cluster in $dir (shared_preload_libraries = 'pg_rls_auth')"
cluster_start "$dir"
echo

cluster_psql "$dir" -d postgres -q -a <<'SQL'
\pset footer off
-- 1. Install the extension: its functions live in schema auth.
CREATE EXTENSION pg_rls_auth;

-- 2. An administrator configures the key that verifies tokens. Here we make an Ed25519 key
--    pair with the token kit; in production the public key (or a JWKS) comes from your
--    identity provider and goes in postgresql.conf or ALTER SYSTEM.
SELECT auth.generate_jwk('EdDSA') AS private_key \gset
-- A private key must never sit in a setting every role can read: it is refused at first use.
\set ON_ERROR_STOP 0
SELECT set_config('pg_rls_auth.jwks', :'private_key', false) IS NOT NULL AS set;
SELECT auth.init();
\set ON_ERROR_STOP 1
-- The public half is what belongs there.
SELECT auth.public_jwk(:'private_key') AS public_key \gset
SELECT set_config('pg_rls_auth.jwks', :'public_key', false) IS NOT NULL AS key_configured;

-- 3. An app table, protected by Row Level Security: each user sees only their rows.
CREATE ROLE app_user LOGIN;
CREATE TABLE notes (id serial PRIMARY KEY, owner_id text NOT NULL DEFAULT auth.user_id(), body text);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes_owner ON notes USING (owner_id = (SELECT auth.user_id()))
  WITH CHECK (owner_id = (SELECT auth.user_id()) AND auth.check_write_rate(3, 60, 'notes'));
GRANT SELECT, INSERT ON notes TO app_user;
GRANT USAGE ON SEQUENCE notes_id_seq TO app_user;
INSERT INTO notes (owner_id, body) VALUES ('alice', 'alice: buy milk'), ('bob', 'bob: secret plans');

-- 4. Sign tokens for two users (your identity provider does this for real).
SELECT auth.sign_jwt(jsonb_build_object('sub', 'alice', 'role', 'authenticated',
         'exp', extract(epoch FROM now())::int + 600), :'private_key') AS alice_token \gset
SELECT auth.sign_jwt(jsonb_build_object('sub', 'bob',
         'exp', extract(epoch FROM now())::int + 600), :'private_key') AS bob_token \gset

-- 5. The client connects as an ordinary role and starts a verified session with its token.
SET ROLE app_user;
SELECT auth.jwt_session_init(:'alice_token');
SELECT auth.user_id(), auth.role(), auth.session() ->> 'exp' IS NOT NULL AS has_exp;
-- RLS hides bob's row from alice:
SELECT id, owner_id, body FROM notes;
SELECT auth.jwt_session_init(:'bob_token');
SELECT id, owner_id, body FROM notes;

-- 6. A client cannot forge claims: a token with a forged payload is refused (SQLSTATE 28000),
--    the settings that hold keys are superuser-only, and the session is gone.
\set ON_ERROR_STOP 0
SELECT auth.jwt_session_init(split_part(:'bob_token', '.', 1) || '.' ||
       translate(encode(convert_to('{"sub":"alice","exp":9999999999}', 'UTF8'), 'base64'), '+/=', '-_') ||
       '.' || split_part(:'bob_token', '.', 3));
SET pg_rls_auth.jwks = '{}';
SELECT auth.user_id() AS user_after_forgery;

-- 7. The write-rate limiter in the INSERT policy: alice may add 3 notes a minute.
SELECT auth.jwt_session_init(:'alice_token');
INSERT INTO notes (body) VALUES ('alice: note 1');
INSERT INTO notes (body) VALUES ('alice: note 2');
INSERT INTO notes (body) VALUES ('alice: note 3');
\set VERBOSITY verbose
INSERT INTO notes (body) VALUES ('alice: note 4, one too many');
\set VERBOSITY default
\set ON_ERROR_STOP 1
SELECT allowed, remaining, ceil(retry_after_seconds) AS retry_after_s
  FROM auth.write_rate_status(3, 60, 'notes');
SELECT count(*) AS alice_notes FROM notes;
RESET ROLE;
SELECT store, slots_used, checks, admitted, rejected FROM auth.write_rate_stats();
SQL
echo
echo "[demo] done: the cluster is stopped and removed."
