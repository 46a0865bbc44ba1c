-- The session-keyed limiter: auth.check_write_rate(max_writes, window_seconds[, bucket]) and
-- auth.write_rate_status(max_writes, window_seconds[, bucket]) key on auth.user_id(), and
-- pg_rls_auth.rate_limit_keys = session reserves the explicit-key forms for superusers and
-- members of rls_auth_admin.
\set VERBOSITY terse
-- Every form, and how calls resolve among them.
SELECT p.oid::regprocedure AS form, pg_get_function_arguments(p.oid) AS arguments FROM pg_proc p
 WHERE p.pronamespace = 'auth'::regnamespace AND p.proname IN ('check_write_rate', 'write_rate_status')
 ORDER BY 1::text;
SET ROLE alice;
-- Without a session the session-keyed forms refuse, as for a NULL key.
SELECT auth.check_write_rate(2, 3600);
SELECT * FROM auth.write_rate_status(2, 3600);
SET request.jwt.claims = '{"sub":"sess-alice"}';
SELECT auth.check_write_rate(2, 3600) FROM generate_series(1, 2);
SELECT auth.check_write_rate(2, 3600);
-- The session's budget is the one its sub names explicitly.
SELECT allowed, remaining FROM auth.write_rate_status(2, 3600);
SELECT allowed, remaining FROM auth.write_rate_status('sess-alice', 2, 3600);
SELECT allowed, remaining FROM auth.write_rate_status(auth.user_id(), 2, 3600, 'default');
-- Buckets, positional and named.
SELECT auth.check_write_rate(1, 60, 'posts');
SELECT auth.check_write_rate(max_writes => 1, window_seconds => 60, bucket => 'posts');
SELECT auth.check_write_rate(1, 60, bucket => 'comments');
-- The explicit forms resolve as before: text, uuid, named.
SELECT auth.check_write_rate('other', 1, 60);
SELECT auth.check_write_rate('other', 1, 60, 'b');
SELECT auth.check_write_rate('0b9e9a4e-7d41-4c1e-9a3a-2f1d6c5b4a30'::uuid, 1, 60);
SELECT auth.check_write_rate(key => 'named', max_writes => 1, window_seconds => 60);
-- Another session, another budget; a session without sub has none.
SET request.jwt.claims = '{"sub":"sess-bob"}';
SELECT allowed, remaining FROM auth.write_rate_status(2, 3600);
SET request.jwt.claims = '{"role":"anon"}';
SELECT auth.check_write_rate(2, 3600);
RESET ROLE;

-- rate_limit_keys = session: client roles spend and read only their own budget.
SET pg_rls_auth.rate_limit_keys = session;
SET ROLE alice;
SET pg_rls_auth.rate_limit_keys = 'any';
SET request.jwt.claims = '{"sub":"sess-carol"}';
SELECT auth.check_write_rate('sess-alice', 10, 3600);
SELECT auth.check_write_rate(auth.user_id(), 10, 3600);
SELECT auth.check_write_rate('6f1c3a3e-9a53-4c59-8a3f-3f5e1f2b9c10'::uuid, 10, 3600);
SELECT * FROM auth.write_rate_status('sess-alice', 2, 3600);
SELECT auth.check_write_rate(10, 3600) AS own;
SELECT allowed, remaining FROM auth.write_rate_status(10, 3600);
RESET ROLE;
-- Members of rls_auth_admin (and superusers) may name keys.
SELECT auth.check_write_rate('sess-alice', 10, 3600, 'admin') AS superuser;
CREATE ROLE rls_auth_admin NOLOGIN;
GRANT rls_auth_admin TO bob;
SET ROLE bob;
SELECT auth.check_write_rate('sess-alice', 10, 3600, 'admin') AS admin_member;
RESET ROLE;
SET ROLE alice;
SELECT auth.check_write_rate('sess-alice', 10, 3600, 'admin');
RESET ROLE;
REVOKE rls_auth_admin FROM bob;
DROP ROLE rls_auth_admin;
RESET pg_rls_auth.rate_limit_keys;
RESET request.jwt.claims;
