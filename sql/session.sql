-- Verified sessions: keys configured by a superuser, tokens minted with the token kit, every
-- read done by an ordinary role.
\set VERBOSITY terse
SELECT jsonb_set(auth.generate_jwk('EdDSA'), '{kid}', '"ed-key"') AS ed_key \gset
SELECT jsonb_set(auth.generate_jwk('ES256'), '{kid}', '"es-key"') AS es_key \gset
SELECT jsonb_set(auth.generate_jwk('RS256'), '{kid}', '"rs-key"') AS rs_key \gset
SELECT jsonb_build_object('keys', jsonb_build_array(auth.public_jwk(:'ed_key'), auth.public_jwk(:'es_key'),
                                                    auth.public_jwk(:'rs_key')))::text AS jwks \gset
\set configure_keys 'SELECT set_config(''pg_rls_auth.jwks'', :''jwks'', false) IS NOT NULL AS keys_set, set_config(''pg_rls_auth.jwt_secret'', ''a-secret-of-at-least-thirty-two-bytes!!'', false) IS NOT NULL AS secret_set;'
:configure_keys
CREATE FUNCTION pg_temp.tok(claims jsonb, key text, alg text DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
  SELECT auth.sign_jwt(claims || jsonb_build_object('exp', extract(epoch FROM now())::int + 600), key, alg)
$$;
SELECT pg_temp.tok('{"sub":"6f1c3a3e-9a53-4c59-8a3f-3f5e1f2b9c10","role":"authenticated","email":"alice@example.com","workspace_id":"w1","app_metadata":{"tenant_id":"t1"},"o":{"id":"7d6a8f0e-1b2c-4d3e-8f4a-5b6c7d8e9f00","rol":"admin"}}', :'ed_key') AS alice_tok \gset
SELECT pg_temp.tok('{"sub":"bob"}', :'es_key') AS bob_tok \gset
SELECT pg_temp.tok('{"sub":"carol"}', :'rs_key') AS carol_rs \gset
SELECT pg_temp.tok('{"sub":"carol"}', :'rs_key', 'PS256') AS carol_ps \gset
SELECT pg_temp.tok('{"sub":"dave"}', 'a-secret-of-at-least-thirty-two-bytes!!', 'HS256') AS dave_hs \gset
SELECT pg_temp.tok('{"sub":"eve"}', 'another-secret-of-at-least-thirty-two!!', 'HS256') AS eve_forged \gset
SELECT auth.sign_jwt('{"sub":"old","exp":1000}', :'ed_key') AS expired_tok \gset

SET ROLE alice;
-- No session yet: everything is NULL, except auth.session(): JSON null, as in pg_session_jwt.
SELECT auth.user_id(), auth.uid(), auth.session(), auth.jwt(), auth.claim('sub');
SELECT auth.jwt_session_init(:'alice_tok');
SELECT auth.user_id(), auth.uid(), auth.role(), auth.email();
SELECT auth.claim('workspace_id'), auth.claim('app_metadata.tenant_id'), auth.claim('app_metadata'), auth.claim('missing');
SELECT auth.organization(), auth.organization_id();
SELECT auth.session() ->> 'workspace_id' AS ws, auth.jwt() ? 'exp' AS has_exp;
-- Each algorithm family.
SELECT auth.jwt_session_init(:'bob_tok'); SELECT auth.user_id(), auth.uid();
SELECT auth.jwt_session_init(:'carol_rs'); SELECT auth.user_id();
SELECT auth.jwt_session_init(:'dave_hs'); SELECT auth.user_id();
-- The key says RS256: a PS256 token for it is refused, and leaves no session.
SELECT auth.jwt_session_init(:'carol_ps');
SELECT auth.user_id() AS after_refused;
SELECT auth.jwt_session_init(:'eve_forged');
SELECT auth.jwt_session_init(:'expired_tok');
SELECT auth.jwt_session_init('not.a.token');
SELECT auth.jwt_session_init(NULL);
SELECT auth.user_id() AS still_none;

-- ROLLBACK restores what was before; a local session ends with its transaction.
SELECT auth.jwt_session_init(:'bob_tok');
BEGIN;
SELECT auth.jwt_session_init(:'alice_tok');
SELECT auth.user_id() AS inside;
ROLLBACK;
SELECT auth.user_id() AS after_rollback;
BEGIN;
SELECT auth.jwt_session_init(:'alice_tok', local => true);
SELECT auth.user_id() AS local_inside;
COMMIT;
SELECT auth.user_id() AS after_local_commit;
-- A failed init inside a transaction: after ROLLBACK no session is left, not the old one.
BEGIN;
SELECT auth.jwt_session_init('garbage');
ROLLBACK;
SELECT auth.user_id() AS after_failed_init;
-- Re-init with the same token works (cached signature), end_session ends it.
SELECT auth.jwt_session_init(:'bob_tok');
SELECT auth.jwt_session_init(:'bob_tok');
SELECT auth.user_id();
SELECT auth.end_session();
SELECT auth.user_id() AS after_end;
-- RESET ALL ends it too (and resets the keys this test set at session level).
SELECT auth.jwt_session_init(:'bob_tok');
RESET ALL;
SELECT auth.user_id() AS after_reset_all;
RESET ROLE;
:configure_keys

-- Stable across prepared statements when the session changes in between.
SET ROLE bob;
PREPARE who AS SELECT auth.user_id(), auth.claim('sub');
SELECT auth.jwt_session_init(:'bob_tok');
EXECUTE who;
SELECT auth.jwt_session_init(:'alice_tok');
EXECUTE who;
EXECUTE who;
CREATE FUNCTION pg_temp.who_plpgsql() RETURNS text LANGUAGE plpgsql AS $$
BEGIN RETURN auth.user_id(); END $$;
SELECT pg_temp.who_plpgsql();
SELECT auth.jwt_session_init(:'bob_tok');
SELECT pg_temp.who_plpgsql();
DEALLOCATE who;
SELECT auth.end_session();
RESET ROLE;

-- Claim checks configured by the administrator.
SET pg_rls_auth.issuer = 'https://issuer.example';
SET ROLE alice;
SELECT auth.jwt_session_init(:'alice_tok');
RESET ROLE;
RESET pg_rls_auth.issuer;
SET pg_rls_auth.audience = 'api, web';
SELECT pg_temp.tok('{"sub":"alice","aud":["web"]}', :'ed_key') AS aud_tok \gset
SET ROLE alice;
SELECT auth.jwt_session_init(:'alice_tok');
SELECT auth.jwt_session_init(:'aud_tok');
SELECT auth.user_id();
RESET ROLE;
RESET pg_rls_auth.audience;
SELECT auth.sign_jwt('{"sub":"noexp"}', :'ed_key') AS noexp_tok \gset
SELECT auth.sign_jwt(jsonb_build_object('sub','late','exp', extract(epoch FROM now())::int - 30), :'ed_key') AS late_tok \gset
SET ROLE alice;
SELECT auth.jwt_session_init(:'noexp_tok');
SELECT auth.jwt_session_init(:'late_tok');
SELECT auth.user_id() AS within_leeway;
RESET ROLE;
SET pg_rls_auth.require_exp = off;
SET pg_rls_auth.leeway = 0;
SET ROLE alice;
SELECT auth.jwt_session_init(:'noexp_tok');
SELECT auth.user_id() AS without_exp;
\set VERBOSITY sqlstate
-- (expired at a time that changes every run: only the SQLSTATE is shown)
SELECT auth.jwt_session_init(:'late_tok');
\set VERBOSITY terse
RESET ROLE;
RESET pg_rls_auth.require_exp;
RESET pg_rls_auth.leeway;

-- Bad configuration fails closed with an error that names the setting.
SET pg_rls_auth.jwks = '{"keys": "nope"}';
SET ROLE alice;
SELECT auth.user_id();
SELECT auth.jwt_session_init(:'alice_tok');
RESET ROLE;
SET pg_rls_auth.jwks = '{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}';
SELECT auth.init();
RESET pg_rls_auth.jwks;
SET pg_rls_auth.jwt_secret = 'short';
SELECT auth.init();
RESET pg_rls_auth.jwt_secret;
-- No key at all: init is impossible.
SELECT auth.jwt_session_init(:'alice_tok');
