-- pg_rls_auth policy script: a multi-tenant application, the whole picture in one run.
--
-- Protects: public.documents, the tenants' data, and what membership.sql (included, so keep
--   the two files together) protects: cloud.workspaces, cloud.workspace_members and its
--   example table cloud.projects. Sets up:
--   1. Roles. `authenticated` (signed-in clients) and `anon` (clients without a token) are
--      NOLOGIN and granted to the login role `authenticator`, which the API server or pooler
--      connects as (NOINHERIT: it has no rights of its own until it runs SET ROLE
--      authenticated / anon). Give authenticator a password or certificate yourself.
--   2. Grants: only what the policies need. anon may SELECT public.documents (as API
--      gateways usually grant) but no policy is for anon, so it reads no rows.
--   3. public.documents (id, workspace_id uuid, owner_id, title, created_at), isolated by
--      workspace: a session sees and writes only documents of the workspace named by its
--      token's `workspace_id` claim, and only while its user is the owner or a member of that
--      workspace in cloud.workspace_members (so removing a member ends their access at once,
--      even with a token that still names the workspace). WITH CHECK on INSERT and UPDATE: no
--      document is created in, or moved into, another workspace. Inserts are rate-limited:
--      100 documents per user per hour (PT429 "rate limit exceeded" beyond). Any member may
--      rename a document; its owner, the workspace's owner and admins may delete it.
--   4. membership.sql: cloud.workspaces / cloud.workspace_members with owner and member rights
--      and the SECURITY DEFINER helper cloud.my_workspace_ids() (pinned search_path,
--      executable only by authenticated), so no policy recurses.
--   5. FORCE ROW LEVEL SECURITY on every table and an index on every column a policy filters
--      by (documents.workspace_id, documents.owner_id, workspaces.owner_id,
--      workspace_members.user_id; workspace_members.workspace_id leads its primary key).
--   6. cloud.provision_workspace(workspace_id uuid): creates schema ws_<first 8 hex chars of
--      the id> and a login role of the same name owning it, with CONNECTION LIMIT 20 and its
--      schema as search_path. Idempotent (a second call only re-applies the settings); it
--      refuses a workspace whose 8 characters are already another workspace's. Executable
--      only by whom you grant it to (revoked from PUBLIC); it needs a superuser (it creates
--      roles and their schemas). Set the new role's password yourself.
-- Assumes: the pg_rls_auth files installed (the extension is created here if missing); a key
--   configured by the administrator (pg_rls_auth.jwks or pg_rls_auth.jwt_secret); tokens with
--   `sub` and `workspace_id` (a UUID) claims; clients that connect as authenticator, run
--   SET ROLE authenticated and auth.jwt_session_init(token) (with `local => true` at the
--   start of every transaction behind a transaction pooler). Run as a superuser.
-- Idempotent: a second run changes nothing; policies are dropped and recreated in one
--   transaction.
-- Adapt: rename documents / add columns; the limit is `100, 3600` in bucket 'documents';
--   more member roles: see membership.sql. The parts are independent: drop the claim check
--   from the documents policies to let a user see all their workspaces at once, or the
--   membership check to trust the claim alone (workspace.sql).
--   Run with: psql -v ON_ERROR_STOP=1 -f multi_tenant_example.sql (from any directory: psql
--   finds membership.sql beside it)

-- Membership: cloud.workspaces, cloud.workspace_members, the helper cloud.my_workspace_ids()
-- and its example data table cloud.projects, in their own transaction.
\ir membership.sql

BEGIN;
SET LOCAL client_min_messages = warning;  -- quiet "already exists, skipping" on re-runs

-- Roles (membership.sql, included above, made authenticated and cloud_membership_reader).
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'authenticator') THEN
    CREATE ROLE authenticator LOGIN NOINHERIT;
  END IF;
END
$$;
GRANT authenticated, anon TO authenticator;

-- The tenants' data.
CREATE TABLE IF NOT EXISTS public.documents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL DEFAULT (auth.claim('workspace_id'))::uuid
    REFERENCES cloud.workspaces (id) ON DELETE CASCADE,
  owner_id text NOT NULL DEFAULT auth.user_id(),
  title text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS documents_workspace_id_idx ON public.documents (workspace_id);
CREATE INDEX IF NOT EXISTS documents_owner_id_idx ON public.documents (owner_id);
ALTER TABLE public.documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.documents FORCE ROW LEVEL SECURITY;
-- Grants. owner_id and id are not updatable; workspace_id is, so that moving a document is
-- refused by the policy (with its error) rather than by a missing privilege.
GRANT SELECT, INSERT, DELETE ON public.documents TO authenticated;
GRANT UPDATE (title, workspace_id) ON public.documents TO authenticated;
GRANT SELECT ON public.documents TO anon;

-- "In the workspace": the token names it, and the user is its owner or a member.
DROP POLICY IF EXISTS documents_select ON public.documents;
CREATE POLICY documents_select ON public.documents FOR SELECT TO authenticated
  USING (workspace_id = (SELECT (auth.claim('workspace_id'))::uuid)
         AND workspace_id IN (SELECT cloud.my_workspace_ids()));
DROP POLICY IF EXISTS documents_insert ON public.documents;
CREATE POLICY documents_insert ON public.documents FOR INSERT TO authenticated
  WITH CHECK (
    (SELECT auth.user_id()) IS NOT NULL
    AND owner_id = (SELECT auth.user_id())
    AND workspace_id = (SELECT (auth.claim('workspace_id'))::uuid)
    AND workspace_id IN (SELECT cloud.my_workspace_ids())
    AND auth.check_write_rate(100, 3600, 'documents')  -- last: per row
  );
DROP POLICY IF EXISTS documents_update ON public.documents;
CREATE POLICY documents_update ON public.documents FOR UPDATE TO authenticated
  USING (workspace_id = (SELECT (auth.claim('workspace_id'))::uuid)
         AND workspace_id IN (SELECT cloud.my_workspace_ids()))
  WITH CHECK (workspace_id = (SELECT (auth.claim('workspace_id'))::uuid)
              AND workspace_id IN (SELECT cloud.my_workspace_ids()));
DROP POLICY IF EXISTS documents_delete ON public.documents;
CREATE POLICY documents_delete ON public.documents FOR DELETE TO authenticated
  USING (workspace_id = (SELECT (auth.claim('workspace_id'))::uuid)
         AND workspace_id IN (SELECT cloud.my_workspace_ids())
         AND (owner_id = (SELECT auth.user_id())
              OR workspace_id IN (SELECT cloud.my_workspace_ids('{owner,admin}'))));

-- Per-workspace schema and login role.
CREATE OR REPLACE FUNCTION cloud.provision_workspace(workspace_id uuid)
  RETURNS text
  LANGUAGE plpgsql
  SET search_path = ''
AS $$
DECLARE
  ws_name text := 'ws_' || left(replace(workspace_id::text, '-', ''), 8);
  label text := 'workspace ' || workspace_id::text;
  schema_label text;
  role_label text;
  schema_exists boolean;
  role_exists boolean;
BEGIN
  IF workspace_id IS NULL THEN
    RAISE EXCEPTION 'workspace_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  -- Concurrent calls for one name queue here instead of failing on a duplicate.
  PERFORM pg_advisory_xact_lock(hashtext('cloud.provision_workspace'), hashtext(ws_name));
  SELECT true, obj_description(n.oid, 'pg_namespace') INTO schema_exists, schema_label
    FROM pg_namespace AS n WHERE n.nspname = ws_name;
  SELECT true, shobj_description(r.oid, 'pg_authid') INTO role_exists, role_label
    FROM pg_roles AS r WHERE r.rolname = ws_name;
  -- The name keeps 32 bits of the id: never hand one workspace's schema or role to another.
  IF schema_exists AND schema_label IS DISTINCT FROM label
     OR role_exists AND role_label IS DISTINCT FROM label THEN
    RAISE EXCEPTION '% already exists and does not belong to workspace %', ws_name, workspace_id
      USING ERRCODE = 'duplicate_object',
            HINT = 'Two workspace ids share their first 8 hex characters; provision this one by hand.';
  END IF;
  IF role_exists THEN
    EXECUTE format('ALTER ROLE %I LOGIN CONNECTION LIMIT 20', ws_name);
  ELSE
    EXECUTE format('CREATE ROLE %I LOGIN CONNECTION LIMIT 20', ws_name);
    EXECUTE format('COMMENT ON ROLE %I IS %L', ws_name, label);
  END IF;
  IF NOT coalesce(schema_exists, false) THEN
    EXECUTE format('CREATE SCHEMA %I AUTHORIZATION %I', ws_name, ws_name);
    EXECUTE format('COMMENT ON SCHEMA %I IS %L', ws_name, label);
  END IF;
  EXECUTE format('ALTER ROLE %I SET search_path = %I', ws_name, ws_name);
  RETURN ws_name;
END
$$;
REVOKE ALL ON FUNCTION cloud.provision_workspace(uuid) FROM PUBLIC;

COMMIT;
