//! Starting and ending sessions: auth.init(), auth.jwt_session_init(), auth.end_session().

use crate::errors::OrReport;
use crate::fmgr::{Answer, Datum, Void};
use crate::session;
use crate::sql_function;
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

/// A NULL token fails like an empty one: it too ends any session.
fn jwt_session_init(jwt: Option<&str>, local: Option<bool>) -> Answer<Void> {
    session::init(jwt.unwrap_or(""), local.unwrap_or(false))?;
    Ok(Some(Datum::void()))
}
// The statement carries the token: keep it out of the server log when this fails.
sql_function! {
    symbol = auth_jwt_session_init, finfo = pg_finfo_auth_jwt_session_init,
    name = "auth_jwt_session_init",
    body = jwt_session_init(jwt: Text, local: Boolean) -> Void,
    hide_statement = true,
    sql = r#"
CREATE FUNCTION auth.jwt_session_init(jwt text, local boolean DEFAULT false) RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'auth_jwt_session_init';
COMMENT ON FUNCTION auth.jwt_session_init(text, boolean) IS
    'Verifies a JWT and makes its claims the session; local => true ends it with the transaction';
"#,
}
