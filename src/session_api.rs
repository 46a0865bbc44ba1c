//! Starting and ending sessions: auth.init(), auth.jwt_session_init(), auth.end_session().

use crate::errors::{OrReport, Raise};
use crate::fmgr::arg;
use crate::session;
use crate::v1_function;
use pgrx::prelude::*;

/// Checks the key configuration now and raises its error, if any (pg_session_jwt's init step;
/// optional here, as keys are loaded on first use).
#[pg_extern(name = "init", volatile, parallel_unsafe)]
fn init() {
    session::check_config().or_report();
}

/// Ends the session; like SET, a ROLLBACK of the calling transaction undoes it.
#[pg_extern(name = "end_session", volatile, parallel_unsafe)]
fn end_session() {
    session::end();
}

/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread, with a valid `fcinfo` for `auth.jwt_session_init(jwt text, local boolean)`.
unsafe fn jwt_session_init(
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<pg_sys::Datum>, Raise> {
    // A NULL token fails like an empty one: it too ends any session.
    // SAFETY: valid `fcinfo` whose argument 0 is text (caller's obligation, per the SQL
    // declaration below); the &str is used only during this call.
    let token = unsafe { arg::<&str>(fcinfo, 0) }.unwrap_or("");
    // SAFETY: as above; argument 1 is boolean (the planner fills in the DEFAULT).
    let local = unsafe { arg::<bool>(fcinfo, 1) }.unwrap_or(false);
    session::init(token, local)?;
    Ok(Some(pg_sys::Datum::from(0)))
}
// The statement carries the token: keep it out of the server log when this fails.
v1_function!(
    auth_jwt_session_init,
    pg_finfo_auth_jwt_session_init,
    jwt_session_init,
    hide_statement = true
);

pgrx::extension_sql!(
    r#"
CREATE FUNCTION auth.jwt_session_init(jwt text, local boolean DEFAULT false) RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'auth_jwt_session_init';
COMMENT ON FUNCTION auth.jwt_session_init(text, boolean) IS
    'Verifies a JWT and makes its claims the session; local => true ends it with the transaction';
"#,
    name = "session_api",
);
