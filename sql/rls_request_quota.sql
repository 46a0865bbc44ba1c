-- sql/rls/request_quota.sql, proven the way PostgREST runs a request: one transaction that
-- sets the role (SET LOCAL ROLE), request.jwt.claims, request.method, request.path and
-- request.headers transaction-locally, runs the pre-request function, then the query.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set script :abs_srcdir '/sql/rls/request_quota.sql'
-- The script runs twice (it is idempotent); silence means it ran clean.
\set ECHO none
\i :script
\i :script
\set ECHO all
SELECT p.oid::regprocedure AS pre_request, p.prosecdef, p.proconfig FROM pg_proc p
 WHERE p.oid = 'api.pre_request()'::regprocedure;
CREATE ROLE pgrst_user NOLOGIN;
GRANT USAGE ON SCHEMA api TO pgrst_user;
CREATE TABLE api.todos (id int, owner text);
INSERT INTO api.todos VALUES (1, 'q-alice'), (2, 'q-bob');
GRANT SELECT, INSERT ON api.todos TO pgrst_user;
-- What PostgREST sets, transaction-locally, before the pre-request call.
CREATE FUNCTION pg_temp.request(claims text, method text, path text, headers text DEFAULT '')
  RETURNS text LANGUAGE sql AS $$
  SELECT set_config('request.jwt.claims', claims, true), set_config('request.method', method, true),
         set_config('request.path', path, true), set_config('request.headers', headers, true);
  SELECT method || ' ' || path
$$;
-- Requests (pre-request calls) until one is refused with PT429, or `max`: how many passed.
CREATE FUNCTION pg_temp.requests_until_refused(max int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  admitted int := 0;
BEGIN
  WHILE admitted < max LOOP
    BEGIN
      PERFORM api.pre_request();
    EXCEPTION WHEN sqlstate 'PT429' THEN
      RETURN admitted;
    END;
    admitted := admitted + 1;
  END LOOP;
  RETURN admitted;
END
$$;

-- No key configured: the session is PostgREST's request.jwt.claims. One request, then as many
-- as pass: the quota (600 a minute, refilling one per 100 ms) runs out, and the next request
-- is refused with PT429, which PostgREST answers with HTTP 429.
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT pg_temp.request('{"sub":"q-alice","role":"pgrst_user"}', 'GET', '/todos');
SELECT api.pre_request();
SELECT count(*) AS todos FROM api.todos;
SELECT pg_temp.requests_until_refused(5000) BETWEEN 599 AND 700 AS refused_once_the_quota_is_spent;
COMMIT;
-- Another route, a write to the same route, another user: each its own quota.
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT pg_temp.request('{"sub":"q-alice","role":"pgrst_user"}', 'GET', '/projects');
SELECT api.pre_request();
SELECT pg_temp.request('{"sub":"q-alice","role":"pgrst_user"}', 'POST', '/todos');
SELECT api.pre_request();
INSERT INTO api.todos VALUES (3, auth.user_id());
SELECT pg_temp.request('{"sub":"q-bob","role":"pgrst_user"}', 'GET', '/todos');
SELECT api.pre_request();
COMMIT;
-- Revoked: PostgREST verified the token, pre_request refuses it (28000, HTTP 403), on every
-- route; another user's requests pass.
SELECT auth.revoke_sessions('q-alice', now() + interval '1 minute');
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT pg_temp.request('{"sub":"q-alice","role":"pgrst_user","iat":1700000000}', 'GET', '/other');
SELECT api.pre_request();
ROLLBACK;
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT pg_temp.request('{"sub":"q-bob","role":"pgrst_user"}', 'GET', '/other');
SELECT api.pre_request();
COMMIT;
SELECT auth.unrevoke_sessions('q-alice');
-- PostgREST before v9 sets request.jwt.claim.sub instead, and policies read that sub even when
-- request.jwt.claims names another: the sub they read is the one checked.
SELECT auth.revoke_sessions('q-dave', now() + interval '1 minute');
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT set_config('request.jwt.claim.sub', 'q-dave', true) AS legacy_sub, auth.user_id();
SELECT auth.check_not_revoked();
ROLLBACK;
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT pg_temp.request('{"sub":"q-erin","role":"pgrst_user"}', 'GET', '/other');
SELECT set_config('request.jwt.claim.sub', 'q-dave', true) AS legacy_sub, auth.user_id();
SELECT auth.check_not_revoked();
ROLLBACK;
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT set_config('request.jwt.claim.sub', 'q-erin', true) AS legacy_sub, auth.user_id();
SELECT auth.check_not_revoked();
COMMIT;
SELECT auth.unrevoke_sessions('q-dave');
-- Anonymous requests (no sub) are not counted.
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT pg_temp.request('{"role":"pgrst_user"}', 'GET', '/todos');
SELECT count(api.pre_request()) AS anonymous_requests FROM generate_series(1, 700);
COMMIT;

-- A key configured: request.jwt.claims is ignored, and pre_request verifies the request's
-- token itself, for the request's transaction only.
\set signing_alg EdDSA
\set prelude :abs_srcdir '/sql/include/signing_key.sql'
\i :prelude
SELECT pg_temp.token('{"sub":"q-carol"}', :'signing_key') AS carol \gset
SELECT pg_temp.token('{"sub":"q-alice"}', :'signing_key') AS alice \gset
SELECT jsonb_build_object('authorization', 'Bearer ' || :'carol')::text AS carol_headers \gset
SELECT jsonb_build_object('authorization', 'Bearer ' || :'alice')::text AS alice_headers \gset
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT pg_temp.request('{"sub":"q-alice","role":"pgrst_user"}', 'GET', '/todos', :'carol_headers');
SELECT api.pre_request();
SELECT auth.user_id() AS verified_user;
SELECT count(api.pre_request()) AS requests FROM generate_series(1, 299);
SELECT remaining < 600 AS carol_counted FROM auth.write_rate_status(600, 60, 'read /todos');
COMMIT;
-- The verified session ended with the transaction.
SELECT auth.user_id() AS after_commit;
-- alice's token: her quota for /todos is the one spent above, whoever verified her sub.
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT pg_temp.request('', 'GET', '/todos', :'alice_headers');
SELECT pg_temp.requests_until_refused(5000) < 599 AS quota_already_spent;
ROLLBACK;
-- A forged token (carol's signature over alice's claims) fails the request (28000: HTTP
-- 403), leaving no session.
SELECT jsonb_build_object('authorization', 'Bearer ' || split_part(:'carol', '.', 1) || '.' ||
       split_part(:'alice', '.', 2) || '.' || split_part(:'carol', '.', 3))::text AS forged_headers \gset
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT pg_temp.request('', 'GET', '/other', :'forged_headers');
SELECT api.pre_request();
ROLLBACK;
SELECT auth.user_id() AS no_session;
-- A revoked token fails the request the same way, when the database verifies it.
SELECT auth.revoke_sessions('q-carol');
BEGIN;
SET LOCAL ROLE pgrst_user;
SELECT pg_temp.request('', 'GET', '/todos', :'carol_headers');
SELECT api.pre_request();
ROLLBACK;
SELECT auth.unrevoke_sessions('q-carol');

RESET pg_rls_auth.jwks;
DROP TABLE api.todos;
DROP FUNCTION api.pre_request();
DROP SCHEMA api;
DROP OWNED BY pgrst_user;
DROP ROLE pgrst_user;
