-- sql/rls/membership.sql, proven as the role clients use (authenticated): owners, admins and
-- members of two workspaces, every command, membership changes taking effect at once, no
-- policy recursion, the helper's privileges, FORCE.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set script :abs_srcdir '/sql/rls/membership.sql'
-- The script runs twice (it is idempotent); silence means it ran clean.
\set ECHO none
\i :script
\i :script
\set ECHO all
SELECT tablename, policyname, cmd, roles, qual, with_check
  FROM pg_policies WHERE schemaname = 'cloud' ORDER BY 1, 2;
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT array_agg(pg_get_indexdef(indexrelid) ORDER BY 1) FROM pg_index WHERE indrelid = c.oid) AS indexes
  FROM pg_class c WHERE c.relnamespace = 'cloud'::regnamespace AND c.relkind = 'r' ORDER BY 1;
-- The helper: SECURITY DEFINER, search_path pinned, owned by a NOLOGIN role that may only
-- read the membership tables (bypassing their policies), executable by authenticated only.
SELECT p.oid::regprocedure AS helper, p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner) AS owner, p.proacl
  FROM pg_proc p WHERE p.oid = 'cloud.my_workspace_ids(text[])'::regprocedure;
SELECT rolname, rolcanlogin, rolbypassrls, rolsuper FROM pg_roles WHERE rolname = 'cloud_membership_reader';
SELECT table_name, privilege_type FROM information_schema.role_table_grants
 WHERE grantee = 'cloud_membership_reader' ORDER BY 1, 2;

\set signing_alg EdDSA
\set prelude :abs_srcdir '/sql/include/signing_key.sql'
\i :prelude
CREATE FUNCTION pg_temp.login(token text) RETURNS text LANGUAGE sql AS $$
  SELECT auth.jwt_session_init(token);
  SELECT auth.user_id()
$$;
-- Membership needs no claim but `sub`: the database says who belongs where.
SELECT pg_temp.token('{"sub":"user-alice"}', :'signing_key') AS alice \gset
SELECT pg_temp.token('{"sub":"user-bob"}', :'signing_key') AS bob \gset
SELECT pg_temp.token('{"sub":"user-carol"}', :'signing_key') AS carol \gset
-- What each user sees, in one query.
CREATE FUNCTION pg_temp.sees() RETURNS TABLE (workspaces text, members text, projects text) LANGUAGE sql AS $$
  SELECT (SELECT string_agg(name, ', ' ORDER BY name) FROM cloud.workspaces),
         (SELECT string_agg(user_id || ':' || role, ', ' ORDER BY user_id) FROM cloud.workspace_members),
         (SELECT string_agg(name, ', ' ORDER BY name) FROM cloud.projects)
$$;

SET ROLE authenticated;
-- Anyone signed in creates workspaces, owned by themselves only.
SELECT pg_temp.login(:'alice');
INSERT INTO cloud.workspaces (id, name) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'Alpha') RETURNING name, owner_id;
INSERT INTO cloud.workspaces (id, name, owner_id) VALUES ('aaaaaaaa-0000-4000-8000-0000000000ff', 'Alpha for bob', 'user-bob');
INSERT INTO cloud.projects (workspace_id, name) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'alpha roadmap');
SELECT pg_temp.login(:'bob');
INSERT INTO cloud.workspaces (id, name) VALUES ('bbbbbbbb-0000-4000-8000-000000000002', 'Beta');
INSERT INTO cloud.projects (workspace_id, name) VALUES ('bbbbbbbb-0000-4000-8000-000000000002', 'beta launch');
SELECT * FROM pg_temp.sees();
-- Cross-workspace: bob cannot read, plant, join or change anything in Alpha.
SELECT count(*) AS alpha_projects_seen_by_bob FROM cloud.projects WHERE workspace_id = 'aaaaaaaa-0000-4000-8000-000000000001';
INSERT INTO cloud.projects (workspace_id, name) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'planted by bob');
INSERT INTO cloud.workspace_members (workspace_id, user_id, role) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'user-bob', 'admin');
UPDATE cloud.workspaces SET name = 'Owned' WHERE id = 'aaaaaaaa-0000-4000-8000-000000000001' RETURNING name;
UPDATE cloud.projects SET workspace_id = 'bbbbbbbb-0000-4000-8000-000000000002' WHERE name = 'alpha roadmap' RETURNING name;
DELETE FROM cloud.projects WHERE name = 'alpha roadmap' RETURNING name;
DELETE FROM cloud.workspaces WHERE id = 'aaaaaaaa-0000-4000-8000-000000000001' RETURNING name;
-- Nor move his own project into Alpha.
UPDATE cloud.projects SET workspace_id = 'aaaaaaaa-0000-4000-8000-000000000001' WHERE name = 'beta launch';
-- Owner and member columns are not for clients to change.
UPDATE cloud.workspaces SET owner_id = 'user-carol';
SELECT pg_temp.login(:'alice');
SELECT * FROM pg_temp.sees();
-- carol belongs nowhere yet.
SELECT pg_temp.login(:'carol');
SELECT * FROM pg_temp.sees();

-- Membership changes take effect at once, with the same tokens.
SELECT pg_temp.login(:'alice');
INSERT INTO cloud.workspace_members (workspace_id, user_id) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'user-carol');
SELECT pg_temp.login(:'carol');
SELECT * FROM pg_temp.sees();
SELECT * FROM cloud.my_workspace_ids();
-- A member works with projects, but does not manage the workspace.
INSERT INTO cloud.projects (workspace_id, name) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'carol notes');
UPDATE cloud.projects SET name = 'alpha roadmap v2' WHERE name = 'alpha roadmap' RETURNING name;
UPDATE cloud.projects SET workspace_id = 'bbbbbbbb-0000-4000-8000-000000000002' WHERE name = 'carol notes';
DELETE FROM cloud.projects WHERE name = 'alpha roadmap v2' RETURNING name;
UPDATE cloud.workspaces SET name = 'Carol''s' RETURNING name;
INSERT INTO cloud.workspace_members (workspace_id, user_id) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'user-bob');
UPDATE cloud.workspace_members SET role = 'admin' WHERE user_id = 'user-carol' RETURNING role;
-- A project cannot be created in someone's name.
INSERT INTO cloud.projects (workspace_id, name, created_by) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'forged', 'user-alice');
-- The owner promotes carol to admin: now she renames the workspace and adds bob.
SELECT pg_temp.login(:'alice');
UPDATE cloud.workspace_members SET role = 'admin' WHERE user_id = 'user-carol' RETURNING user_id, role;
SELECT pg_temp.login(:'carol');
UPDATE cloud.workspaces SET name = 'Alpha (renamed by carol)' RETURNING name;
INSERT INTO cloud.workspace_members (workspace_id, user_id) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'user-bob') RETURNING user_id, role;
-- An admin still cannot delete the workspace: only its owner can.
DELETE FROM cloud.workspaces RETURNING name;
-- bob now sees both workspaces, and only Alpha's data besides his own.
SELECT pg_temp.login(:'bob');
SELECT * FROM pg_temp.sees();
-- The owner removes bob: same session, same token, Alpha is gone for him.
SELECT pg_temp.login(:'alice');
DELETE FROM cloud.workspace_members WHERE user_id = 'user-bob' RETURNING user_id;
SELECT pg_temp.login(:'bob');
SELECT * FROM pg_temp.sees();
SELECT count(*) AS alpha_projects_seen_by_bob FROM cloud.projects WHERE workspace_id = 'aaaaaaaa-0000-4000-8000-000000000001';
-- A member may leave.
SELECT pg_temp.login(:'carol');
DELETE FROM cloud.workspace_members WHERE user_id = 'user-carol' RETURNING user_id;
SELECT * FROM pg_temp.sees();
-- Without a session: nothing.
SELECT auth.end_session();
SELECT * FROM pg_temp.sees();
RESET ROLE;

-- Why the helper: a policy that reads its own table recurses.
CREATE TABLE cloud.naive_members (workspace_id uuid, user_id text);
ALTER TABLE cloud.naive_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY naive_select ON cloud.naive_members FOR SELECT TO authenticated
  USING (workspace_id IN (SELECT m.workspace_id FROM cloud.naive_members m WHERE m.user_id = (SELECT auth.user_id())));
GRANT SELECT ON cloud.naive_members TO authenticated;
SET ROLE authenticated;
SELECT pg_temp.login(:'alice');
SELECT count(*) FROM cloud.naive_members;
RESET ROLE;
DROP TABLE cloud.naive_members;

-- Only authenticated may execute the helper.
CREATE ROLE rls_membership_outsider NOLOGIN;
GRANT USAGE ON SCHEMA cloud TO rls_membership_outsider;
SET ROLE rls_membership_outsider;
SELECT * FROM cloud.my_workspace_ids();
RESET ROLE;

-- FORCE holds a non-superuser owner of the tables; the helper keeps working for clients
-- because its owner, not the tables' owner, reads them (and bypasses RLS to do so).
CREATE ROLE rls_membership_table_owner NOLOGIN;
GRANT USAGE ON SCHEMA cloud TO rls_membership_table_owner;
ALTER TABLE cloud.workspaces OWNER TO rls_membership_table_owner;
ALTER TABLE cloud.workspace_members OWNER TO rls_membership_table_owner;
ALTER TABLE cloud.projects OWNER TO rls_membership_table_owner;
SET ROLE rls_membership_table_owner;
SELECT pg_temp.login(:'alice');
SELECT count(*) AS owner_sees_workspaces FROM cloud.workspaces;
SELECT count(*) AS owner_sees_projects FROM cloud.projects;
RESET ROLE;
SET ROLE authenticated;
SELECT pg_temp.login(:'alice');
SELECT * FROM pg_temp.sees();

-- The owner deletes the workspace: its members and projects go with it.
INSERT INTO cloud.workspace_members (workspace_id, user_id) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'user-bob');
SELECT * FROM pg_temp.sees();
DELETE FROM cloud.workspaces WHERE id = 'aaaaaaaa-0000-4000-8000-000000000001' RETURNING name;
SELECT * FROM pg_temp.sees();
RESET ROLE;
SELECT (SELECT string_agg(name, ', ') FROM cloud.workspaces) AS workspaces_left,
       (SELECT count(*) FROM cloud.workspace_members) AS members_left,
       (SELECT string_agg(name, ', ') FROM cloud.projects) AS projects_left;

DROP SCHEMA cloud CASCADE;
DROP OWNED BY rls_membership_outsider, rls_membership_table_owner, cloud_membership_reader, authenticated;
DROP ROLE rls_membership_outsider, rls_membership_table_owner, cloud_membership_reader, authenticated;
