-- Included by the policy tests: a signing key (algorithm :signing_alg) whose public half the
-- superuser configures as pg_rls_auth.jwks (the private key stays in the test), and
-- pg_temp.token(claims, key), a token signed with it, valid for an hour.
SELECT auth.generate_jwk(:'signing_alg') AS signing_key \gset
SELECT set_config('pg_rls_auth.jwks', auth.public_jwk(:'signing_key')::text, false) IS NOT NULL AS key_configured;
CREATE FUNCTION pg_temp.token(claims jsonb, key text) RETURNS text LANGUAGE sql AS $$
  SELECT auth.sign_jwt(claims || jsonb_build_object('exp', extract(epoch FROM now())::bigint + 3600), key)
$$;
