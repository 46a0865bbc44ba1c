-- pg_rls_auth policy script: rows that belong to one user.
--
-- Protects: public.notes (owner column of type text, for any `sub`) and public.todos (owner
--   column of type uuid, for identity providers whose `sub` is a UUID). A row can be read,
--   changed and deleted only by the user whose verified token's `sub` is its owner_id; nobody
--   can create a row for someone else or give a row away (INSERT and UPDATE have WITH CHECK).
--   One policy per command. FORCE ROW LEVEL SECURITY holds the tables' owner to the policies
--   too (a non-superuser owner sees nothing, rather than everything). owner_id is indexed: every
--   policy filters by it.
-- Assumes: the pg_rls_auth files installed (CREATE EXTENSION runs here if needed); a key
--   configured by the administrator (pg_rls_auth.jwks or pg_rls_auth.jwt_secret); clients
--   that call auth.jwt_session_init(token) and run as the NOLOGIN role `authenticated`
--   (created here if missing; grant it to the login role clients connect as). Claims used:
--   `sub` only. Run as a superuser (or as the tables' owner with CREATEROLE).
-- Idempotent: a second run changes nothing; a run against older versions of these tables
--   brings grants, indexes and policies to this definition (one transaction).
-- Adapt: rename the tables and add your columns; keep `owner_id ... DEFAULT auth.user_id()`
--   (text) or `DEFAULT auth.uid()` (uuid), its index, and the four policies. For an existing
--   table, skip CREATE TABLE. Replace `authenticated` with your clients' role. Keep the calls
--   wrapped as `(select auth.user_id())`: PostgreSQL then evaluates them once per statement
--   (an initplan) instead of once per row, and can use the index.
--   Run with: psql -v ON_ERROR_STOP=1 -f owner.sql

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

-- Owner column of type text: works for any `sub` (UUIDs, "user_123", "auth0|abc").
CREATE TABLE IF NOT EXISTS public.notes (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner_id text NOT NULL DEFAULT auth.user_id(),
  body text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS notes_owner_id_idx ON public.notes (owner_id);
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notes FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.notes TO authenticated;

DROP POLICY IF EXISTS notes_select ON public.notes;
CREATE POLICY notes_select ON public.notes FOR SELECT TO authenticated
  USING (owner_id = (SELECT auth.user_id()));
DROP POLICY IF EXISTS notes_insert ON public.notes;
CREATE POLICY notes_insert ON public.notes FOR INSERT TO authenticated
  WITH CHECK (owner_id = (SELECT auth.user_id()));
DROP POLICY IF EXISTS notes_update ON public.notes;
CREATE POLICY notes_update ON public.notes FOR UPDATE TO authenticated
  USING (owner_id = (SELECT auth.user_id()))
  WITH CHECK (owner_id = (SELECT auth.user_id()));
DROP POLICY IF EXISTS notes_delete ON public.notes;
CREATE POLICY notes_delete ON public.notes FOR DELETE TO authenticated
  USING (owner_id = (SELECT auth.user_id()));

-- Owner column of type uuid: auth.uid() is `sub` as a uuid (NULL when `sub` is not a UUID,
-- so such a user sees and creates nothing here).
CREATE TABLE IF NOT EXISTS public.todos (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner_id uuid NOT NULL DEFAULT auth.uid(),
  title text NOT NULL,
  done boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS todos_owner_id_idx ON public.todos (owner_id);
ALTER TABLE public.todos ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.todos FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.todos TO authenticated;

DROP POLICY IF EXISTS todos_select ON public.todos;
CREATE POLICY todos_select ON public.todos FOR SELECT TO authenticated
  USING (owner_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS todos_insert ON public.todos;
CREATE POLICY todos_insert ON public.todos FOR INSERT TO authenticated
  WITH CHECK (owner_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS todos_update ON public.todos;
CREATE POLICY todos_update ON public.todos FOR UPDATE TO authenticated
  USING (owner_id = (SELECT auth.uid()))
  WITH CHECK (owner_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS todos_delete ON public.todos;
CREATE POLICY todos_delete ON public.todos FOR DELETE TO authenticated
  USING (owner_id = (SELECT auth.uid()));

COMMIT;
