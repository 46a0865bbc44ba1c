-- auth.lint(): each check fires on a case built for it and stays silent on its safe twin; the
-- policy scripts in sql/rls/ pass with no error or warning.
\set VERBOSITY terse
CREATE SCHEMA lint;
GRANT USAGE ON SCHEMA lint TO PUBLIC;
CREATE ROLE lint_owner NOLOGIN;
-- rls_disabled: a client role may read it, RLS off. Silent: no client role has privileges.
CREATE TABLE lint.open_table (id int);
GRANT SELECT ON lint.open_table TO alice;
CREATE TABLE lint.private_table (id int);
-- rls_enabled_no_policy (info). Silent: RLS on with a policy.
CREATE TABLE lint.no_policy (id int);
ALTER TABLE lint.no_policy ENABLE ROW LEVEL SECURITY;
-- multiple_permissive_policies: two permissive SELECT policies for alice. Silent: one per command.
CREATE TABLE lint.docs (id int, owner_id text, team text, body text);
ALTER TABLE lint.docs ENABLE ROW LEVEL SECURITY;
CREATE INDEX ON lint.docs (owner_id);
CREATE POLICY own ON lint.docs FOR SELECT TO alice USING (owner_id = auth.user_id());
CREATE POLICY team ON lint.docs FOR SELECT TO alice USING (team = auth.claim('team'));
CREATE POLICY add ON lint.docs FOR INSERT TO alice WITH CHECK (owner_id = auth.user_id());
GRANT SELECT, INSERT ON lint.docs TO alice;
-- policy_column_without_index: `team` has no index (the wrapped form is found too); `owner_id` has one.
CREATE POLICY team_wrapped ON lint.docs FOR UPDATE TO bob USING (team = (SELECT auth.claim('team')));
-- policy_always_true: a write policy that passes any row. Silent: USING (true) for reads.
CREATE TABLE lint.notes (id int, owner_id uuid);
ALTER TABLE lint.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY anyone_writes ON lint.notes FOR INSERT TO alice WITH CHECK (true);
CREATE POLICY anyone_reads ON lint.notes FOR SELECT TO alice USING (true);
-- anonymous_disjunction: `auth.uid() IS NULL OR ...`. Silent: IS NOT NULL AND, and a
-- look-alike uid() that is not the extension's.
CREATE FUNCTION lint.uid() RETURNS uuid LANGUAGE sql STABLE AS 'SELECT NULL::uuid';
CREATE TABLE lint.posts (id int, owner_id uuid);
CREATE INDEX ON lint.posts (owner_id);
ALTER TABLE lint.posts ENABLE ROW LEVEL SECURITY;
CREATE POLICY open_to_anon ON lint.posts FOR SELECT TO alice USING (auth.uid() IS NULL OR owner_id = auth.uid());
CREATE POLICY signed_in ON lint.posts FOR UPDATE TO alice USING (auth.uid() IS NOT NULL AND owner_id = auth.uid());
CREATE POLICY look_alike ON lint.posts FOR DELETE TO alice USING (lint.uid() IS NULL OR owner_id = lint.uid());
-- user_editable_claim: user_metadata, through jwt() and claim(). Silent: app_metadata.
CREATE TABLE lint.admin_only (id int);
ALTER TABLE lint.admin_only ENABLE ROW LEVEL SECURITY;
CREATE POLICY by_user_metadata ON lint.admin_only FOR SELECT TO alice USING ((auth.jwt() -> 'user_metadata' ->> 'role') = 'admin');
CREATE POLICY by_claim_path ON lint.admin_only FOR DELETE TO alice USING (auth.claim('user_metadata.role') = 'admin');
CREATE POLICY by_app_metadata ON lint.admin_only FOR UPDATE TO alice USING ((auth.jwt() -> 'app_metadata' ->> 'role') = 'admin');
-- rate_limit_in_subquery: counts once per statement. Silent: the bare call counts per row.
CREATE TABLE lint.comments (id int);
ALTER TABLE lint.comments ENABLE ROW LEVEL SECURITY;
CREATE POLICY limited_once ON lint.comments FOR INSERT TO alice WITH CHECK ((SELECT auth.check_write_rate(10, 60)));
CREATE POLICY limited_per_row ON lint.comments FOR INSERT TO bob WITH CHECK (auth.check_write_rate(10, 60));
-- view_bypasses_rls: a view over docs owned by the superuser, readable by alice. Silent: security_invoker.
CREATE VIEW lint.docs_view AS SELECT id, body FROM lint.docs;
CREATE VIEW lint.docs_invoker WITH (security_invoker = true) AS SELECT id, body FROM lint.docs;
GRANT SELECT ON lint.docs_view, lint.docs_invoker TO alice;
-- security_definer_search_path: callable by PUBLIC, search_path not pinned. Silent: pinned, or not callable.
CREATE FUNCTION lint.definer_open() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
CREATE FUNCTION lint.definer_pinned() RETURNS int LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS 'SELECT 1';
CREATE FUNCTION lint.definer_private() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
REVOKE EXECUTE ON FUNCTION lint.definer_private() FROM PUBLIC;
-- owner_not_forced (info): an ordinary role owns it. Silent: FORCE.
CREATE TABLE lint.owned (id int);
ALTER TABLE lint.owned ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON lint.owned FOR SELECT TO alice USING (true);
ALTER TABLE lint.owned OWNER TO lint_owner;
CREATE TABLE lint.owned_forced (id int);
ALTER TABLE lint.owned_forced ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY p ON lint.owned_forced FOR SELECT TO alice USING (true);
ALTER TABLE lint.owned_forced OWNER TO lint_owner;

-- Every finding on these objects, as any role sees them (the catalogs are readable by all).
SET ROLE alice;
SELECT severity, code, object, detail, fix FROM auth.lint()
 WHERE object LIKE 'lint.%' OR object LIKE '% ON lint.%' ORDER BY 1, 2, 3, 4;
RESET ROLE;

-- A client role plants operators for the exact types lint's queries compare (oid with an
-- integer, a regclass, a name) in a schema on a superuser's search_path, ahead of pg_catalog.
-- Lint runs none of them (each would raise, naming the role it ran as), and finds the same.
SELECT count(*) AS findings FROM auth.lint() \gset
CREATE SCHEMA trap AUTHORIZATION alice;
SET ROLE alice;
CREATE FUNCTION trap.note(anyelement, anyelement) RETURNS boolean LANGUAGE plpgsql AS
  $$BEGIN RAISE EXCEPTION 'a planted operator ran as %', current_user; END$$;
CREATE FUNCTION trap.oid_int(oid, int4) RETURNS boolean LANGUAGE sql AS 'SELECT trap.note($1, $2::oid)';
CREATE FUNCTION trap.oid_regclass(oid, regclass) RETURNS boolean LANGUAGE sql AS 'SELECT trap.note($1, $2::oid)';
CREATE FUNCTION trap.name_name(name, name) RETURNS boolean LANGUAGE sql AS 'SELECT trap.note($1, $2)';
CREATE OPERATOR trap.= (LEFTARG = oid, RIGHTARG = int4, FUNCTION = trap.oid_int);
CREATE OPERATOR trap.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = trap.oid_regclass);
CREATE OPERATOR trap.= (LEFTARG = name, RIGHTARG = name, FUNCTION = trap.name_name);
RESET ROLE;
SET search_path = trap, pg_catalog;
SELECT count(*) = :findings AS same_findings FROM auth.lint();
RESET search_path;
DROP SCHEMA trap CASCADE;

-- A client role writes policies as deep as it likes, on its own table: lint looks at each
-- subtree once (a chain of n operators once took 2^n steps, and nothing could cancel it) and
-- stays cancellable; below 200 levels it looks at everything. Deep chains on a column, under
-- IS NULL in an OR, and around an accessor.
CREATE SCHEMA deep AUTHORIZATION alice;
SET ROLE alice;
CREATE TABLE deep.t (owner text, n int);
ALTER TABLE deep.t ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
DO $$
BEGIN
  EXECUTE format('CREATE POLICY chain ON deep.t USING ((n %s) = 0 AND owner = auth.user_id())',
                 repeat('+ 1 ', 1000));
  EXECUTE format('CREATE POLICY shallow ON deep.t USING ((n %s) = 0 AND owner = auth.user_id())',
                 repeat('+ 1 ', 60));
  EXECUTE format('CREATE POLICY nulls ON deep.t USING (auth.user_id() IS NULL OR (%s auth.user_id() %s) IS NULL)',
                 repeat('(', 1000), repeat('|| ''x'')', 1000));
END $$;
-- A query under them plans and runs as without the planner hook, which hoists session calls
-- no deeper than 100 levels (deeper, its own recursion once hit the stack limit).
SELECT count(*) FROM deep.t;
RESET ROLE;
SET statement_timeout = '20s';
SELECT severity, code, object FROM auth.lint() WHERE object LIKE '% ON deep.%' ORDER BY 1, 2, 3;
RESET statement_timeout;
DROP SCHEMA deep CASCADE;

DROP SCHEMA lint CASCADE;
DROP ROLE lint_owner;

-- The policy scripts: no error or warning on what they create.
\getenv abs_srcdir PG_ABS_SRCDIR
\set ECHO none
\set script :abs_srcdir '/sql/rls/owner.sql'
\i :script
\set script :abs_srcdir '/sql/rls/workspace.sql'
\i :script
\set script :abs_srcdir '/sql/rls/membership.sql'
\i :script
\set script :abs_srcdir '/sql/rls/rate_limited_insert.sql'
\i :script
\set script :abs_srcdir '/sql/rls/multi_tenant_example.sql'
\i :script
\set ECHO all
SELECT severity, code, object, detail FROM auth.lint() WHERE severity IN ('error', 'warning') ORDER BY 1, 2, 3;
