-- Revocation: auth.revoke_sessions(sub[, issued_before[, expires_at]]) refuses every token of
-- that sub issued before a time, auth.revoke_token(jti, expires_at) one token; a session using
-- one ends at its next statement. Only the superuser, the extension's installer and whom they
-- grant it to may revoke; client roles cannot read or change the revocations.
\set VERBOSITY terse
\set signing_alg ES256
\getenv abs_srcdir PG_ABS_SRCDIR
\set prelude :abs_srcdir '/sql/include/signing_key.sql'
\i :prelude
CREATE FUNCTION pg_temp.issued(claims jsonb, seconds_ago int, key text) RETURNS text LANGUAGE sql AS $$
  SELECT pg_temp.token(claims || jsonb_build_object('iat', extract(epoch FROM now())::bigint - seconds_ago), key)
$$;
SELECT pg_temp.issued('{"sub":"rv-alice","jti":"a-1"}', 100, :'signing_key') AS alice_old \gset
SELECT pg_temp.issued('{"sub":"rv-alice","jti":"a-2"}', 10, :'signing_key') AS alice_new \gset
SELECT pg_temp.token('{"sub":"rv-alice"}', :'signing_key') AS alice_no_iat \gset
SELECT pg_temp.issued('{"sub":"RV-ALICE"}', 100, :'signing_key') AS other_case \gset
SELECT pg_temp.issued('{"sub":"rv-bob","jti":"b-1"}', 100, :'signing_key') AS bob_1 \gset
SELECT pg_temp.issued('{"sub":"rv-bob","jti":"b-2"}', 100, :'signing_key') AS bob_2 \gset
SELECT pg_temp.issued('{"sub":"rv-bob","jti":42}', 100, :'signing_key') AS bob_numeric \gset
SELECT pg_temp.issued('{"sub":"rv-bob","jti":42.0}', 100, :'signing_key') AS bob_numeric_fraction \gset
SELECT pg_temp.issued(jsonb_build_object('sub', repeat('x', 1025)), 0, :'signing_key') AS long_sub \gset
SELECT pg_temp.issued(jsonb_build_object('sub', 'rv-carol', 'jti', repeat('x', 1025)), 0, :'signing_key') AS long_jti \gset

-- Client roles can neither revoke, withdraw, list nor touch the table.
SET ROLE alice;
SELECT auth.revoke_sessions('rv-bob');
SELECT auth.revoke_token('b-1', now() + interval '1 hour');
SELECT auth.unrevoke_sessions('rv-alice');
SELECT auth.unrevoke_token('a-1');
SELECT * FROM auth.revocations();
SELECT * FROM _pg_rls_auth.revocations;
RESET ROLE;
SELECT p.oid::regprocedure AS function, has_function_privilege('alice', p.oid, 'EXECUTE') AS alice_may
  FROM pg_proc p WHERE p.pronamespace = 'auth'::regnamespace
   AND p.proname IN ('revoke_sessions', 'revoke_token', 'unrevoke_sessions', 'unrevoke_token', 'revocations')
 ORDER BY 1::text;

-- A session started before the revocation ends at its next statement.
SELECT auth.jwt_session_init(:'alice_old');
SELECT auth.user_id();
SELECT auth.revoke_sessions('rv-alice', now() - interval '50 seconds');
SELECT auth.user_id() AS after_revocation, auth.jwt() AS claims;
-- Tokens issued before the cut-off are refused, with or without iat (counted as the epoch);
-- one issued after it, and another sub that differs only in case, verify.
SELECT auth.jwt_session_init(:'alice_old');
SELECT auth.jwt_session_init(:'alice_no_iat');
SELECT auth.jwt_session_init(:'alice_new');
SELECT auth.user_id();
SELECT auth.jwt_session_init(:'other_case');
SELECT auth.user_id();
-- A later revocation never narrows an earlier one.
SELECT auth.revoke_sessions('rv-alice', now() - interval '1 day');
SELECT auth.jwt_session_init(:'alice_old');

-- One token by jti, string or number: the other tokens of that sub still verify.
SELECT auth.revoke_token('b-1', now() + interval '1 hour');
SELECT auth.revoke_token('42', now() + interval '1 hour');
SELECT auth.jwt_session_init(:'bob_1');
SELECT auth.jwt_session_init(:'bob_numeric');
-- A numeric jti is revoked as the session shows it (42.0 is not 42).
SELECT auth.jwt_session_init(:'bob_numeric_fraction');
SELECT auth.claim('jti') AS bob_jti \gset
SELECT :'bob_jti' AS jti, auth.revoke_token(:'bob_jti', now() + interval '1 hour');
SELECT auth.user_id() AS after_revocation;
SELECT auth.jwt_session_init(:'bob_numeric_fraction');
SELECT auth.jwt_session_init(:'bob_2');
SELECT auth.user_id();
-- ... and a session using it ends at the first statement after the revocation commits.
BEGIN;
SELECT auth.revoke_token('b-2', now() + interval '1 hour');
SELECT auth.user_id() AS before_commit;
COMMIT;
SELECT auth.user_id() AS after_commit;

-- What is in force.
SELECT kind, value, issued_before IS NOT NULL AS has_cut_off, expires_at IS NOT NULL AS expires, revoked_by
  FROM auth.revocations() ORDER BY kind, value;

-- Withdrawing a revocation lets its tokens verify again; withdrawing twice finds nothing.
SELECT auth.unrevoke_sessions('rv-alice'), auth.unrevoke_sessions('rv-alice') AS again;
SELECT auth.jwt_session_init(:'alice_old');
SELECT auth.user_id();
SELECT auth.unrevoke_token('b-1');
SELECT auth.jwt_session_init(:'bob_1');
SELECT auth.user_id();

-- Revocations that refuse nothing any more are removed when one is added.
SELECT auth.revoke_token('already-expired', now() - interval '1 second');
SELECT auth.revoke_sessions('rv-carol', now(), now() - interval '1 second');
SELECT count(*) AS expired_rows FROM _pg_rls_auth.revocations
 WHERE value IN ('already-expired', 'rv-carol');
SELECT count(*) AS listed FROM auth.revocations() WHERE value IN ('already-expired', 'rv-carol');

-- Arguments are checked.
SELECT auth.revoke_sessions(NULL);
SELECT auth.revoke_sessions('');
SELECT auth.revoke_sessions(repeat('x', 1025));
SELECT auth.revoke_sessions('rv-dave', NULL);
SELECT auth.revoke_token('j', NULL);
SELECT auth.unrevoke_token(NULL);

-- Granted EXECUTE, another role may revoke; who did is recorded.
CREATE ROLE rv_admin NOLOGIN;
GRANT EXECUTE ON FUNCTION auth.revoke_sessions(text, timestamptz, timestamptz), auth.revocations() TO rv_admin;
SET ROLE rv_admin;
SELECT auth.revoke_sessions('rv-erin');
SELECT value, revoked_by FROM auth.revocations() WHERE value = 'rv-erin';
-- Only what was granted.
SELECT auth.unrevoke_sessions('rv-erin');
RESET ROLE;

-- The library is preloaded here: a backend with a session reads the revocations only after a
-- commit changed them, not per statement (without preload it reads them once per statement:
-- see the integration tests).
SELECT auth.jwt_session_init(:'alice_new');
BEGIN;
SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS reads FROM pg_stat_xact_all_tables
 WHERE relid = '_pg_rls_auth.revocations'::regclass \gset
SELECT auth.user_id() FROM generate_series(1, 3);
SELECT auth.user_id();
SELECT (coalesce(seq_scan, 0) + coalesce(idx_scan, 0)) - :reads AS reads_by_statements
  FROM pg_stat_xact_all_tables WHERE relid = '_pg_rls_auth.revocations'::regclass;
COMMIT;

-- A sub or jti longer than any revocation may name (1,024 bytes) could never be revoked: such
-- a token is refused, even with nothing revoked.
SELECT auth.end_session();
DELETE FROM _pg_rls_auth.revocations;
SELECT auth.jwt_session_init(:'long_sub');
SELECT auth.jwt_session_init(:'long_jti');
SELECT auth.user_id();
REVOKE EXECUTE ON FUNCTION auth.revoke_sessions(text, timestamptz, timestamptz), auth.revocations() FROM rv_admin;
DROP ROLE rv_admin;
