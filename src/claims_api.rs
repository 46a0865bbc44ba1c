//! The claim accessors RLS policies call per row: auth.user_id(), auth.uid(), auth.claim(),
//! auth.session()/auth.jwt() and the Supabase/Neon helpers. Hand-written V1 functions so the
//! answer is a copy of a cached value, with no conversion layer in between.

use crate::errors::Raise;
use crate::fmgr::{arg, text_datum, varlena_datum};
use crate::session;
use crate::v1_function;
use pgrx::pg_sys;

type Answer = Result<Option<pg_sys::Datum>, Raise>;

/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread; `fcinfo` is not read.
unsafe fn user_id(_: pg_sys::FunctionCallInfo) -> Answer {
    session::current()?
        .and_then(|s| s.user_id.as_deref().map(text_datum))
        .transpose()
}
v1_function!(
    auth_user_id,
    pg_finfo_auth_user_id,
    user_id,
    hide_statement = false
);

/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread, with a valid `fcinfo` for `auth.claim(path text)`.
unsafe fn claim(fcinfo: pg_sys::FunctionCallInfo) -> Answer {
    // SAFETY: valid `fcinfo` whose argument 0 is text (caller's obligation, per the SQL
    // declaration below); the &str is used only during this call. Conversion errors are
    // panics for the guard.
    match unsafe { arg::<&str>(fcinfo, 0) } {
        Some(path) => claim_path(path),
        None => Ok(None),
    }
}
v1_function!(
    auth_claim,
    pg_finfo_auth_claim,
    claim,
    hide_statement = false
);

/// pg_session_jwt's auth.session(): JSON `null` (not SQL NULL) without a session.
///
/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread; `fcinfo` is not read.
unsafe fn session_jsonb(_: pg_sys::FunctionCallInfo) -> Answer {
    match session::current()? {
        Some(s) => varlena_datum(s.jsonb_bytes()),
        None => varlena_datum(session::json_null()),
    }
    .map(Some)
}
v1_function!(
    auth_session,
    pg_finfo_auth_session,
    session_jsonb,
    hide_statement = false
);

/// Supabase's auth.jwt(): SQL NULL without a session, except in pg_session_jwt's
/// configuration, where it is pg_session_jwt's alias of auth.session() (JSON `null`).
///
/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread; `fcinfo` is not read.
unsafe fn jwt_jsonb(_: pg_sys::FunctionCallInfo) -> Answer {
    match session::current()? {
        Some(s) => varlena_datum(s.jsonb_bytes()).map(Some),
        None if session::jwt_is_json_null_without_session() => {
            varlena_datum(session::json_null()).map(Some)
        }
        None => Ok(None),
    }
}
v1_function!(
    auth_jwt,
    pg_finfo_auth_jwt,
    jwt_jsonb,
    hide_statement = false
);

/// The claim at `path` as text (as auth.claim() reads it: a dotted path into the claims).
fn claim_path(path: &str) -> Answer {
    session::current()?
        .and_then(|s| s.claim_text(path))
        .map(|v| text_datum(&v))
        .transpose()
}

/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread; `fcinfo` is not read.
unsafe fn role(_: pg_sys::FunctionCallInfo) -> Answer {
    claim_path("role")
}
v1_function!(auth_role, pg_finfo_auth_role, role, hide_statement = false);

/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread; `fcinfo` is not read.
unsafe fn email(_: pg_sys::FunctionCallInfo) -> Answer {
    claim_path("email")
}
v1_function!(
    auth_email,
    pg_finfo_auth_email,
    email,
    hide_statement = false
);

/// A uuid datum (16 bytes, by reference).
fn uuid_datum(bytes: [u8; 16]) -> Result<pg_sys::Datum, Raise> {
    varlena_datum(&bytes)
}

/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread; `fcinfo` is not read.
unsafe fn uid(_: pg_sys::FunctionCallInfo) -> Answer {
    session::current()?
        .and_then(|s| s.uid.map(uuid_datum))
        .transpose()
}
v1_function!(auth_uid, pg_finfo_auth_uid, uid, hide_statement = false);

/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread; `fcinfo` is not read.
unsafe fn organization(_: pg_sys::FunctionCallInfo) -> Answer {
    session::current()?
        .and_then(|s| s.organization_jsonb().map(varlena_datum))
        .transpose()
}
v1_function!(
    auth_organization,
    pg_finfo_auth_organization,
    organization,
    hide_statement = false
);

/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread; `fcinfo` is not read.
unsafe fn organization_id(_: pg_sys::FunctionCallInfo) -> Answer {
    session::current()?
        .and_then(|s| s.organization_id.map(uuid_datum))
        .transpose()
}
v1_function!(
    auth_organization_id,
    pg_finfo_auth_organization_id,
    organization_id,
    hide_statement = false
);

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
CREATE FUNCTION auth.user_id() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_user_id';
COMMENT ON FUNCTION auth.user_id() IS 'The sub claim of the session (NULL without one)';
CREATE FUNCTION auth.uid() RETURNS uuid
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_uid';
COMMENT ON FUNCTION auth.uid() IS 'The sub claim as a uuid (NULL when sub is not a UUID)';
CREATE FUNCTION auth.claim(path text) RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_claim';
COMMENT ON FUNCTION auth.claim(text) IS 'One claim as text; a dotted path reaches into nested objects';
CREATE FUNCTION auth.session() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_session';
COMMENT ON FUNCTION auth.session() IS 'All claims of the session (pg_session_jwt''s name; JSON null without one)';
CREATE FUNCTION auth.jwt() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_jwt';
COMMENT ON FUNCTION auth.jwt() IS 'All claims of the session (Supabase''s name; NULL without one)';
CREATE FUNCTION auth.role() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_role';
CREATE FUNCTION auth.email() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_email';
CREATE FUNCTION auth.organization() RETURNS jsonb
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_organization';
COMMENT ON FUNCTION auth.organization() IS 'The Neon Auth organization claim "o" (NULL unless an object)';
CREATE FUNCTION auth.organization_id() RETURNS uuid
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_organization_id';
COMMENT ON FUNCTION auth.organization_id() IS 'The id of the Neon Auth organization claim "o" (NULL unless a UUID)';
"#,
    name = "claims_api",
    bootstrap,
);
