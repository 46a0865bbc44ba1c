-- sql/rls/workspace.sql, proven as the role clients use (authenticated): two workspaces, every
-- command, cross-tenant reads and writes, moving a row, tokens without or with a bad claim,
-- FORCE.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set script :abs_srcdir '/sql/rls/workspace.sql'
-- The script runs twice (it is idempotent); silence means it ran clean.
\set ECHO none
\i :script
\i :script
\set ECHO all
SELECT policyname, cmd, roles, qual, with_check
  FROM pg_policies WHERE schemaname = 'public' AND tablename = 'invoices' ORDER BY 1;
SELECT relrowsecurity, relforcerowsecurity, indexrelid::regclass AS index, pg_get_indexdef(indexrelid) AS definition
  FROM pg_class c JOIN pg_index i ON i.indrelid = c.oid
 WHERE c.oid = 'public.invoices'::regclass ORDER BY 3;

\set signing_alg ES256
\set prelude :abs_srcdir '/sql/include/signing_key.sql'
\i :prelude
CREATE FUNCTION pg_temp.login(token text) RETURNS text LANGUAGE sql AS $$
  SELECT auth.jwt_session_init(token);
  SELECT auth.claim('name') || ' in ' || coalesce(auth.claim('workspace_id'), 'no workspace')
$$;
-- alice and carol work in workspace aaaaaaaa-…, bob in bbbbbbbb-….
SELECT pg_temp.token('{"sub":"user-alice","name":"alice","workspace_id":"aaaaaaaa-0000-4000-8000-000000000001"}', :'signing_key') AS alice \gset
SELECT pg_temp.token('{"sub":"user-carol","name":"carol","workspace_id":"aaaaaaaa-0000-4000-8000-000000000001"}', :'signing_key') AS carol \gset
SELECT pg_temp.token('{"sub":"user-bob","name":"bob","workspace_id":"bbbbbbbb-0000-4000-8000-000000000002"}', :'signing_key') AS bob \gset
SELECT pg_temp.token('{"sub":"user-dave","name":"dave"}', :'signing_key') AS no_workspace \gset
SELECT pg_temp.token('{"sub":"user-erin","name":"erin","workspace_id":"not-a-uuid"}', :'signing_key') AS bad_workspace \gset

SET ROLE authenticated;
-- INSERT into one's own workspace: workspace_id comes from the token.
SELECT pg_temp.login(:'alice');
INSERT INTO public.invoices (customer, amount_cents) VALUES ('Acme', 1000), ('Globex', 2000);
SELECT pg_temp.login(:'bob');
INSERT INTO public.invoices (customer, amount_cents) VALUES ('Initech', 3000);
-- Naming one's own workspace explicitly is fine too.
INSERT INTO public.invoices (workspace_id, customer) VALUES ('bbbbbbbb-0000-4000-8000-000000000002', 'Hooli');
-- SELECT: each workspace sees its own rows; carol shares alice's workspace.
SELECT customer, amount_cents, workspace_id FROM public.invoices ORDER BY customer;
SELECT pg_temp.login(:'carol');
SELECT customer, amount_cents, workspace_id FROM public.invoices ORDER BY customer;
SELECT pg_temp.login(:'alice');
SELECT customer, amount_cents, workspace_id FROM public.invoices ORDER BY customer;
-- Cross-tenant reads return nothing, even when asked for by workspace or by name.
SELECT count(*) AS seen_in_b FROM public.invoices WHERE workspace_id = 'bbbbbbbb-0000-4000-8000-000000000002';
SELECT count(*) AS initech_seen FROM public.invoices WHERE customer = 'Initech';
-- Cross-tenant INSERT fails, and says why.
INSERT INTO public.invoices (workspace_id, customer) VALUES ('bbbbbbbb-0000-4000-8000-000000000002', 'planted by alice');
-- UPDATE: own rows change; the other workspace's rows are not there to change.
UPDATE public.invoices SET amount_cents = 1500 WHERE customer = 'Acme' RETURNING customer, amount_cents;
UPDATE public.invoices SET amount_cents = 0 WHERE customer = 'Initech' RETURNING customer;
UPDATE public.invoices SET amount_cents = 0 RETURNING customer;
-- A row cannot be moved into another workspace (nor into none).
UPDATE public.invoices SET workspace_id = 'bbbbbbbb-0000-4000-8000-000000000002' WHERE customer = 'Globex';
UPDATE public.invoices SET workspace_id = 'cccccccc-0000-4000-8000-000000000003' WHERE customer = 'Globex';
-- DELETE: the other workspace's rows are not there to delete; own rows are.
DELETE FROM public.invoices WHERE customer IN ('Initech', 'Hooli') RETURNING customer;
DELETE FROM public.invoices WHERE customer = 'Globex' RETURNING customer;
-- bob still has both of his, untouched.
SELECT pg_temp.login(:'bob');
SELECT customer, amount_cents FROM public.invoices ORDER BY customer;
-- A token without the claim: nothing to read or write.
SELECT pg_temp.login(:'no_workspace');
SELECT count(*) AS seen_without_claim FROM public.invoices;
INSERT INTO public.invoices (customer) VALUES ('no workspace');
INSERT INTO public.invoices (workspace_id, customer) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'no workspace');
-- A claim that is not a UUID fails closed, loudly.
SELECT pg_temp.login(:'bad_workspace');
SELECT count(*) FROM public.invoices;
-- No session at all: nothing.
SELECT auth.end_session();
SELECT count(*) AS seen_without_session FROM public.invoices;
RESET ROLE;
SELECT workspace_id, customer, amount_cents FROM public.invoices ORDER BY id;

-- FORCE holds a non-superuser table owner to the policies: it is not authenticated, so it
-- sees nothing, even with a session.
CREATE ROLE rls_workspace_table_owner NOLOGIN;
ALTER TABLE public.invoices OWNER TO rls_workspace_table_owner;
SET ROLE rls_workspace_table_owner;
SELECT pg_temp.login(:'alice');
SELECT count(*) AS owner_sees FROM public.invoices;
DELETE FROM public.invoices RETURNING customer;
RESET ROLE;
SELECT count(*) AS rows_kept FROM public.invoices;

DROP TABLE public.invoices;
DROP ROLE rls_workspace_table_owner;
DROP ROLE authenticated;
