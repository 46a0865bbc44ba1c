-- pg_rls_auth 0.1.0 -> 0.2.0 (ALTER EXTENSION pg_rls_auth UPDATE). Leaves the database as a
-- fresh 0.2.0 install would be (pgrx-tests/tests/upgrade.rs compares them object by object),
-- keeping the OID of every function 0.1.0 had except organization_id(), whose return type
-- changes. Runs as the superuser that owns the extension's objects; every name is qualified.

-- organization_id() returns uuid now (as pg_session_jwt's). A return type cannot change in
-- place: refuse, naming them, while anything depends on the text version.
DO $$
DECLARE
    dependents text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), ', ')
      INTO dependents
      FROM pg_catalog.pg_depend d
     WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND d.refobjid OPERATOR(pg_catalog.=) 'auth.organization_id()'::pg_catalog.regprocedure
       AND d.deptype OPERATOR(pg_catalog.=) 'n';
    IF dependents IS NOT NULL THEN
        RAISE EXCEPTION 'pg_rls_auth 0.2.0: auth.organization_id() now returns uuid, and % depend on the text version', dependents
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Drop them, run ALTER EXTENSION pg_rls_auth UPDATE, then create them again comparing with a uuid (or with auth.organization_id()::text).';
    END IF;
END
$$;
DROP FUNCTION auth.organization_id();
CREATE FUNCTION auth.organization_id() RETURNS uuid
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_organization_uuid';
COMMENT ON FUNCTION auth.organization_id() IS 'The id of the Neon Auth organization claim "o" (NULL unless a UUID)';

-- Same signatures, new definitions and descriptions (OIDs kept).
CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_jwt';
COMMENT ON FUNCTION auth.jwt() IS 'All claims of the session (Supabase''s name; NULL without one)';
COMMENT ON FUNCTION auth.session() IS 'All claims of the session (pg_session_jwt''s name; JSON null without one)';
CREATE OR REPLACE FUNCTION auth.organization() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_organization';
COMMENT ON FUNCTION auth.organization() IS 'The Neon Auth organization claim "o" (NULL unless an object)';
COMMENT ON FUNCTION auth.role() IS 'The role claim (Supabase)';
COMMENT ON FUNCTION auth.email() IS 'The email claim (Supabase)';

-- Internal state moves to a schema only a superuser controls.
CREATE SCHEMA _pg_rls_auth;
COMMENT ON SCHEMA _pg_rls_auth IS 'pg_rls_auth internal state; no role uses it directly';

-- 0.1.0's state table is read only once it sits where no one but a superuser can reach: schema
-- auth belongs to the database owner, who could have put anything under its name (a view
-- calling their functions would run them with this script's superuser rights). So the name is
-- first moved out of auth into a schema of this update's own (moving runs nothing), and the
-- object is read only if it then proves to be the extension's own plain table, owned by a
-- superuser, with no triggers, rules or policies.
CREATE SCHEMA _pg_rls_auth_0_1_0;
ALTER TABLE auth.write_rate_state SET SCHEMA _pg_rls_auth_0_1_0;
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) c.relowner
          JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
               AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'
          JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
         WHERE c.oid OPERATOR(pg_catalog.=) '_pg_rls_auth_0_1_0.write_rate_state'::pg_catalog.regclass
           AND e.extname OPERATOR(pg_catalog.=) 'pg_rls_auth' AND c.relkind OPERATOR(pg_catalog.=) 'r'
           AND o.rolsuper AND NOT c.relhastriggers AND NOT c.relhasrules AND NOT c.relrowsecurity) THEN
        RAISE EXCEPTION 'pg_rls_auth 0.2.0: auth.write_rate_state is not the table pg_rls_auth 0.1.0 created'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Someone replaced it; the update reads the table store''s state only from the extension''s own table.';
    END IF;
END
$$;
CREATE TABLE _pg_rls_auth.write_rate_state (
    id bytea PRIMARY KEY,
    tat numeric NOT NULL,
    scale integer NOT NULL,
    free_at bigint NOT NULL
);
COMMENT ON TABLE _pg_rls_auth.write_rate_state IS
    'pg_rls_auth table store: per SHA-256 of (bucket, key), the GCRA theoretical arrival time in units of 1/scale ns since the Unix epoch, and when (ns) the row may go: one window after the key is fully replenished';
REVOKE ALL ON _pg_rls_auth.write_rate_state FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('_pg_rls_auth.write_rate_state', '');

-- The table store's state carries over. A key's row id is the first 16 bytes of SHA-256 over
-- (the bucket's length in UTF-8 bytes as 8 little-endian bytes, the bucket, the key), as
-- core/src/key_id.rs computes it; free_at is the state's TAT in ns, rounded up (0.1.0 did not
-- record the window a row lingers for: such rows may go as soon as their key is replenished).
INSERT INTO _pg_rls_auth.write_rate_state (id, tat, scale, free_at)
SELECT pg_catalog.substring(
           pg_catalog.sha256(len.le8 OPERATOR(pg_catalog.||) pg_catalog.convert_to(s.bucket, 'UTF8')
                             OPERATOR(pg_catalog.||) pg_catalog.convert_to(s.key, 'UTF8')),
           1, 16),
       s.tat, s.scale,
       CASE WHEN s.scale OPERATOR(pg_catalog.=) 0 THEN 9223372036854775807
            ELSE LEAST(pg_catalog.ceil(s.tat OPERATOR(pg_catalog./) s.scale),
                                  9223372036854775807)::pg_catalog.int8 END
  FROM _pg_rls_auth_0_1_0.write_rate_state s,
       LATERAL (SELECT pg_catalog.decode(pg_catalog.string_agg(
                    pg_catalog.lpad(pg_catalog.to_hex(
                        (pg_catalog.octet_length(pg_catalog.convert_to(s.bucket, 'UTF8'))::pg_catalog.int8
                         OPERATOR(pg_catalog.>>) (8 OPERATOR(pg_catalog.*) i)) OPERATOR(pg_catalog.&) 255), 2, '0'),
                    '' ORDER BY i), 'hex') AS le8
                  FROM pg_catalog.generate_series(0, 7) i) len
ON CONFLICT (id) DO NOTHING;
ALTER EXTENSION pg_rls_auth DROP TABLE _pg_rls_auth_0_1_0.write_rate_state;
DROP TABLE _pg_rls_auth_0_1_0.write_rate_state;
ALTER EXTENSION pg_rls_auth DROP SCHEMA _pg_rls_auth_0_1_0;
DROP SCHEMA _pg_rls_auth_0_1_0;

CREATE TABLE _pg_rls_auth.revocations (
    kind text NOT NULL CHECK (kind IN ('sessions', 'token')),
    value text NOT NULL,
    issued_before timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    revoked_by text NOT NULL,
    PRIMARY KEY (kind, value),
    CHECK ((kind = 'sessions') = (issued_before IS NOT NULL)),
    CHECK (kind = 'sessions' OR expires_at IS NOT NULL)
);
CREATE INDEX revocations_expires_at ON _pg_rls_auth.revocations (expires_at);
COMMENT ON TABLE _pg_rls_auth.revocations IS
    'pg_rls_auth revocations: every token of a sub issued before a time, or one token by jti; change them with auth.revoke_sessions() and friends';
REVOKE ALL ON _pg_rls_auth.revocations FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('_pg_rls_auth.revocations', '');

-- Session-keyed limits.
CREATE FUNCTION auth.check_write_rate(max_writes integer, window_seconds integer, bucket text DEFAULT 'default')
    RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'auth_check_write_rate_session';
COMMENT ON FUNCTION auth.check_write_rate(integer, integer, text) IS
    'Admits a write for the session''s own key (auth.user_id()) in bucket under max_writes per window_seconds; over the limit raises SQLSTATE PT429';
CREATE FUNCTION auth.write_rate_status(max_writes integer, window_seconds integer, bucket text DEFAULT 'default')
    RETURNS TABLE (allowed boolean, remaining integer, retry_after_seconds double precision, reset_after_seconds double precision)
    VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'write_rate_status_of_session_wrapper';

-- Lint.
CREATE FUNCTION auth.lint()
    RETURNS TABLE (severity text, code text, object text, detail text, fix text)
    STRICT STABLE PARALLEL RESTRICTED LANGUAGE c AS 'MODULE_PATHNAME', 'lint_wrapper';

-- Revocation.
CREATE FUNCTION auth.check_not_revoked() RETURNS void
    STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'check_not_revoked_wrapper';
CREATE FUNCTION auth.revocations()
    RETURNS TABLE (kind text, value text, issued_before timestamptz, expires_at timestamptz, revoked_at timestamptz, revoked_by text)
    STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'revocations_wrapper';
CREATE FUNCTION auth.revoke_sessions(sub text, issued_before timestamptz DEFAULT pg_catalog.now(), expires_at timestamptz DEFAULT NULL)
    RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'revoke_sessions_wrapper';
CREATE FUNCTION auth.revoke_token(jti text, expires_at timestamptz)
    RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'revoke_token_wrapper';
CREATE FUNCTION auth.unrevoke_sessions(sub text)
    RETURNS boolean VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'unrevoke_sessions_wrapper';
CREATE FUNCTION auth.unrevoke_token(jti text)
    RETURNS boolean VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'unrevoke_token_wrapper';
REVOKE EXECUTE ON FUNCTION auth.revoke_sessions(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auth.revoke_token(text, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auth.unrevoke_sessions(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auth.unrevoke_token(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auth.revocations() FROM PUBLIC;
-- To the extension's owner, as a fresh install grants them (@extowner@ there is the installer,
-- who owns the extension; here it would be whoever runs the update).
DO $$
BEGIN
    EXECUTE pg_catalog.format(
        'GRANT EXECUTE ON FUNCTION auth.revoke_sessions(text, timestamptz, timestamptz), '
        'auth.revoke_token(text, timestamptz), auth.unrevoke_sessions(text), '
        'auth.unrevoke_token(text), auth.revocations() TO %I WITH GRANT OPTION',
        (SELECT r.rolname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) e.extowner
          WHERE e.extname OPERATOR(pg_catalog.=) 'pg_rls_auth'));
END
$$;

-- Managed keys: the status of the key sources, and fetching them now (not for PUBLIC).
CREATE FUNCTION auth.jwks_status()
    RETURNS TABLE (source text, url text, keys integer, kids text[], last_attempt timestamptz, last_success timestamptz, last_error text, next_refresh timestamptz)
    STRICT VOLATILE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'jwks_status_wrapper';
CREATE FUNCTION auth.refresh_jwks()
    RETURNS TABLE (source text, url text, keys integer, kids text[], last_attempt timestamptz, last_success timestamptz, last_error text, next_refresh timestamptz)
    STRICT VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'refresh_jwks_wrapper';
REVOKE EXECUTE ON FUNCTION auth.refresh_jwks() FROM PUBLIC;
