-- Every key and trust decision is the administrator's: an ordinary role can neither set nor
-- read them, nor forge the session they produce.
\set VERBOSITY terse
SET ROLE alice;
SET pg_rls_auth.jwks = '{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}';
SELECT set_config('pg_rls_auth.jwks', '{}', false);
SET pg_rls_auth.jwt_secret = 'a-secret-of-at-least-thirty-two-bytes!!';
SET pg_rls_auth.trusted_proxy = on;
SET pg_rls_auth.trust_request_claims = off;
SET pg_rls_auth.leeway = 3600;
SET pg_rls_auth.require_exp = off;
SET pg_rls_auth.rate_limit_store = 'table';
SET pg_rls_auth.rate_limit_action = deny;
SET pg_rls_auth.session = '1:{"sub":"mallory"}';
SELECT set_config('pg_rls_auth.session', '1:{"sub":"mallory"}', true);
RESET pg_rls_auth.session;
ALTER ROLE alice SET pg_rls_auth.jwks = '{}';
ALTER ROLE alice SET pg_rls_auth.session = '1:{"sub":"mallory"}';
SET pg_rls_auth.session_jwk = '{}';
-- Nor point the key fetcher anywhere, in any letter case, nor force fetches.
SET pg_rls_auth.jwks_urls = 'https://evil.example/jwks.json';
SET PG_RLS_AUTH.OIDC_ISSUERS = 'https://evil.example';
SELECT set_config('pg_rls_auth.http_ca_file', '/tmp/evil.pem', false);
ALTER ROLE alice SET pg_rls_auth.jwks_urls = 'https://evil.example/jwks.json';
SELECT * FROM auth.refresh_jwks();
-- The status holds public data only: every role may read it (no source configured here).
SELECT count(*) AS sources FROM auth.jwks_status();
-- A function carrying the setting cannot apply it either.
CREATE FUNCTION pg_temp.forge() RETURNS text LANGUAGE sql SET pg_rls_auth.session = '1:{"sub":"mallory"}' AS $$ SELECT auth.user_id() $$;
-- The secret is hidden.
SHOW pg_rls_auth.jwt_secret;
SELECT current_setting('pg_rls_auth.jwt_secret');
SELECT count(*) AS visible_secret FROM pg_settings WHERE name = 'pg_rls_auth.jwt_secret';
SELECT count(*) AS visible_session FROM pg_settings WHERE name = 'pg_rls_auth.session';
-- The table store is the extension's.
SELECT * FROM _pg_rls_auth.write_rate_state;
INSERT INTO _pg_rls_auth.write_rate_state VALUES ('\x00', 0, 0, 0);
DELETE FROM _pg_rls_auth.write_rate_state;
SELECT auth.reset_write_rate('alice');
-- Still no session after all of that.
SELECT auth.user_id() AS forged;
RESET ROLE;
-- pg_settings describes every setting, with its context.
SELECT name, context, setting, short_desc <> '' AS described
  FROM pg_settings WHERE name LIKE 'pg_rls_auth.%' OR name = 'pg_session_jwt.jwk' ORDER BY name;
