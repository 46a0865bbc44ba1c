-- With no key configured, claims come from PostgREST's request.jwt.claims (and the legacy
-- request.jwt.claim.sub), exactly as Supabase's helpers read them.
\set VERBOSITY terse
SET ROLE alice;
SELECT auth.user_id(), auth.uid(), auth.session(), auth.jwt();
SET request.jwt.claims = '{"sub":"6f1c3a3e-9a53-4c59-8a3f-3f5e1f2b9c10","role":"authenticated","email":"a@example.com","app_metadata":{"tenant_id":"t1"}}';
SELECT auth.user_id(), auth.uid(), auth.role(), auth.email(), auth.claim('app_metadata.tenant_id');
SELECT auth.jwt() ->> 'role' AS role_from_jwt;
-- Changes are seen at once (also by a cached plan).
PREPARE who AS SELECT auth.user_id();
EXECUTE who;
SET request.jwt.claims = '{"sub":"user-2"}';
EXECUTE who;
SELECT auth.uid() AS not_a_uuid;
-- Legacy setting wins for sub, as in Supabase's auth.uid().
SET request.jwt.claim.sub = 'legacy-sub';
SELECT auth.user_id();
RESET request.jwt.claim.sub;
-- Transaction-local claims, as PostgREST sets them.
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub":"in-tx"}', true) IS NOT NULL;
SELECT auth.user_id();
COMMIT;
SELECT auth.user_id() AS after_commit;
SET request.jwt.claims = 'not json';
SELECT auth.user_id();
RESET request.jwt.claims;
SELECT auth.user_id() AS none;
-- Every change is seen at once: inside one PL/pgSQL block (simple expressions included),
-- and when a rollback restores the value.
DO $$
DECLARE
  first text;
  ignored text;
BEGIN
  PERFORM set_config('request.jwt.claims', '{"sub":"first"}', true);
  first := auth.user_id();
  ignored := set_config('request.jwt.claims', '{"sub":"second"}', true);
  RAISE NOTICE '% then %', first, auth.user_id();
END
$$;
BEGIN;
SET LOCAL request.jwt.claims = '{"sub":"outer"}';
SAVEPOINT s;
SET LOCAL request.jwt.claims = '{"sub":"inner"}';
SELECT auth.user_id() AS inner_user;
ROLLBACK TO SAVEPOINT s;
SELECT auth.user_id() AS restored_user;
ROLLBACK;
SELECT auth.user_id() AS after_rollback;
RESET ROLE;
-- An administrator can stop trusting request.jwt.claims.
SET pg_rls_auth.trust_request_claims = off;
SET ROLE alice;
SET request.jwt.claims = '{"sub":"mallory"}';
SELECT auth.user_id() AS untrusted;
RESET ROLE;
RESET pg_rls_auth.trust_request_claims;
-- While a key is configured, request.jwt.claims is ignored.
SELECT auth.generate_jwk() AS k \gset
SELECT set_config('pg_rls_auth.jwks', auth.public_jwk(:'k')::text, false) IS NOT NULL;
SET ROLE alice;
SET request.jwt.claims = '{"sub":"mallory"}';
SELECT auth.user_id() AS ignored_with_key;
RESET ROLE;
RESET pg_rls_auth.jwks;
RESET request.jwt.claims;
