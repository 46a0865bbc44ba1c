-- pg_rls_auth policy script: request quotas for PostgREST (and APIs built on it, such as
-- Supabase's and Neon's Data APIs), through PostgREST's pre-request hook.
--
-- Protects: every request a signed-in client makes through PostgREST, reads and RPC calls
--   included (RLS WITH CHECK sees only writes): at most 600 reads (GET, HEAD) and 60 other
--   requests per minute, per user and route, each a burst then a steady rate (GCRA). Over the
--   limit, auth.check_write_rate raises SQLSTATE PT429 "rate limit exceeded" and PostgREST
--   answers HTTP 429 Too Many Requests, with the limiter's DETAIL and HINT in the body.
--   Requests without a user (anonymous) are not counted.
-- Sets up: api.pre_request(), which PostgREST runs at the start of every request's
--   transaction, after it has set the role and request.jwt.claims, request.method,
--   request.path and request.headers. Name it in PostgREST's configuration:
--       db-pre-request = "api.pre_request"
--   When pg_rls_auth has a key configured, request.jwt.claims is ignored, and pre_request
--   starts a transaction-local verified session from the request's Authorization header
--   (auth.jwt_session_init(token, local => true)): the database verifies the token itself,
--   and the session ends with the request's transaction, so it never reaches the next request
--   on a pooled connection. A token that does not verify fails the request (SQLSTATE 28000,
--   HTTP 403). With no key configured, the session is PostgREST's request.jwt.claims.
-- Assumes: the pg_rls_auth files installed (CREATE EXTENSION runs here if needed); a schema
--   api that PostgREST serves (db-schemas), created here if missing; PostgREST's roles have
--   USAGE on it (they need it to be served) and may execute api.pre_request (functions are
--   executable by PUBLIC unless revoked; it only limits its caller).
--   Revoked tokens (auth.revoke_sessions(), auth.revoke_token()) are refused, with or without a
--   key configured.
--   Claims used: `sub`. The key is the user's own (auth.check_write_rate(max, window, bucket)
--   keys on auth.user_id()), so a client cannot spend another user's quota; set
--   pg_rls_auth.rate_limit_keys = session to refuse explicit keys to client roles everywhere.
--   Run as a superuser or a role that may create the function in schema api.
-- Idempotent: a second run changes nothing (it does not reset anyone's quota).
-- Adapt: the limits (`600, 60` and `60, 60`: requests, window in seconds) and the buckets
--   (one per method class and route; drop the route to share one quota across routes).
--   Without preloading, the limiter keeps its state in a table and each request writes it:
--   preload the library (shared_preload_libraries) for high request rates.
--   Run with: psql -v ON_ERROR_STOP=1 -f request_quota.sql

BEGIN;
SET LOCAL client_min_messages = warning;  -- quiet "already exists, skipping" on re-runs

CREATE EXTENSION IF NOT EXISTS pg_rls_auth;
CREATE SCHEMA IF NOT EXISTS api;

CREATE OR REPLACE FUNCTION api.pre_request() RETURNS void
  LANGUAGE plpgsql VOLATILE
  SET search_path = ''
AS $$
DECLARE
  method text := coalesce(current_setting('request.method', true), '');
  route text := coalesce(current_setting('request.path', true), '');
  token text;
BEGIN
  -- No session yet although the request carries a token: pg_rls_auth has a key and ignores
  -- request.jwt.claims, so verify the token here, for this transaction only.
  IF auth.session() = 'null'::jsonb THEN
    token := substring(
      nullif(current_setting('request.headers', true), '')::json ->> 'authorization',
      '^[Bb]earer +(.+)$');
    IF token IS NOT NULL THEN
      PERFORM auth.jwt_session_init(token, local => true);
    END IF;
  END IF;
  -- A token withdrawn with auth.revoke_sessions() or auth.revoke_token() is refused here too
  -- when PostgREST verified it (no key configured): SQLSTATE 28000, HTTP 403.
  PERFORM auth.check_not_revoked();
  IF auth.user_id() IS NULL THEN
    RETURN;  -- anonymous: no user to count
  END IF;
  IF method IN ('GET', 'HEAD') THEN
    PERFORM auth.check_write_rate(600, 60, 'read ' || route);
  ELSE
    PERFORM auth.check_write_rate(60, 60, 'write ' || route);
  END IF;
END
$$;
COMMIT;
