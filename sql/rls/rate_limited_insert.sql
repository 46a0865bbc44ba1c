-- pg_rls_auth policy script: an INSERT policy with a write-rate limit.
--
-- Protects: public.comments from floods. Each signed-in user may insert at most 20 comments
--   per hour (GCRA: a burst of 20, then one every 3 minutes), counted per row, so one
--   multi-row INSERT cannot slip past the limit. Over the limit the INSERT fails with the
--   limiter's own error, SQLSTATE PT429 "rate limit exceeded" (PostgREST answers HTTP 429),
--   with a DETAIL naming the limit and a HINT saying when the next write is allowed. Rows
--   are inserted only as oneself and read only by their author; a session without a user
--   inserts nothing. FORCE ROW LEVEL SECURITY; author_id is indexed.
-- Assumes: the pg_rls_auth files installed (CREATE EXTENSION runs here if needed; with the
--   library in shared_preload_libraries the limiter keeps its state in shared memory, else in
--   a table, same semantics); a key configured by the administrator; clients that call
--   auth.jwt_session_init(token) and run as the NOLOGIN role `authenticated` (created here if
--   missing). Claims used: `sub`. Run as a superuser (or as the table's owner with
--   CREATEROLE).
-- Idempotent: a second run changes nothing (it does not reset anyone's limit); policies are
--   dropped and recreated in one transaction.
-- Adapt: the limit is the `20, 3600` (max writes, window in seconds) and the bucket
--   'comments' (one bucket per kind of write, so limits do not share a budget). This form
--   keys on the session's own `sub` (auth.user_id()), so no client can spend another's
--   budget; to key by something else (a workspace claim, an IP your gateway puts in a
--   claim), name the key first: auth.check_write_rate(key, 20, 3600, 'comments'), and leave
--   pg_rls_auth.rate_limit_keys at `any`. Keep the order: the checks that can refuse the row come before
--   auth.check_write_rate(), so a refused row does not use up the budget (AND stops at the
--   first false). Do not wrap auth.check_write_rate() in (SELECT ...): that would run it once
--   per statement, and a multi-row INSERT would count as one write. To answer `false`
--   (a generic policy violation) instead of PT429, set pg_rls_auth.rate_limit_action = deny.
--   An administrator forgives a user with auth.reset_write_rate(user_id, 'comments').
--   Run with: psql -v ON_ERROR_STOP=1 -f rate_limited_insert.sql

BEGIN;
SET LOCAL client_min_messages = warning;  -- quiet "already exists, skipping" on re-runs

CREATE EXTENSION IF NOT EXISTS pg_rls_auth;

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN;
  END IF;
END
$$;

CREATE TABLE IF NOT EXISTS public.comments (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  author_id text NOT NULL DEFAULT auth.user_id(),
  body text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS comments_author_id_idx ON public.comments (author_id);
ALTER TABLE public.comments ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.comments FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT ON public.comments TO authenticated;

DROP POLICY IF EXISTS comments_select ON public.comments;
CREATE POLICY comments_select ON public.comments FOR SELECT TO authenticated
  USING (author_id = (SELECT auth.user_id()));
DROP POLICY IF EXISTS comments_insert ON public.comments;
CREATE POLICY comments_insert ON public.comments FOR INSERT TO authenticated
  WITH CHECK (
    (SELECT auth.user_id()) IS NOT NULL
    AND author_id = (SELECT auth.user_id())
    AND auth.check_write_rate(20, 3600, 'comments')
  );

COMMIT;
