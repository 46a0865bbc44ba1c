//! Reading settings: this extension's own string settings without copying, and settings other
//! extensions define (PostgREST's `request.jwt.claims`), found the way each PostgreSQL version
//! allows (see `pg_versions`).

use super::{LOGIN_SESSION, SESSION};
use crate::pg_versions;
use pg_rls_auth_core::AuthError;
use pgrx::guc::GucSetting;
use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// A string setting's bytes without copying; empty and unset are both None.
pub fn bytes_value(setting: &GucSetting<Option<CString>>) -> Option<&'static [u8]> {
    // SAFETY: as_ptr points at the `char *` that DefineCustomStringVariable registered and
    // that PostgreSQL rewrites when the value changes; read on the main thread, the only one
    // that writes it. A plain read: nothing can raise.
    let ptr = unsafe { *setting.as_ptr() };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-NULL value is a NUL-terminated string owned by the GUC machinery. It is
    // freed once the setting is replaced (SET, RESET, reload, end of transaction) and no
    // saved state refers to it, so `'static` is an assumption: every caller uses or copies
    // the bytes before anything can change this setting (`session::start` sets only
    // `pg_rls_auth.session` while it holds `pg_session_jwt.jwt`'s value).
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    (!bytes.is_empty()).then_some(bytes)
}

/// A string setting as text; empty and unset are both None. A value that is not UTF-8 (set
/// from a SQL_ASCII database, say) is a configuration error naming the setting, never
/// "unset": an unreadable key or claim check must fail closed.
pub fn string_value(
    setting: &GucSetting<Option<CString>>,
    name: &str,
) -> Result<Option<&'static str>, AuthError> {
    bytes_value(setting)
        .map(|b| {
            std::str::from_utf8(b)
                .map_err(|_| AuthError::bad_config(format!("{name} is not valid UTF-8")))
        })
        .transpose()
}

/// A string setting this extension does not define (PostgREST's `request.jwt.claims`), read on
/// the per-row path of the fallback. How it is found depends on the PostgreSQL version (see
/// `pg_versions`).
#[derive(Default)]
pub struct ForeignSetting(pg_versions::SettingLookup);

impl ForeignSetting {
    /// The current value of setting `name` (always the same for one instance) as bytes; empty
    /// and unset are both None.
    pub fn value(&self, name: &CStr) -> Option<&'static [u8]> {
        let bytes = self.0.string_value(name)?;
        (!bytes.is_empty()).then_some(bytes)
    }
}

/// The claims an OAuth login presented, if any (written only by the validator, as JSON).
pub fn login_session_value() -> Option<&'static str> {
    string_value(&LOGIN_SESSION, "pg_rls_auth.login_session")
        .ok()
        .flatten()
}

/// The stored session, if any (written only by this extension, as JSON text).
pub fn session_value() -> Option<&'static str> {
    string_value(&SESSION, "pg_rls_auth.session").ok().flatten()
}

/// Whether a setting's current value was set anywhere (a file, ALTER SYSTEM/ROLE/DATABASE,
/// SET), rather than left at its built-in default. Found by name, without regard to case.
pub fn explicitly_set(name: &CStr) -> bool {
    pg_versions::setting_source(name)
        .is_some_and(|source| source != pg_sys::GucSource::PGC_S_DEFAULT)
}
