-- sql/rls/multi_tenant_example.sql, proven the way an API server uses it: log in as
-- authenticator, SET ROLE authenticated (or anon), start a session with a token. Two users in
-- two workspaces, every command, cross-tenant reads and writes, moving a row, membership
-- changes, anon, transaction-local sessions, the rate limit, FORCE, provisioning.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set script :abs_srcdir '/sql/rls/multi_tenant_example.sql'
-- The script runs twice (it is idempotent); silence means it ran clean.
\set ECHO none
\i :script
\i :script
\set ECHO all

-- Roles: two NOLOGIN roles granted to the login role; the helper's owner bypasses RLS only.
SELECT rolname, rolcanlogin, rolinherit, rolbypassrls, rolsuper FROM pg_roles
 WHERE rolname IN ('authenticated', 'anon', 'authenticator', 'cloud_membership_reader') ORDER BY 1;
SELECT r.rolname AS granted, m.rolname AS to_role FROM pg_auth_members am
  JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
 WHERE m.rolname = 'authenticator' ORDER BY 1;
-- Every table: RLS enabled and forced.
SELECT c.oid::regclass AS "table", c.relrowsecurity, c.relforcerowsecurity FROM pg_class c
 WHERE c.oid IN ('public.documents'::regclass, 'cloud.workspaces'::regclass, 'cloud.workspace_members'::regclass)
 ORDER BY c.oid::regclass::text;
SELECT tablename, policyname, cmd, roles FROM pg_policies
 WHERE (schemaname, tablename) IN (('public', 'documents'), ('cloud', 'workspaces'), ('cloud', 'workspace_members'))
 ORDER BY 1, 2;
SELECT policyname, qual, with_check FROM pg_policies WHERE schemaname = 'public' AND tablename = 'documents' ORDER BY 1;
-- Every column a policy filters by leads an index.
WITH policy_columns AS (
  SELECT DISTINCT p.polrelid AS rel, m[1]::int2 AS attnum
    FROM pg_policy p,
         LATERAL regexp_matches(coalesce(p.polqual::text, '') || coalesce(p.polwithcheck::text, ''),
                                '\{VAR :varno \d+ :varattno (\d+)', 'g') AS m
   WHERE p.polrelid IN ('public.documents'::regclass, 'cloud.workspaces'::regclass, 'cloud.workspace_members'::regclass)
)
SELECT pc.rel::regclass AS "table", a.attname AS policy_column,
       (SELECT string_agg(i.indexrelid::regclass::text, ', ') FROM pg_index i
         WHERE i.indrelid = pc.rel AND i.indkey[0] = pc.attnum) AS leading_index
  FROM policy_columns pc JOIN pg_attribute a ON a.attrelid = pc.rel AND a.attnum = pc.attnum
 ORDER BY pc.rel::regclass::text, 2;
-- The grants: what each role may do before any policy is asked.
SELECT grantee, table_schema || '.' || table_name AS "table", string_agg(privilege_type, ', ' ORDER BY privilege_type) AS privileges
  FROM information_schema.role_table_grants
 WHERE grantee IN ('authenticated', 'anon') AND table_schema IN ('public', 'cloud')
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT grantee, table_name, string_agg(column_name, ', ' ORDER BY column_name) AS updatable_columns
  FROM information_schema.column_privileges
 WHERE grantee = 'authenticated' AND privilege_type = 'UPDATE' AND table_schema IN ('public', 'cloud')
 GROUP BY 1, 2 ORDER BY 2;

-- Keys and tokens (the private key stays here, in the test).
\set signing_alg EdDSA
\set prelude :abs_srcdir '/sql/include/signing_key.sql'
\i :prelude
CREATE FUNCTION pg_temp.login(token text) RETURNS text LANGUAGE sql AS $$
  SELECT auth.jwt_session_init(token);
  SELECT current_user || ': ' || auth.claim('name') || ' in ' || auth.claim('workspace_id')
$$;
-- alice works in workspace aaaaaaaa-…, bob in bbbbbbbb-…; bob_in_a and alice_in_b are valid
-- tokens that name the other workspace.
SELECT pg_temp.token('{"sub":"mt-alice","name":"alice","workspace_id":"aaaaaaaa-1111-4111-8111-111111111111"}', :'signing_key') AS alice \gset
SELECT pg_temp.token('{"sub":"mt-bob","name":"bob","workspace_id":"bbbbbbbb-2222-4222-8222-222222222222"}', :'signing_key') AS bob \gset
SELECT pg_temp.token('{"sub":"mt-bob","name":"bob","workspace_id":"aaaaaaaa-1111-4111-8111-111111111111"}', :'signing_key') AS bob_in_a \gset
SELECT pg_temp.token('{"sub":"mt-alice","name":"alice","workspace_id":"bbbbbbbb-2222-4222-8222-222222222222"}', :'signing_key') AS alice_in_b \gset
SELECT auth.reset_write_rate(k, 'documents') IS NOT NULL AS budgets_full FROM unnest(ARRAY['mt-alice', 'mt-bob']) k;
CREATE FUNCTION pg_temp.docs() RETURNS TABLE (workspace text, titles text) LANGUAGE sql AS $$
  SELECT w.name, string_agg(d.title, ', ' ORDER BY d.title)
    FROM public.documents d LEFT JOIN cloud.workspaces w ON w.id = d.workspace_id GROUP BY 1 ORDER BY 1
$$;

-- The API server logs in as authenticator, which has no rights of its own (NOINHERIT).
SET SESSION AUTHORIZATION authenticator;
SELECT count(*) FROM public.documents;
SET ROLE authenticated;
SELECT pg_temp.login(:'alice');
INSERT INTO cloud.workspaces (id, name) VALUES ('aaaaaaaa-1111-4111-8111-111111111111', 'Acme') RETURNING name, owner_id;
INSERT INTO public.documents (title) VALUES ('acme plan'), ('acme budget') RETURNING title, owner_id, workspace_id;
SELECT pg_temp.login(:'bob');
INSERT INTO cloud.workspaces (id, name) VALUES ('bbbbbbbb-2222-4222-8222-222222222222', 'Bolt');
INSERT INTO public.documents (title) VALUES ('bolt roadmap');
-- SELECT: each sees their own workspace's documents only.
SELECT * FROM pg_temp.docs();
SELECT pg_temp.login(:'alice');
SELECT * FROM pg_temp.docs();
-- Cross-tenant reads return nothing.
SELECT count(*) AS bolt_docs_seen_by_alice FROM public.documents WHERE workspace_id = 'bbbbbbbb-2222-4222-8222-222222222222';
SELECT count(*) AS bolt_docs_seen_by_alice FROM public.documents WHERE title = 'bolt roadmap';
-- Cross-tenant INSERT fails, and says why.
INSERT INTO public.documents (workspace_id, title) VALUES ('bbbbbbbb-2222-4222-8222-222222222222', 'planted by alice');
-- UPDATE: own workspace yes, other workspace's rows are not there; no moving a row; no
-- changing who owns it.
UPDATE public.documents SET title = 'acme plan v2' WHERE title = 'acme plan' RETURNING title;
UPDATE public.documents SET title = 'defaced' WHERE title = 'bolt roadmap' RETURNING title;
UPDATE public.documents SET workspace_id = 'bbbbbbbb-2222-4222-8222-222222222222' WHERE title = 'acme budget';
UPDATE public.documents SET owner_id = 'mt-bob' WHERE title = 'acme budget';
-- DELETE: same.
DELETE FROM public.documents WHERE title = 'bolt roadmap' RETURNING title;
DELETE FROM public.documents WHERE title = 'acme budget' RETURNING title;
-- A token naming a workspace its user does not belong to opens nothing.
SELECT pg_temp.login(:'alice_in_b');
SELECT * FROM pg_temp.docs();
INSERT INTO public.documents (title) VALUES ('planted with a token for bolt');
UPDATE public.documents SET title = 'defaced' RETURNING title;

-- Membership changes take effect at once: alice adds bob to Acme.
SELECT pg_temp.login(:'alice');
INSERT INTO cloud.workspace_members (workspace_id, user_id) VALUES ('aaaaaaaa-1111-4111-8111-111111111111', 'mt-bob');
-- bob's token for Acme now shows Acme's documents (and only those: the claim picks the
-- workspace); his token for Bolt still shows Bolt's.
SELECT pg_temp.login(:'bob_in_a');
SELECT * FROM pg_temp.docs();
INSERT INTO public.documents (title) VALUES ('bob in acme');
UPDATE public.documents SET title = 'acme plan v3' WHERE title = 'acme plan v2' RETURNING title;
-- A member deletes their own documents, not other people's.
DELETE FROM public.documents WHERE title = 'acme plan v3' RETURNING title;
DELETE FROM public.documents WHERE title = 'bob in acme' RETURNING title;
SELECT pg_temp.login(:'bob');
SELECT * FROM pg_temp.docs();
-- alice removes bob: the same token opens nothing any more.
SELECT pg_temp.login(:'alice');
DELETE FROM cloud.workspace_members WHERE user_id = 'mt-bob' RETURNING user_id;
SELECT pg_temp.login(:'bob_in_a');
SELECT * FROM pg_temp.docs();
INSERT INTO public.documents (title) VALUES ('after removal');

-- anon sees nothing, even holding alice's session, and writes nothing.
SELECT pg_temp.login(:'alice');
RESET ROLE;
SET ROLE anon;
SELECT count(*) AS anon_sees FROM public.documents;
INSERT INTO public.documents (title) VALUES ('from anon');
SELECT count(*) FROM cloud.workspaces;
SELECT auth.end_session();
SELECT count(*) AS anon_sees FROM public.documents;
RESET ROLE;

-- Behind a transaction pooler: a transaction-local session ends with its transaction, so the
-- next client on this connection inherits nothing.
SET ROLE authenticated;
BEGIN;
SELECT auth.jwt_session_init(:'alice', local => true);
SELECT count(*) AS inside_transaction FROM public.documents;
COMMIT;
SELECT count(*) AS after_commit FROM public.documents;
SELECT auth.user_id() AS session_after_commit;

-- The rate-limited insert: 100 documents per user per hour, counted per row; refused rows
-- above did not count.
SELECT pg_temp.login(:'alice');
SELECT remaining FROM auth.write_rate_status(auth.user_id(), 100, 3600, 'documents');
INSERT INTO public.documents (title) SELECT 'bulk ' || g FROM generate_series(1, 98) g;
SELECT remaining FROM auth.write_rate_status(auth.user_id(), 100, 3600, 'documents');
INSERT INTO public.documents (title) VALUES ('one too many');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS acme_documents FROM public.documents;
-- bob's budget is his own.
SELECT pg_temp.login(:'bob');
INSERT INTO public.documents (title) VALUES ('bolt notes');
SELECT * FROM pg_temp.docs();
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT w.name, count(d.*) AS documents FROM cloud.workspaces w LEFT JOIN public.documents d ON d.workspace_id = w.id
 GROUP BY 1 ORDER BY 1;

-- FORCE holds a non-superuser owner of the table.
CREATE ROLE rls_mt_table_owner NOLOGIN;
ALTER TABLE public.documents OWNER TO rls_mt_table_owner;
SET ROLE rls_mt_table_owner;
SELECT count(*) AS owner_sees FROM public.documents;
RESET ROLE;

-- Provisioning: twice is harmless; the login role has CONNECTION LIMIT 20 and owns its schema.
SELECT cloud.provision_workspace('aaaaaaaa-1111-4111-8111-111111111111');
SELECT cloud.provision_workspace('aaaaaaaa-1111-4111-8111-111111111111');
SELECT cloud.provision_workspace('bbbbbbbb-2222-4222-8222-222222222222');
SELECT rolname, rolcanlogin, rolconnlimit, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolconfig,
       shobj_description(oid, 'pg_authid') AS comment
  FROM pg_roles WHERE rolname LIKE 'ws\_%' ORDER BY 1;
SELECT nspname, pg_get_userbyid(nspowner) AS owner, obj_description(oid, 'pg_namespace') AS comment
  FROM pg_namespace WHERE nspname LIKE 'ws\_%' ORDER BY 1;
-- A different workspace whose id starts with the same 8 hex characters is refused.
SELECT cloud.provision_workspace('aaaaaaaa-9999-4999-8999-999999999999');
SELECT cloud.provision_workspace(NULL);
-- Clients may not provision.
SET ROLE authenticated;
SELECT cloud.provision_workspace('cccccccc-3333-4333-8333-333333333333');
RESET ROLE;
SELECT count(*) AS workspace_roles FROM pg_roles WHERE rolname LIKE 'ws\_%';
-- The new role logs in and lands in its schema.
\c - ws_aaaaaaaa
SELECT current_user, current_schema();
CREATE TABLE notes_of_acme (body text);
SELECT relnamespace::regnamespace AS created_in FROM pg_class WHERE relname = 'notes_of_acme';
\c - postgres
\set VERBOSITY terse

DROP SCHEMA ws_aaaaaaaa, ws_bbbbbbbb CASCADE;
DROP ROLE ws_aaaaaaaa, ws_bbbbbbbb;
DROP TABLE public.documents;
DROP SCHEMA cloud CASCADE;
DROP OWNED BY authenticated, anon, cloud_membership_reader;
DROP ROLE rls_mt_table_owner, authenticator, authenticated, anon, cloud_membership_reader;
