-- pg_rls_auth.hoist_session_calls: bare accessor calls in policies and queries run once per
-- execution (as an initplan), never as a constant a cached plan would keep for the next user.
-- Proven as an ordinary role, with two users re-initialised between executions.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set signing_alg ES256
\set prelude :abs_srcdir '/sql/include/signing_key.sql'
\i :prelude
SELECT pg_temp.token('{"sub":"user-3","org":"o3","path":"org"}', :'signing_key') AS user3 \gset
SELECT pg_temp.token('{"sub":"user-4","org":"o4","path":"org"}', :'signing_key') AS user4 \gset

-- Plans, with the initplan parameters' spelling made the same on every version ($0 on 15 and
-- 16, (InitPlan 1).col1 from 17).
CREATE FUNCTION pg_temp.plan(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
    RETURN NEXT regexp_replace(regexp_replace(line, ' \(returns [$0-9,]+\)', ''),
                               '\$[0-9]+|\(InitPlan [0-9]+\)\.col[0-9]+', '$p', 'g');
  END LOOP;
END $$;
CREATE FUNCTION pg_temp.initplans(query text) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM pg_temp.plan(query) l WHERE l ~ 'InitPlan'
$$;
-- How often a function ran in this transaction (counted by track_functions, in this backend:
-- callers set max_parallel_workers = 0 so no worker runs it).
CREATE FUNCTION pg_temp.calls(f regprocedure) RETURNS bigint LANGUAGE sql AS $$
  SELECT coalesce((SELECT calls FROM pg_stat_xact_user_functions WHERE funcid = f), 0)
$$;

CREATE TABLE docs (id int PRIMARY KEY, owner_id text NOT NULL, org text NOT NULL, body text);
INSERT INTO docs SELECT g, 'user-' || (g % 10), 'o' || (g % 10), 'doc ' || g FROM generate_series(1, 1000) g;
CREATE INDEX docs_owner_id ON docs (owner_id);
-- The same rows without an index: a sequential scan evaluates its filter per row.
CREATE TABLE notes AS SELECT * FROM docs;
ANALYZE docs, notes;
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON docs USING (owner_id = auth.user_id());
CREATE POLICY own ON notes USING (owner_id = auth.user_id());
CREATE ROLE hoist_app;
GRANT SELECT, UPDATE ON docs, notes TO hoist_app;
SET track_functions = 'all';
SET ROLE hoist_app;

-- The setting is the superuser's.
SHOW pg_rls_auth.hoist_session_calls;
SET pg_rls_auth.hoist_session_calls = off;

-- The bare policy: one initplan, used as the index condition; the plan names no user.
SELECT auth.jwt_session_init(:'user3');
SELECT trim(l) AS plan_lines FROM pg_temp.plan('SELECT count(*) FROM docs') l WHERE l ~ 'InitPlan|Index Cond';
SELECT count(*) AS rows_of_user3 FROM docs;

-- Once per execution, not per row: 100 rows of 1,000 scanned, auth.user_id() called once.
BEGIN;
SET LOCAL max_parallel_workers = 0;
SELECT pg_temp.calls('auth.user_id()') AS before \gset
SELECT count(*) FROM notes;
SELECT pg_temp.calls('auth.user_id()') - :before AS user_id_calls;
COMMIT;

-- Prepared statements, generic and custom plans, re-initialised with another user between
-- executions: each execution returns the current user's rows.
SET plan_cache_mode = force_generic_plan;
PREPARE generic_q AS SELECT count(*), min(owner_id), max(owner_id) FROM docs;
EXECUTE generic_q;
SELECT auth.jwt_session_init(:'user4');
EXECUTE generic_q;
SELECT count(*) = 0 AS generic_plan_names_no_user FROM pg_temp.plan('EXECUTE generic_q') l WHERE l ~ 'user-';
SELECT count(*) AS index_conditions FROM pg_temp.plan('EXECUTE generic_q') l WHERE l ~ 'Index Cond: \(owner_id = \$p\)';
SET plan_cache_mode = force_custom_plan;
PREPARE custom_q(int) AS SELECT count(*), min(owner_id), max(owner_id) FROM docs WHERE id > $1;
EXECUTE custom_q(0);
SELECT auth.jwt_session_init(:'user3');
EXECUTE custom_q(0);
SELECT count(*) = 0 AS custom_plan_names_no_user FROM pg_temp.plan('EXECUTE custom_q(0)') l WHERE l ~ 'user-';
RESET plan_cache_mode;

-- PL/pgSQL caches its plans: each call still sees the current user.
CREATE FUNCTION pg_temp.my_docs() RETURNS text LANGUAGE plpgsql AS $$
DECLARE n bigint; who text;
BEGIN
  SELECT count(*), min(owner_id) INTO n, who FROM docs;
  RETURN who || ': ' || n;
END $$;
-- A simple expression (no FROM), which PL/pgSQL evaluates without the executor: left as is.
CREATE FUNCTION pg_temp.who() RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN auth.user_id() || ' / ' || (auth.jwt() ->> 'org'); END $$;
SELECT pg_temp.my_docs(), pg_temp.who();
SELECT auth.jwt_session_init(:'user4');
SELECT pg_temp.my_docs(), pg_temp.who();
SELECT auth.jwt_session_init(:'user3');
SELECT pg_temp.my_docs(), pg_temp.who();

-- Cursors: one declared after a re-init reads the new user's rows.
BEGIN;
DECLARE c3 CURSOR FOR SELECT owner_id FROM docs ORDER BY id;
FETCH 2 FROM c3;
SELECT auth.jwt_session_init(:'user4', local => true);
DECLARE c4 CURSOR FOR SELECT owner_id FROM docs ORDER BY id;
FETCH 2 FROM c4;
COMMIT;
SELECT auth.user_id() AS after_local_session;

-- A parallel plan: workers get the leader's value.
BEGIN;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL max_parallel_workers_per_gather = 2;
SELECT count(*) > 0 AS parallel_plan FROM pg_temp.plan('SELECT count(*) FROM notes') l WHERE l ~ 'Gather';
SELECT count(*), min(owner_id), max(owner_id) FROM notes;
SELECT auth.jwt_session_init(:'user4', local => true);
SELECT count(*), min(owner_id), max(owner_id) FROM notes;
COMMIT;

-- Expressions over accessors are one initplan each; a claim named by a column stays per row.
SELECT pg_temp.initplans($$SELECT count(*) FROM notes WHERE org = auth.jwt() ->> 'org'$$) AS jwt_field_initplans;
SELECT pg_temp.initplans($$SELECT count(*) FROM notes WHERE (auth.claim('sub'))::text = owner_id$$) AS cast_claim_initplans;
SELECT count(*) FROM notes WHERE org = auth.jwt() ->> 'org';
CREATE TEMP TABLE paths AS SELECT * FROM (VALUES ('org'), ('sub'), ('nope')) v(path);
SELECT pg_temp.initplans($$SELECT count(*) FROM notes n, paths p WHERE auth.claim(p.path) = n.org$$) AS column_claim_policy_initplans;
BEGIN;
SET LOCAL max_parallel_workers = 0;
SELECT pg_temp.calls('auth.claim(text)') AS before \gset
SELECT path, auth.claim(path) FROM paths ORDER BY path;
SELECT pg_temp.calls('auth.claim(text)') - :before AS claim_calls_one_per_row;
COMMIT;

-- check_write_rate is volatile: never hoisted, it counts every row.
SELECT pg_temp.initplans($$SELECT count(*) FROM generate_series(1, 3) g WHERE auth.check_write_rate('hoist', 3, 3600, 'hoist-test')$$) AS limiter_initplans;
SELECT count(*) AS admitted FROM generate_series(1, 3) g WHERE auth.check_write_rate('hoist', 3, 3600, 'hoist-test');
-- The three rows spent the whole budget: the next check trips.
SELECT auth.check_write_rate('hoist', 3, 3600, 'hoist-test');

-- A policy through a SQL function that calls auth.user_id().
RESET ROLE;
CREATE FUNCTION public.current_owner() RETURNS text LANGUAGE sql STABLE AS 'SELECT auth.user_id()';
CREATE TABLE files (id int, owner_id text);
INSERT INTO files SELECT g, 'user-' || (g % 10) FROM generate_series(1, 100) g;
ALTER TABLE files ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON files USING (owner_id = public.current_owner());
GRANT SELECT ON files TO hoist_app;
SET ROLE hoist_app;
SET plan_cache_mode = force_generic_plan;
PREPARE files_q AS SELECT count(*), min(owner_id) FROM files;
SELECT auth.jwt_session_init(:'user3');
EXECUTE files_q;
SELECT auth.jwt_session_init(:'user4');
EXECUTE files_q;
RESET plan_cache_mode;

-- RLS on a table joined to itself.
SELECT count(*), min(a.owner_id), max(b.owner_id) FROM docs a JOIN docs b ON b.id = a.id + 10;

-- UPDATE whose USING and WITH CHECK both call accessors.
RESET ROLE;
CREATE POLICY edit ON docs AS RESTRICTIVE FOR UPDATE
  USING (org = auth.claim('org')) WITH CHECK (owner_id = auth.user_id() AND org = auth.jwt() ->> 'org');
SET ROLE hoist_app;
UPDATE docs SET body = 'edited by user-4' WHERE id IN (3, 4, 14) RETURNING id, owner_id, body;
UPDATE docs SET org = 'o3' WHERE id = 4;
UPDATE docs SET owner_id = 'user-3' WHERE id = 14;
SELECT auth.jwt_session_init(:'user3');
UPDATE docs SET body = 'edited by user-3' WHERE id IN (3, 4, 14) RETURNING id, owner_id, body;

-- Off: plans as written, one call per row.
RESET ROLE;
SET pg_rls_auth.hoist_session_calls = off;
SET ROLE hoist_app;
SELECT pg_temp.initplans('SELECT count(*) FROM docs') AS initplans_when_off;
BEGIN;
SET LOCAL max_parallel_workers = 0;
SELECT pg_temp.calls('auth.user_id()') AS before \gset
SELECT count(*) FROM notes;
SELECT pg_temp.calls('auth.user_id()') - :before >= 1000 AS user_id_called_per_row_when_off;
COMMIT;
RESET ROLE;
RESET pg_rls_auth.hoist_session_calls;
DROP TABLE docs, notes, files, paths;
DROP FUNCTION public.current_owner();
DROP FUNCTION pg_temp.my_docs(), pg_temp.who();
DROP ROLE hoist_app;
