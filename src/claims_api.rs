//! The claim accessors RLS policies call per row: auth.user_id(), auth.uid(), auth.claim(),
//! auth.session()/auth.jwt() and the Supabase/Neon helpers. Hand-written V1 functions so the
//! answer is a copy of a cached value, with no conversion layer in between.

use crate::fmgr::{Answer, Datum, Jsonb, Text, Uuid};
use crate::session;
use crate::sql_function;

fn user_id() -> Answer<Text> {
    session::current()?
        .and_then(|s| s.user_id.as_deref().map(Datum::text))
        .transpose()
}
sql_function! {
    symbol = auth_user_id, finfo = pg_finfo_auth_user_id, name = "auth_user_id",
    body = user_id() -> Text,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.user_id() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_user_id';
COMMENT ON FUNCTION auth.user_id() IS 'The sub claim of the session (NULL without one)';
"#,
}

fn uid() -> Answer<Uuid> {
    session::current()?
        .and_then(|s| s.uid.map(Datum::uuid))
        .transpose()
}
sql_function! {
    symbol = auth_uid, finfo = pg_finfo_auth_uid, name = "auth_uid",
    body = uid() -> Uuid,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.uid() RETURNS uuid
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_uid';
COMMENT ON FUNCTION auth.uid() IS 'The sub claim as a uuid (NULL when sub is not a UUID)';
"#,
}

/// The claim at `path` (a dotted path into the claims) as text.
fn claim(path: Option<&str>) -> Answer<Text> {
    let Some(path) = path else {
        return Ok(None);
    };
    session::current()?
        .and_then(|s| s.claim_text(path))
        .map(|v| Datum::text(&v))
        .transpose()
}
sql_function! {
    symbol = auth_claim, finfo = pg_finfo_auth_claim, name = "auth_claim",
    body = claim(path: Text) -> Text,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.claim(path text) RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_claim';
COMMENT ON FUNCTION auth.claim(text) IS 'One claim as text; a dotted path reaches into nested objects';
"#,
}

/// pg_session_jwt's auth.session(): JSON `null` (not SQL NULL) without a session.
fn session_jsonb() -> Answer<Jsonb> {
    match session::current()? {
        Some(s) => Datum::copy_of(s.jsonb()),
        None => Datum::copy_of(session::json_null()),
    }
    .map(Some)
}
sql_function! {
    symbol = auth_session, finfo = pg_finfo_auth_session, name = "auth_session",
    body = session_jsonb() -> Jsonb,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.session() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_session';
COMMENT ON FUNCTION auth.session() IS 'All claims of the session (pg_session_jwt''s name; JSON null without one)';
"#,
}

/// Supabase's auth.jwt(): SQL NULL without a session, except in pg_session_jwt's
/// configuration, where it is pg_session_jwt's alias of auth.session() (JSON `null`).
fn jwt_jsonb() -> Answer<Jsonb> {
    match session::current()? {
        Some(s) => Datum::copy_of(s.jsonb()).map(Some),
        None if session::jwt_is_json_null_without_session() => {
            Datum::copy_of(session::json_null()).map(Some)
        }
        None => Ok(None),
    }
}
sql_function! {
    symbol = auth_jwt, finfo = pg_finfo_auth_jwt, name = "auth_jwt",
    body = jwt_jsonb() -> Jsonb,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.jwt() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_jwt';
COMMENT ON FUNCTION auth.jwt() IS 'All claims of the session (Supabase''s name; NULL without one)';
"#,
}

fn role() -> Answer<Text> {
    claim(Some("role"))
}
sql_function! {
    symbol = auth_role, finfo = pg_finfo_auth_role, name = "auth_role",
    body = role() -> Text,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.role() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_role';
COMMENT ON FUNCTION auth.role() IS 'The role claim (Supabase)';
"#,
}

fn email() -> Answer<Text> {
    claim(Some("email"))
}
sql_function! {
    symbol = auth_email, finfo = pg_finfo_auth_email, name = "auth_email",
    body = email() -> Text,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.email() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_email';
COMMENT ON FUNCTION auth.email() IS 'The email claim (Supabase)';
"#,
}

fn organization() -> Answer<Jsonb> {
    session::current()?
        .and_then(|s| s.organization_jsonb().map(Datum::copy_of))
        .transpose()
}
sql_function! {
    symbol = auth_organization, finfo = pg_finfo_auth_organization, name = "auth_organization",
    body = organization() -> Jsonb,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.organization() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_organization';
COMMENT ON FUNCTION auth.organization() IS 'The Neon Auth organization claim "o" (NULL unless an object)';
"#,
}

fn organization_id() -> Answer<Uuid> {
    session::current()?
        .and_then(|s| s.organization_id.map(Datum::uuid))
        .transpose()
}
sql_function! {
    symbol = auth_organization_uuid, finfo = pg_finfo_auth_organization_uuid, name = "auth_organization_uuid",
    body = organization_id() -> Uuid,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.organization_id() RETURNS uuid
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_organization_uuid';
COMMENT ON FUNCTION auth.organization_id() IS 'The id of the Neon Auth organization claim "o" (NULL unless a UUID)';
"#,
}

/// 0.1.0's `auth.organization_id() RETURNS text`: the claim `o.id` as text, whatever it holds.
/// Its symbol keeps that return type, so a database still on 0.1.0's SQL gets text, never a
/// uuid read as text.
fn organization_id_text() -> Answer<Text> {
    claim(Some("o.id"))
}
sql_function! {
    symbol = auth_organization_id, finfo = pg_finfo_auth_organization_id, name = "auth_organization_id",
    body = organization_id_text() -> Text,
    hide_statement = false,
    released_sql = r#"
CREATE FUNCTION auth.organization_id() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_organization_id';
"#,
}

/// auth.user_id() and auth.claim() through `#[pg_extern]`, so the benchmark measures in the
/// same run what the hand-written entry points above save. Built only with the `bench`
/// feature (scripts/bench.sh), never installed otherwise.
#[cfg(feature = "bench")]
mod pg_extern_twins {
    use crate::errors::OrReport;
    use crate::session;
    use pgrx::prelude::*;

    #[pg_extern(stable, parallel_safe)]
    fn user_id_pg_extern() -> Option<String> {
        session::current()
            .or_report()
            .and_then(|s| s.user_id.clone())
    }

    #[pg_extern(stable, parallel_safe)]
    fn claim_pg_extern(path: &str) -> Option<String> {
        session::current()
            .or_report()
            .and_then(|s| s.claim_text(path))
    }
}

pgrx::extension_sql!(
    r#"
-- Policies of every role call these functions, so the schema must be usable by all. That is
-- granted only on a schema this CREATE EXTENSION made: an auth schema that existed before
-- (Supabase has one) belongs to someone else, and granting on it would open their objects to
-- every role. Every name here is qualified: the installer may own objects in the schema.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_namespace n
               WHERE n.nspname OPERATOR(pg_catalog.=) 'auth'
                 AND n.xmin OPERATOR(pg_catalog.=) pg_catalog.pg_current_xact_id()::pg_catalog.xid) THEN
        GRANT USAGE ON SCHEMA auth TO PUBLIC;
    ELSE
        RAISE NOTICE 'pg_rls_auth: schema auth existed before this extension; its privileges are left as they are'
            USING HINT = 'Roles whose policies call auth.* need USAGE on it: GRANT USAGE ON SCHEMA auth TO <role>.';
    END IF;
END
$$;
"#,
    name = "schema_auth_usage",
    bootstrap,
);
