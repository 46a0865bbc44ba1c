//! Writing settings from C: this extension's verified session (at superuser level, so no
//! statement of an ordinary role can) and pg_session_jwt's token setting; and PostgreSQL's
//! settings pinned for the length of our own queries.

use super::{SESSION_GUC, TOKEN_SETTING_DEFINED};
use pgrx::pg_sys;
use std::ffi::{CStr, CString};
use std::sync::atomic::Ordering;

/// Sets one of this extension's settings from C, as SET or SET LOCAL would, at `context`.
fn set(name: &CStr, value: &str, local: bool, context: pg_sys::GucContext::Type) {
    let value = CString::new(value).expect("JSON text and tokens have no NUL byte");
    let action = if local {
        pg_sys::GucAction::GUC_ACTION_LOCAL
    } else {
        pg_sys::GucAction::GUC_ACTION_SET
    };
    // SAFETY: main thread; `name` and `value` are NUL-terminated and outlive the call (the
    // value is copied). `name` is a setting this extension defined (pg_session_jwt.jwt only
    // when ours), so its record exists. With elevel ERROR it raises for a refused change
    // (e.g. in a parallel worker, or pg_session_jwt.jwt inside a security-restricted
    // operation); pg_sys::set_config_option is pgrx's guarded wrapper, so that ERROR becomes a
    // Rust panic that unwinds (dropping `value`) to the pgrx guard every caller runs under
    // (`fmgr::call`, #[pg_extern], the hooks' #[pg_guard]); no caller holds a RefCell borrow
    // across this call.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            context,
            pg_sys::GucSource::PGC_S_SESSION,
            action,
            true,
            pgrx::PgLogLevel::ERROR as i32,
            false,
        );
    }
}

/// Sets the session setting, at superuser level (no statement of an ordinary role can).
pub fn set_session(value: &str, local: bool) {
    set(SESSION_GUC, value, local, pg_sys::GucContext::PGC_SUSET);
}

#[cfg(feature = "pg18")]
/// Sets the login session once, during authentication, at the highest priority: no later
/// SET, RESET, RESET ALL, DISCARD ALL or role setting displaces it, and parallel workers
/// receive it.
pub fn set_login_session(claims_json: &str) {
    let value = CString::new(claims_json).expect("JSON text has no NUL byte");
    // SAFETY: main thread, during authentication (the OAuth validator): GUCs are initialised,
    // and GUC_ACTION_SET outside a transaction is how startup options are applied too. Name
    // and value are NUL-terminated and outlive the call (copied). With elevel ERROR a refusal
    // raises; the guarded wrapper makes it a panic for the validator's #[pg_guard] (dropping
    // `value`), which fails the login.
    unsafe {
        pg_sys::set_config_option(
            super::LOGIN_SESSION_GUC.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
            pg_sys::GucAction::GUC_ACTION_SET,
            true,
            pgrx::PgLogLevel::ERROR as i32,
            false,
        );
    }
}

/// Sets `pg_session_jwt.jwt` (when it is ours), as the caller's own SET would.
pub fn set_token_setting(token: &str, local: bool) {
    if TOKEN_SETTING_DEFINED.load(Ordering::Relaxed) {
        set(
            c"pg_session_jwt.jwt",
            token,
            local,
            pg_sys::GucContext::PGC_USERSET,
        );
    }
}

/// What our own queries run with, as maintenance commands do: only pg_catalog's functions,
/// operators and types can be found by name (pg_temp is never searched for those).
pub const PINNED_SEARCH_PATH: (&CStr, &CStr) = (c"search_path", c"pg_catalog, pg_temp");

/// Runs `f` with `settings` (name, value) in force, as a function's `SET` clause would, and
/// restores them after; an ERROR in `f` aborts the (sub)transaction, which restores them too.
pub fn with_settings<R>(settings: &[(&CStr, &CStr)], f: impl FnOnce() -> R) -> R {
    // SAFETY: main thread, inside a transaction (GUC nest levels are per transaction). Names
    // and values are NUL-terminated and outlive the calls. GUC_ACTION_SAVE ties the changes
    // to `nest`, and is allowed in parallel mode. With elevel 0 and PGC_S_SESSION,
    // set_config_option raises ERROR on a refused value; the guarded wrapper makes it a panic
    // that unwinds to the caller's pgrx guard, and the abort restores the settings.
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        for (name, value) in settings {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        nest
    };
    let result = f();
    // SAFETY: main thread, same transaction; `nest` is the level NewGUCNestLevel returned
    // above and `f` has returned, so every nested level it made is closed. AtEOXact_GUC
    // restores the settings (the assign hooks of those we pin do not raise; a raise would be
    // a panic, and the abort would restore them).
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
    result
}
