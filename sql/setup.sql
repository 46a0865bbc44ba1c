-- Installs the extension into the regression database, next to an auth schema that already
-- holds an auth library's table: CREATE EXTENSION must leave it alone, privileges included.
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
INSERT INTO auth.users VALUES ('6f1c3a3e-9a53-4c59-8a3f-3f5e1f2b9c10', 'alice@example.com');
CREATE EXTENSION pg_rls_auth;
SELECT extname, extversion IS NOT NULL AS has_version, nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE extname = 'pg_rls_auth';
SELECT count(*) AS users_untouched FROM auth.users;
SELECT nspacl IS NULL AS acl_untouched FROM pg_namespace WHERE nspname = 'auth';
-- What the NOTICE asks the administrator to do (here, for every role).
GRANT USAGE ON SCHEMA auth TO PUBLIC;
-- Ordinary roles used by the rest of the suite.
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
