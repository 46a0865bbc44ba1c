-- auth.check_write_rate: GCRA, both stores, the PT429 contract.
SET ROLE alice;
-- A fresh key admits max_writes at once, then refuses with PT429.
SELECT auth.check_write_rate('alice', 3, 3600) FROM generate_series(1, 3);
SELECT auth.check_write_rate('alice', 3, 3600);
\set VERBOSITY terse
-- Buckets are separate limits; so are uuid keys.
SELECT auth.check_write_rate('alice', 1, 3600, 'comments');
SELECT auth.check_write_rate('alice', 1, 3600, 'comments');
SELECT auth.check_write_rate('6f1c3a3e-9a53-4c59-8a3f-3f5e1f2b9c10'::uuid, 1, 3600);
SELECT auth.check_write_rate('6f1c3a3e-9a53-4c59-8a3f-3f5e1f2b9c10', 1, 3600);
-- Status does not consume.
SELECT allowed, remaining, round(retry_after_seconds) AS retry_after, round(reset_after_seconds) AS reset_after
  FROM auth.write_rate_status('alice', 3, 3600);
SELECT allowed, remaining, retry_after_seconds, reset_after_seconds FROM auth.write_rate_status('fresh', 5, 60);
SELECT allowed, remaining FROM auth.write_rate_status('fresh', 5, 60);
-- Bad arguments.
SELECT auth.check_write_rate(NULL::text, 1, 60);
SELECT auth.check_write_rate('k', 0, 60);
SELECT auth.check_write_rate('k', 1, -5);
SELECT auth.check_write_rate('k', NULL, 60);
SELECT auth.check_write_rate('k', 1, 60, NULL);
SELECT auth.check_write_rate(repeat('x', 2000), 1, 60);
RESET ROLE;
-- deny returns false instead of raising.
SET pg_rls_auth.rate_limit_action = deny;
SET ROLE alice;
SELECT auth.check_write_rate('alice', 3, 3600) AS denied;
RESET ROLE;
RESET pg_rls_auth.rate_limit_action;
SELECT store, slots_used >= 3 AS has_keys, slots_total > 0 AS sized FROM auth.write_rate_stats();
-- Privileged roles may reset a key.
SELECT auth.reset_write_rate('alice');
SELECT auth.reset_write_rate('alice');
SET ROLE alice;
SELECT auth.check_write_rate('alice', 3, 3600);
RESET ROLE;

-- The table store: same semantics, state in _pg_rls_auth.write_rate_state, written at commit.
SET pg_rls_auth.rate_limit_store = 'table';
SET ROLE alice;
SELECT auth.check_write_rate('alice', 3, 3600) FROM generate_series(1, 3);
SELECT auth.check_write_rate('alice', 3, 3600);
-- A rolled-back transaction leaves no trace in the table store.
BEGIN;
SELECT auth.check_write_rate('bob', 2, 3600);
ROLLBACK;
BEGIN;
SELECT auth.check_write_rate('bob', 2, 3600);
SELECT auth.check_write_rate('bob', 2, 3600);
COMMIT;
SELECT auth.check_write_rate('bob', 2, 3600);
-- Savepoints: a check in a rolled-back savepoint is forgotten with its row lock.
BEGIN;
SAVEPOINT s;
SELECT auth.check_write_rate('carol', 1, 3600);
ROLLBACK TO SAVEPOINT s;
SELECT auth.check_write_rate('carol', 1, 3600);
COMMIT;
SELECT auth.check_write_rate('carol', 1, 3600);
SELECT allowed, remaining FROM auth.write_rate_status('bob', 2, 3600);
-- Another limit on the same key: its row is in other units, decided from what it holds.
SELECT auth.check_write_rate('dave', 2, 3600);
SELECT auth.check_write_rate('dave', 4, 3600) FROM generate_series(1, 2);
SELECT allowed, remaining FROM auth.write_rate_status('dave', 4, 3600);
RESET ROLE;
-- A key's first check in a transaction writes its row at once (one update, nothing inserted,
-- at most one index read); the later checks in the transaction touch the table not at all
-- until the write-back at commit.
CREATE FUNCTION pg_temp.state_activity() RETURNS TABLE (reads bigint, inserts bigint, updates bigint)
  LANGUAGE sql AS $$
  SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0), n_tup_ins, n_tup_upd
    FROM pg_stat_xact_all_tables WHERE relid = '_pg_rls_auth.write_rate_state'::regclass $$;
SELECT auth.check_write_rate('erin', 100, 3600);
BEGIN;
SELECT * FROM pg_temp.state_activity() \gset before_
SELECT auth.check_write_rate('erin', 100, 3600);
SELECT reads - :before_reads <= 1 AS at_most_one_read, inserts - :before_inserts AS inserts,
       updates - :before_updates AS updates FROM pg_temp.state_activity();
SELECT count(*) FROM generate_series(1, 50) WHERE auth.check_write_rate('erin', 100, 3600);
SELECT reads - :before_reads <= 1 AS at_most_one_read, inserts - :before_inserts AS inserts,
       updates - :before_updates AS updates FROM pg_temp.state_activity();
COMMIT;
SELECT allowed, remaining FROM auth.write_rate_status('erin', 100, 3600);
-- A read-only transaction cannot spend, even on a key whose row exists.
BEGIN READ ONLY;
SELECT auth.check_write_rate('erin', 100, 3600);
ROLLBACK;
SELECT count(*) AS rows, min(scale) AS min_scale, max(scale) AS max_scale FROM _pg_rls_auth.write_rate_state;
SELECT store, slots_used FROM auth.write_rate_stats();
SELECT auth.reset_write_rate('bob');
SELECT count(*) AS rows FROM _pg_rls_auth.write_rate_state;
RESET pg_rls_auth.rate_limit_store;

-- The RLS scenario: WITH CHECK lets exactly 100 inserts through; the 101st is refused with
-- the limiter's own error, not a generic policy violation.
CREATE TABLE public.posts (id serial PRIMARY KEY, owner_id text NOT NULL DEFAULT auth.user_id(), body text);
ALTER TABLE public.posts ENABLE ROW LEVEL SECURITY;
CREATE POLICY posts_insert ON public.posts FOR INSERT
  WITH CHECK (owner_id = auth.user_id() AND auth.check_write_rate(auth.user_id(), 100, 3600, 'posts'));
CREATE POLICY posts_select ON public.posts FOR SELECT USING (owner_id = auth.user_id());
GRANT SELECT, INSERT ON public.posts TO alice;
GRANT USAGE ON SEQUENCE public.posts_id_seq TO alice;
SET ROLE alice;
SET request.jwt.claims = '{"sub":"poster"}';
INSERT INTO public.posts (body) SELECT 'post ' || g FROM generate_series(1, 100) g;
INSERT INTO public.posts (body) VALUES ('one too many');
SELECT count(*) FROM public.posts;
RESET request.jwt.claims;
RESET ROLE;
DROP TABLE public.posts;
