-- sql/rls/rate_limited_insert.sql, proven as the role clients use (authenticated): the INSERT
-- policy admits exactly the limit per user, trips with PT429 "rate limit exceeded", counts per
-- row, spends nothing on refused rows, and keeps users' budgets apart.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set script :abs_srcdir '/sql/rls/rate_limited_insert.sql'
-- The script runs twice (it is idempotent); silence means it ran clean.
\set ECHO none
\i :script
\i :script
\set ECHO all
SELECT policyname, cmd, roles, qual, with_check
  FROM pg_policies WHERE schemaname = 'public' AND tablename = 'comments' ORDER BY 1;
SELECT relrowsecurity, relforcerowsecurity, pg_get_indexdef(i.indexrelid) AS author_index
  FROM pg_class c JOIN pg_index i ON i.indrelid = c.oid
 WHERE c.oid = 'public.comments'::regclass AND NOT i.indisprimary;

\set signing_alg EdDSA
\set prelude :abs_srcdir '/sql/include/signing_key.sql'
\i :prelude
CREATE FUNCTION pg_temp.login(token text) RETURNS text LANGUAGE sql AS $$
  SELECT auth.jwt_session_init(token);
  SELECT auth.user_id()
$$;
SELECT pg_temp.token('{"sub":"rate-alice"}', :'signing_key') AS alice \gset
SELECT pg_temp.token('{"sub":"rate-bob"}', :'signing_key') AS bob \gset
-- Budgets start full.
SELECT auth.reset_write_rate(k, 'comments') IS NOT NULL AS reset FROM unnest(ARRAY['rate-alice', 'rate-bob']) k;
-- What is left of the caller's budget (does not consume).
CREATE FUNCTION pg_temp.remaining() RETURNS int LANGUAGE sql AS $$
  SELECT remaining FROM auth.write_rate_status(auth.user_id(), 20, 3600, 'comments')
$$;

SET ROLE authenticated;
SELECT pg_temp.login(:'alice');
INSERT INTO public.comments (body) VALUES ('first');
SELECT pg_temp.remaining();
-- Refused rows spend nothing: the author check comes before the rate check.
INSERT INTO public.comments (author_id, body) VALUES ('rate-bob', 'in bob''s name');
SELECT pg_temp.remaining();
-- Without a session: a policy violation (not the limiter's NULL-key error), nothing spent.
SELECT auth.end_session();
INSERT INTO public.comments (body) VALUES ('anonymous');
SELECT pg_temp.login(:'alice');
-- The rest of the budget in one statement, then the limit trips with the limiter's own error.
INSERT INTO public.comments (body) SELECT 'comment ' || g FROM generate_series(2, 20) g;
SELECT pg_temp.remaining();
INSERT INTO public.comments (body) VALUES ('one too many');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- The error's detail names the limit; its hint says when to retry.
DO $$
DECLARE
  detail text;
  hint text;
BEGIN
  INSERT INTO public.comments (body) VALUES ('one too many');
EXCEPTION WHEN SQLSTATE 'PT429' THEN
  GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
  RAISE NOTICE 'detail: %', detail;
  RAISE NOTICE 'hint gives a wait: %', hint ~ '^The next write is allowed in [0-9]+ seconds\.$';
END
$$;
SELECT count(*) AS alices_comments FROM public.comments;
-- bob's budget is his own; he sees only his comments.
SELECT pg_temp.login(:'bob');
SELECT pg_temp.remaining();
INSERT INTO public.comments (body) VALUES ('bob 1') RETURNING author_id, body;
SELECT author_id, body FROM public.comments;
-- Counted per row: one 25-row INSERT cannot slip past a 20-write limit; the statement fails
-- as a whole.
INSERT INTO public.comments (body) SELECT 'bulk ' || g FROM generate_series(1, 25) g;
SELECT count(*) AS bobs_comments FROM public.comments;
-- Only administrators forgive.
SELECT auth.reset_write_rate('rate-alice', 'comments');
RESET ROLE;
SELECT auth.reset_write_rate('rate-alice', 'comments') AS forgiven;
SET ROLE authenticated;
SELECT pg_temp.login(:'alice');
SELECT pg_temp.remaining();
INSERT INTO public.comments (body) VALUES ('after the reset');
SELECT count(*) AS alices_comments FROM public.comments;
RESET ROLE;
-- With rate_limit_action = deny the limiter answers false: a generic policy violation.
SET pg_rls_auth.rate_limit_action = deny;
SET ROLE authenticated;
INSERT INTO public.comments (body) SELECT 'again ' || g FROM generate_series(1, 19) g;
SELECT pg_temp.remaining();
INSERT INTO public.comments (body) VALUES ('denied');
RESET ROLE;
RESET pg_rls_auth.rate_limit_action;
SELECT author_id, count(*) FROM public.comments GROUP BY 1 ORDER BY 1;

DROP TABLE public.comments;
DROP ROLE authenticated;
