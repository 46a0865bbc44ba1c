//! PostgreSQL 18's OAuth login (`oauth` in pg_hba.conf, SASL OAUTHBEARER) with pg_rls_auth as
//! the validator library (`oauth_validator_libraries = 'pg_rls_auth'`): a login presenting a
//! JWT is accepted only when it verifies against the configured keys and passes every claim
//! check a session token gets, plus `pg_rls_auth_core::oauth_login`'s rules (the pg_hba line's
//! issuer and scopes, an audience from `pg_rls_auth.audience`, `exp`, and the role under
//! `delegate_ident_mapping=1`). The verified claims then become the connection's login session
//! (see `session`): RLS sees who logged in without any `jwt_session_init` call.
//!
//! Validation runs during authentication: before a database is chosen and before per-database
//! and per-role settings apply, so only keys from postgresql.conf and ALTER SYSTEM reach it,
//! and no table can be read (revocations are checked at the connection's first statement).
//! Failures tell the client nothing but "OAuth bearer authentication failed"; the reason goes
//! to the server log, never the token.

use crate::guc;
use crate::key_config;
use crate::session;
use pg_rls_auth_core::oauth_login::{self, LoginRules, Refusal};
use pg_rls_auth_core::verify_token;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::Ordering;

/// `ValidatorModuleState` (libpq/oauth.h, PostgreSQL 18).
#[repr(C)]
pub struct ValidatorModuleState {
    sversion: i32,
    private_data: *mut c_void,
}

/// `ValidatorModuleResult` (libpq/oauth.h, PostgreSQL 18).
#[repr(C)]
pub struct ValidatorModuleResult {
    authorized: bool,
    authn_id: *mut c_char,
}

type ValidateCallback = unsafe extern "C-unwind" fn(
    *const ValidatorModuleState,
    *const c_char,
    *const c_char,
    *mut ValidatorModuleResult,
) -> bool;

/// `OAuthValidatorCallbacks` (libpq/oauth.h, PostgreSQL 18).
#[repr(C)]
pub struct OAuthValidatorCallbacks {
    magic: u32,
    startup_cb: Option<unsafe extern "C-unwind" fn(*mut ValidatorModuleState)>,
    shutdown_cb: Option<unsafe extern "C-unwind" fn(*mut ValidatorModuleState)>,
    validate_cb: Option<ValidateCallback>,
}

/// `PG_OAUTH_VALIDATOR_MAGIC`: PostgreSQL refuses a library whose callbacks carry another.
const MAGIC: u32 = 0x2025_0220;

static CALLBACKS: OAuthValidatorCallbacks = OAuthValidatorCallbacks {
    magic: MAGIC,
    startup_cb: None,
    shutdown_cb: None,
    validate_cb: Some(validate),
};

/// The entry point PostgreSQL looks up in a validator library.
#[no_mangle]
pub extern "C-unwind" fn _PG_oauth_validator_module_init() -> *const OAuthValidatorCallbacks {
    &CALLBACKS
}

unsafe extern "C" {
    /// `src/oauth_hba.c`: the connection's pg_hba line's `issuer`, `scope` and
    /// `delegate_ident_mapping`, read with PostgreSQL's own headers (pgrx does not bind
    /// `Port` or `HbaLine`). False when there is no line. Cannot raise: it reads three fields.
    fn pg_rls_auth_oauth_hba(
        issuer: *mut *const c_char,
        scope: *mut *const c_char,
        skip_usermap: *mut bool,
    ) -> bool;
}

/// A successful login: the identity for `SYSTEM_USER` and the claims, as JSON.
struct Login {
    authn_id: String,
    claims_json: String,
}

fn refused(reason: impl Into<String>) -> Refusal {
    Refusal(reason.into())
}

fn c_text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Refusal> {
    if p.is_null() {
        return Err(refused(format!("pg_hba.conf sets no {what}")));
    }
    // SAFETY: a non-NULL pointer PostgreSQL gave us to a NUL-terminated string that lives for
    // the whole authentication (the pg_hba line, or the validate callback's arguments).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| refused(format!("the {what} is not valid UTF-8")))
}

/// Decides one login: everything here is plain Rust over the token and settings, and cannot
/// raise.
fn login(token: &str, role: &str) -> Result<Login, Refusal> {
    let (mut issuer, mut scope, mut skip_usermap) = (std::ptr::null(), std::ptr::null(), false);
    // SAFETY: three valid, writable locals; the shim only reads MyProcPort->hba.
    if !unsafe { pg_rls_auth_oauth_hba(&mut issuer, &mut scope, &mut skip_usermap) } {
        return Err(refused("the connection has no pg_hba line"));
    }
    let issuer = c_text(issuer, "issuer")?;
    let scope = c_text(scope, "scope")?;
    let config = key_config::load(guc::CONFIG_GENERATION.load(Ordering::Relaxed));
    let keys = config
        .keys
        .as_ref()
        .map_err(|e| refused(e.message.clone()))?;
    if !config.mode.has_keys {
        return Err(refused(
            "no key is configured in postgresql.conf or by ALTER SYSTEM (per-database and per-role settings do not apply during authentication)",
        ));
    }
    let verified = verify_token(token, keys, &config.policy, session::now_secs())
        .map_err(|e| refused(e.message))?;
    let claim_name = |setting, name| {
        guc::string_value(setting, name)
            .map(Option::unwrap_or_default)
            .map_err(|e| refused(e.message))
    };
    let role_claim = claim_name(&guc::OAUTH_ROLE_CLAIM, "pg_rls_auth.oauth_role_claim")?;
    let rules = LoginRules {
        issuer,
        scope,
        role: skip_usermap.then_some((role, role_claim)),
        authn_claim: claim_name(&guc::OAUTH_AUTHN_CLAIM, "pg_rls_auth.oauth_authn_claim")?,
        audiences: &config.policy.audiences,
    };
    let authn_id = oauth_login::check(&verified.claims, &rules)?;
    Ok(Login {
        authn_id,
        claims_json: verified.claims.to_json(),
    })
}

/// # Safety
/// Called only by PostgreSQL (auth-oauth.c) during authentication, on the main thread, with a
/// NUL-terminated token and role and a zeroed, writable result.
#[pg_guard]
unsafe extern "C-unwind" fn validate(
    _state: *const ValidatorModuleState,
    token: *const c_char,
    role: *const c_char,
    result: *mut ValidatorModuleResult,
) -> bool {
    let outcome = c_text(token, "token").and_then(|token| {
        let role = c_text(role, "role")?;
        login(token, role)
    });
    match outcome {
        Ok(login) => {
            let id = std::ffi::CString::new(login.authn_id).unwrap_or_default();
            // SAFETY: `result` is PostgreSQL's (caller's obligation). pstrdup copies into the
            // current (authentication) memory context, which PostgreSQL frees after copying
            // the identity; it raises only when out of memory (guarded: a panic for this
            // function's #[pg_guard], which makes it an ERROR, FATAL during authentication).
            unsafe {
                (*result).authn_id = pg_sys::pstrdup(id.as_ptr());
                (*result).authorized = true;
            }
            session::start_login(&login.claims_json);
        }
        Err(Refusal(reason)) => {
            // The reason to the server log only: during authentication PostgreSQL sends the
            // client nothing below ERROR. Never the token.
            pgrx::log!("pg_rls_auth: OAuth login refused: {reason}");
            // SAFETY: as above; a plain write.
            unsafe { (*result).authorized = false };
        }
    }
    true
}
