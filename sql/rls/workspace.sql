-- pg_rls_auth policy script: tenant isolation by a JWT claim.
--
-- Protects: public.invoices, one tenant's rows per workspace. A row is visible to, and can be
--   changed or deleted by, only sessions whose verified token carries its workspace in the
--   `workspace_id` claim. INSERT and UPDATE have WITH CHECK on the same condition, so no row
--   can be created in another workspace or moved into one; a session without the claim sees
--   and writes nothing. FORCE ROW LEVEL SECURITY holds the table's owner to the policies too;
--   workspace_id is indexed, as every policy filters by it.
-- Assumes: the pg_rls_auth files installed (CREATE EXTENSION runs here if needed); a key
--   configured by the administrator (pg_rls_auth.jwks or pg_rls_auth.jwt_secret); tokens
--   whose issuer puts the user's current workspace in a `workspace_id` claim holding a UUID
--   (a claim that is not a UUID makes the statement fail with "invalid input syntax for type
--   uuid": it fails closed); clients that call auth.jwt_session_init(token) and run as the
--   NOLOGIN role `authenticated` (created here if missing). Run as a superuser (or as the
--   table's owner with CREATEROLE).
-- Idempotent: a second run changes nothing; policies are dropped and recreated in one
--   transaction.
-- Adapt: rename the table and add your columns; keep workspace_id with its DEFAULT, its index,
--   and the four policies. A claim elsewhere in the token: auth.claim('app_metadata.tenant_id')
--   (dotted paths reach into nested objects). A text tenant id: drop the ::uuid casts. The
--   claim is as fresh as the token: if access must end the moment a user leaves a workspace,
--   check membership in the database as well (see membership.sql and
--   multi_tenant_example.sql).
--   Run with: psql -v ON_ERROR_STOP=1 -f workspace.sql

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

CREATE TABLE IF NOT EXISTS public.invoices (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  workspace_id uuid NOT NULL DEFAULT (auth.claim('workspace_id'))::uuid,
  customer text NOT NULL,
  amount_cents bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS invoices_workspace_id_idx ON public.invoices (workspace_id);
ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.invoices FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.invoices TO authenticated;

DROP POLICY IF EXISTS invoices_select ON public.invoices;
CREATE POLICY invoices_select ON public.invoices FOR SELECT TO authenticated
  USING (workspace_id = (SELECT (auth.claim('workspace_id'))::uuid));
DROP POLICY IF EXISTS invoices_insert ON public.invoices;
CREATE POLICY invoices_insert ON public.invoices FOR INSERT TO authenticated
  WITH CHECK (workspace_id = (SELECT (auth.claim('workspace_id'))::uuid));
DROP POLICY IF EXISTS invoices_update ON public.invoices;
CREATE POLICY invoices_update ON public.invoices FOR UPDATE TO authenticated
  USING (workspace_id = (SELECT (auth.claim('workspace_id'))::uuid))
  WITH CHECK (workspace_id = (SELECT (auth.claim('workspace_id'))::uuid));
DROP POLICY IF EXISTS invoices_delete ON public.invoices;
CREATE POLICY invoices_delete ON public.invoices FOR DELETE TO authenticated
  USING (workspace_id = (SELECT (auth.claim('workspace_id'))::uuid));

COMMIT;
