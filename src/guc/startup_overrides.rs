//! Startup-override detection: this extension's settings that a non-superuser's startup packet
//! set before the library was loaded, which PostgreSQL then drops together with the configured
//! values. Every session function refuses to run on such a connection.

use crate::errors::{Raise, INSUFFICIENT_PRIVILEGE};
use crate::pg_versions::guc_variables;
use pgrx::pg_sys;
use std::ffi::CStr;
use std::sync::OnceLock;

const PREFIX: &[u8] = b"pg_rls_auth.";

/// This extension's settings that a non-superuser sent in the startup packet before the library
/// was loaded (it was not preloaded), found by `init`.
static STARTUP_OVERRIDES: OnceLock<Vec<String>> = OnceLock::new();

/// Startup-packet values become a setting's reset value. When the library then loads,
/// PostgreSQL re-applies them with the sender's privileges, refuses them for a non-superuser,
/// and leaves the setting at its built-in default: the configured keys and checks are gone for
/// that connection. Find such settings before defining them, to fail closed.
fn find_startup_overrides() -> Vec<String> {
    // SAFETY: main thread, in _PG_init. With missing_ok = true and restrict_privileged = false
    // GetConfigOption cannot raise; for this bool setting it returns NULL or a NUL-terminated
    // string in a static buffer, read here before any other call can overwrite it.
    let superuser = unsafe {
        let v = pg_sys::GetConfigOption(c"is_superuser".as_ptr(), true, false);
        !v.is_null() && CStr::from_ptr(v).to_bytes() == b"on"
    };
    if superuser {
        return Vec::new();
    }
    let mut found = Vec::new();
    // SAFETY: main thread, in _PG_init. `guc_variables` gives `count` pointers to live
    // records, each with a NUL-terminated name, unchanged while this loop runs (it defines and
    // removes nothing). On 15 nothing here can raise. On 16 and later the raw
    // get_guc_variables pallocs and can raise ERROR (out of memory) unguarded: that longjmp
    // would skip `found` (still empty then, so nothing allocated to leak) and _PG_init's guard.
    unsafe {
        let (vars, count) = guc_variables();
        for i in 0..count {
            let var = &**vars.add(i);
            let name = CStr::from_ptr(var.name).to_bytes();
            let placeholder = var.flags & pg_sys::GUC_CUSTOM_PLACEHOLDER as i32 != 0;
            let from_startup = var.reset_source == pg_sys::GucSource::PGC_S_CLIENT
                || var.source == pg_sys::GucSource::PGC_S_CLIENT;
            // PostgreSQL matches setting names without regard to case, so must we: a client
            // sending PG_RLS_AUTH.JWKS overrides pg_rls_auth.jwks.
            let ours = name.len() > PREFIX.len()
                && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
                && !name.eq_ignore_ascii_case(b"pg_rls_auth.session_jwk");
            if placeholder && from_startup && ours {
                found.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    found
}

/// Records, before the settings are defined (in _PG_init), which ones the startup packet
/// overrode.
pub(super) fn find() {
    let _ = STARTUP_OVERRIDES.set(find_startup_overrides());
}

/// Fails, as every session function does, when a non-superuser's startup packet overrode this
/// extension's settings.
pub fn check_startup_overrides() -> Result<(), Raise> {
    let Some(names) = STARTUP_OVERRIDES.get().filter(|n| !n.is_empty()) else {
        return Ok(());
    };
    Err(
        Raise::new(
            INSUFFICIENT_PRIVILEGE,
            "pg_rls_auth settings were sent at connection start by a role that may not set them",
        )
        .detail(format!(
            "{} replaced the configured values for this connection.",
            names.join(", ")
        ))
        .hint("Connect without them (PGOPTIONS, -c), or preload the library: shared_preload_libraries = 'pg_rls_auth'."),
    )
}
