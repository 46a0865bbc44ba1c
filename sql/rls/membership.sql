-- pg_rls_auth policy script: access through membership tables.
--
-- Protects: cloud.workspaces (each has an owner), cloud.workspace_members (who else belongs to
--   a workspace, as 'admin' or 'member') and cloud.projects (data that belongs to a workspace).
--   Rights:
--     workspaces         read: owner and members; create: anyone signed in, owning it;
--                        rename: owner and admins; delete: owner only
--     workspace_members  read: everyone in the workspace; add, change role, remove: owner and
--                        admins; a member may also remove themself (leave)
--     projects           read, create, change: everyone in the workspace (never into a
--                        workspace they are not in); delete: its creator, the owner, admins
--   Membership is read at every statement, so adding or removing a member takes effect at
--   once, whatever tokens were issued before.
--   No infinite recursion: a policy on workspace_members that queried workspace_members (as
--   "the workspaces I am a member of") would recurse. Every policy instead asks the helper
--   cloud.my_workspace_ids(), a SECURITY DEFINER function with a pinned search_path, owned by
--   the NOLOGIN role cloud_membership_reader: it may only read the two membership tables, and
--   bypasses their policies (BYPASSRLS) so it can read them without recursing. Only
--   `authenticated` may execute it. It returns the caller's workspaces once per statement
--   (`workspace_id IN (SELECT ...)` is a hashed subplan), not once per row.
--   FORCE ROW LEVEL SECURITY on every table; an index on every column a policy filters by.
-- Assumes: the pg_rls_auth files installed (CREATE EXTENSION runs here if needed); a key
--   configured by the administrator; clients that call auth.jwt_session_init(token) and run
--   as the NOLOGIN role `authenticated` (created here if missing). Claims used: `sub` only.
--   Run as a superuser (only a superuser can create a role with BYPASSRLS).
-- Idempotent: a second run changes nothing; policies are dropped and recreated in one
--   transaction.
-- Adapt: add columns freely; protect more data tables as cloud.projects is protected; more
--   membership roles: extend the CHECK on workspace_members.role and pass them to
--   cloud.my_workspace_ids('{owner,admin,...}'). Keep the helper's search_path pinned and its
--   table names schema-qualified, or a caller could put their own objects in its way.
--   multi_tenant_example.sql includes this script.
--   Run with: psql -v ON_ERROR_STOP=1 -f membership.sql

BEGIN;
SET LOCAL client_min_messages = warning;  -- quiet "already exists, skipping" on re-runs

CREATE EXTENSION IF NOT EXISTS pg_rls_auth;

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'cloud_membership_reader') THEN
    CREATE ROLE cloud_membership_reader NOLOGIN BYPASSRLS;
  END IF;
END
$$;
ALTER ROLE cloud_membership_reader NOLOGIN BYPASSRLS;

CREATE SCHEMA IF NOT EXISTS cloud;
GRANT USAGE ON SCHEMA cloud TO authenticated, cloud_membership_reader;

CREATE TABLE IF NOT EXISTS cloud.workspaces (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL,
  owner_id text NOT NULL DEFAULT auth.user_id(),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS workspaces_owner_id_idx ON cloud.workspaces (owner_id);

CREATE TABLE IF NOT EXISTS cloud.workspace_members (
  workspace_id uuid NOT NULL REFERENCES cloud.workspaces (id) ON DELETE CASCADE,
  user_id text NOT NULL,
  role text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workspace_id, user_id)          -- also the index on workspace_id
);
CREATE INDEX IF NOT EXISTS workspace_members_user_id_idx ON cloud.workspace_members (user_id);

-- The workspaces the session's user belongs to with one of `roles` ('owner' = the
-- workspace's owner_id). Runs as cloud_membership_reader, so the policies below do not apply
-- to its reads: no recursion.
CREATE OR REPLACE FUNCTION cloud.my_workspace_ids(roles text[] DEFAULT '{owner,admin,member}')
  RETURNS SETOF uuid
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = ''
AS $$
  SELECT w.id FROM cloud.workspaces AS w
   WHERE 'owner' = ANY (roles) AND w.owner_id = auth.user_id()
  UNION
  SELECT m.workspace_id FROM cloud.workspace_members AS m
   WHERE m.user_id = auth.user_id() AND m.role = ANY (roles)
$$;
GRANT SELECT ON cloud.workspaces, cloud.workspace_members TO cloud_membership_reader;
ALTER FUNCTION cloud.my_workspace_ids(text[]) OWNER TO cloud_membership_reader;
REVOKE ALL ON FUNCTION cloud.my_workspace_ids(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cloud.my_workspace_ids(text[]) TO authenticated;

ALTER TABLE cloud.workspaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE cloud.workspaces FORCE ROW LEVEL SECURITY;
-- owner_id and id are not updatable: ownership moves only through trusted code.
GRANT SELECT, INSERT, DELETE ON cloud.workspaces TO authenticated;
GRANT UPDATE (name) ON cloud.workspaces TO authenticated;

DROP POLICY IF EXISTS workspaces_select ON cloud.workspaces;
CREATE POLICY workspaces_select ON cloud.workspaces FOR SELECT TO authenticated
  USING (owner_id = (SELECT auth.user_id()) OR id IN (SELECT cloud.my_workspace_ids()));
DROP POLICY IF EXISTS workspaces_insert ON cloud.workspaces;
CREATE POLICY workspaces_insert ON cloud.workspaces FOR INSERT TO authenticated
  WITH CHECK (owner_id = (SELECT auth.user_id()));
DROP POLICY IF EXISTS workspaces_update ON cloud.workspaces;
CREATE POLICY workspaces_update ON cloud.workspaces FOR UPDATE TO authenticated
  USING (id IN (SELECT cloud.my_workspace_ids('{owner,admin}')))
  WITH CHECK (id IN (SELECT cloud.my_workspace_ids('{owner,admin}')));
DROP POLICY IF EXISTS workspaces_delete ON cloud.workspaces;
CREATE POLICY workspaces_delete ON cloud.workspaces FOR DELETE TO authenticated
  USING (owner_id = (SELECT auth.user_id()));

ALTER TABLE cloud.workspace_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE cloud.workspace_members FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, DELETE ON cloud.workspace_members TO authenticated;
GRANT UPDATE (role) ON cloud.workspace_members TO authenticated;

DROP POLICY IF EXISTS workspace_members_select ON cloud.workspace_members;
CREATE POLICY workspace_members_select ON cloud.workspace_members FOR SELECT TO authenticated
  USING (workspace_id IN (SELECT cloud.my_workspace_ids()));
DROP POLICY IF EXISTS workspace_members_insert ON cloud.workspace_members;
CREATE POLICY workspace_members_insert ON cloud.workspace_members FOR INSERT TO authenticated
  WITH CHECK (workspace_id IN (SELECT cloud.my_workspace_ids('{owner,admin}')));
DROP POLICY IF EXISTS workspace_members_update ON cloud.workspace_members;
CREATE POLICY workspace_members_update ON cloud.workspace_members FOR UPDATE TO authenticated
  USING (workspace_id IN (SELECT cloud.my_workspace_ids('{owner,admin}')))
  WITH CHECK (workspace_id IN (SELECT cloud.my_workspace_ids('{owner,admin}')));
DROP POLICY IF EXISTS workspace_members_delete ON cloud.workspace_members;
CREATE POLICY workspace_members_delete ON cloud.workspace_members FOR DELETE TO authenticated
  USING (user_id = (SELECT auth.user_id())
         OR workspace_id IN (SELECT cloud.my_workspace_ids('{owner,admin}')));

-- Data that belongs to a workspace.
CREATE TABLE IF NOT EXISTS cloud.projects (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  workspace_id uuid NOT NULL REFERENCES cloud.workspaces (id) ON DELETE CASCADE,
  name text NOT NULL,
  created_by text NOT NULL DEFAULT auth.user_id(),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS projects_workspace_id_idx ON cloud.projects (workspace_id);
CREATE INDEX IF NOT EXISTS projects_created_by_idx ON cloud.projects (created_by);
ALTER TABLE cloud.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE cloud.projects FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, DELETE ON cloud.projects TO authenticated;
GRANT UPDATE (name, workspace_id) ON cloud.projects TO authenticated;

DROP POLICY IF EXISTS projects_select ON cloud.projects;
CREATE POLICY projects_select ON cloud.projects FOR SELECT TO authenticated
  USING (workspace_id IN (SELECT cloud.my_workspace_ids()));
DROP POLICY IF EXISTS projects_insert ON cloud.projects;
CREATE POLICY projects_insert ON cloud.projects FOR INSERT TO authenticated
  WITH CHECK (workspace_id IN (SELECT cloud.my_workspace_ids())
              AND created_by = (SELECT auth.user_id()));
DROP POLICY IF EXISTS projects_update ON cloud.projects;
CREATE POLICY projects_update ON cloud.projects FOR UPDATE TO authenticated
  USING (workspace_id IN (SELECT cloud.my_workspace_ids()))
  WITH CHECK (workspace_id IN (SELECT cloud.my_workspace_ids()));
DROP POLICY IF EXISTS projects_delete ON cloud.projects;
CREATE POLICY projects_delete ON cloud.projects FOR DELETE TO authenticated
  USING ((created_by = (SELECT auth.user_id()) AND workspace_id IN (SELECT cloud.my_workspace_ids()))
         OR workspace_id IN (SELECT cloud.my_workspace_ids('{owner,admin}')));

COMMIT;
