-- sql/rls/owner.sql, proven as the role clients use (authenticated) with tokens from the token
-- kit: two users, every command, both owner column types, FORCE, the index and the initplan.
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR
\set script :abs_srcdir '/sql/rls/owner.sql'
-- The script runs twice (it is idempotent); silence means it ran clean.
\set ECHO none
\i :script
\i :script
\set ECHO all
SELECT tablename, policyname, cmd, roles, qual, with_check
  FROM pg_policies WHERE schemaname = 'public' AND tablename IN ('notes', 'todos') ORDER BY 1, 2;
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT array_agg(indexrelid::regclass ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = c.oid) AS indexes
  FROM pg_class c WHERE c.oid IN ('public.notes'::regclass, 'public.todos'::regclass) ORDER BY 1;

-- A key, configured by the superuser; tokens minted with the token kit (the private key stays
-- in this test).
\set signing_alg EdDSA
\set prelude :abs_srcdir '/sql/include/signing_key.sql'
\i :prelude
CREATE FUNCTION pg_temp.login(token text) RETURNS text LANGUAGE sql AS $$
  SELECT auth.jwt_session_init(token);
  SELECT current_user || ' as ' || auth.claim('name')
$$;
SELECT pg_temp.token('{"sub":"a11ce000-0000-4000-8000-00000000000a","name":"alice"}', :'signing_key') AS alice \gset
SELECT pg_temp.token('{"sub":"b0b00000-0000-4000-8000-00000000000b","name":"bob"}', :'signing_key') AS bob \gset
-- carol's sub is not a UUID: auth.uid() is NULL for her.
SELECT pg_temp.token('{"sub":"carol@example.com","name":"carol"}', :'signing_key') AS carol \gset

SET ROLE authenticated;
-- INSERT as oneself: owner_id comes from the token.
SELECT pg_temp.login(:'alice');
INSERT INTO public.notes (body) VALUES ('alice 1'), ('alice 2');
INSERT INTO public.todos (title) VALUES ('alice todo');
SELECT pg_temp.login(:'bob');
INSERT INTO public.notes (body) VALUES ('bob 1');
INSERT INTO public.todos (title) VALUES ('bob todo');
-- SELECT: each user sees only their own rows.
SELECT body, owner_id = auth.user_id() AS own FROM public.notes ORDER BY body;
SELECT title, owner_id = auth.uid() AS own FROM public.todos ORDER BY title;
SELECT pg_temp.login(:'alice');
SELECT body, owner_id = auth.user_id() AS own FROM public.notes ORDER BY body;
SELECT title, owner_id = auth.uid() AS own FROM public.todos ORDER BY title;
-- Reading another user's rows by naming them returns nothing.
SELECT count(*) AS bobs_notes_seen_by_alice FROM public.notes WHERE owner_id = 'b0b00000-0000-4000-8000-00000000000b';
SELECT count(*) AS bobs_todos_seen_by_alice FROM public.todos WHERE owner_id = 'b0b00000-0000-4000-8000-00000000000b';
-- INSERT for someone else fails.
INSERT INTO public.notes (owner_id, body) VALUES ('b0b00000-0000-4000-8000-00000000000b', 'planted by alice');
INSERT INTO public.todos (owner_id, title) VALUES ('b0b00000-0000-4000-8000-00000000000b', 'planted by alice');
-- UPDATE: one's own rows change; another user's rows are not there to change; a row cannot be
-- given away.
UPDATE public.notes SET body = 'alice 1 (edited)' WHERE body = 'alice 1' RETURNING body;
UPDATE public.todos SET done = true WHERE title = 'alice todo' RETURNING title, done;
UPDATE public.notes SET body = 'defaced' WHERE body = 'bob 1' RETURNING body;
UPDATE public.todos SET done = true WHERE title = 'bob todo' RETURNING title;
UPDATE public.notes SET owner_id = 'b0b00000-0000-4000-8000-00000000000b' WHERE body = 'alice 2';
UPDATE public.todos SET owner_id = 'b0b00000-0000-4000-8000-00000000000b' WHERE title = 'alice todo';
-- DELETE: the same.
DELETE FROM public.notes WHERE body = 'bob 1' RETURNING body;
DELETE FROM public.todos WHERE title = 'bob todo' RETURNING title;
DELETE FROM public.notes WHERE body = 'alice 2' RETURNING body;
-- A sub that is not a UUID: the text table works, the uuid table shows and takes nothing.
SELECT pg_temp.login(:'carol');
INSERT INTO public.notes (body) VALUES ('carol 1');
SELECT body FROM public.notes ORDER BY body;
SELECT count(*) AS carols_todos FROM public.todos;
INSERT INTO public.todos (title) VALUES ('carol todo');
-- Without a session: nothing to see, nothing to write.
SELECT auth.end_session();
SELECT count(*) AS notes_without_session FROM public.notes;
INSERT INTO public.notes (body) VALUES ('anonymous');
RESET ROLE;
-- What the table holds (the superuser bypasses RLS): bob's rows untouched by alice.
SELECT owner_id, body FROM public.notes ORDER BY id;
SELECT owner_id, title, done FROM public.todos ORDER BY id;

-- The initplan: (SELECT auth.user_id()) is evaluated once per statement, and the owner_id
-- index serves the policy.
SET ROLE authenticated;
SELECT pg_temp.login(:'alice');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT body FROM public.notes;
EXPLAIN (COSTS OFF) SELECT title FROM public.todos;
RESET enable_seqscan;
RESET ROLE;

-- FORCE holds the table's owner: a non-superuser owner is not a member of authenticated, no
-- policy is for it, and it sees nothing, even with a session.
CREATE ROLE rls_owner_table_owner NOLOGIN;
ALTER TABLE public.notes OWNER TO rls_owner_table_owner;
SET ROLE rls_owner_table_owner;
SELECT count(*) AS owner_sees FROM public.notes;
SELECT pg_temp.login(:'alice');
SELECT count(*) AS owner_with_session_sees FROM public.notes;
UPDATE public.notes SET body = 'owner was here' RETURNING body;
RESET ROLE;
-- Without FORCE the owner would bypass every policy:
ALTER TABLE public.notes NO FORCE ROW LEVEL SECURITY;
SET ROLE rls_owner_table_owner;
SELECT count(*) AS owner_sees_without_force FROM public.notes;
RESET ROLE;
-- and running the script again puts FORCE back.
\set ECHO none
\i :script
\set ECHO all
SELECT relname, relforcerowsecurity FROM pg_class WHERE oid = 'public.notes'::regclass;
SET ROLE rls_owner_table_owner;
SELECT count(*) AS owner_sees_again FROM public.notes;
RESET ROLE;

DROP TABLE public.notes, public.todos;
DROP ROLE rls_owner_table_owner;
DROP ROLE authenticated;
