//! Settings. Everything that decides whether a token is trusted is superuser-only (SUSET) or
//! fixed at connection start (BACKEND): no ordinary role can bring its own key or claims.
//! Assign hooks only bump a generation counter; values are parsed lazily where they are used,
//! so a malformed value never stops the server and fails closed at the first auth.* call.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::{pg_guard, pg_sys, PostgresGucEnum};
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};

mod read;
mod startup_overrides;
mod write;

pub use read::{
    bytes_value, explicitly_set, login_session_value, session_value, string_value, ForeignSetting,
};
pub use startup_overrides::check_startup_overrides;
#[cfg(feature = "pg18")]
pub use write::set_login_session;
pub use write::{set_session, set_token_setting, with_settings, PINNED_SEARCH_PATH};

pub static JWKS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static JWT_SECRET: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static JWT_SECRET_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static JWT_SECRET_IS_BASE64: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static ISSUER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static AUDIENCE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static LEEWAY: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static REQUIRE_EXP: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static MAX_TOKEN_BYTES: GucSetting<i32> =
    GucSetting::<i32>::new(pg_rls_auth_core::DEFAULT_MAX_TOKEN_BYTES as i32);
pub static TRUST_REQUEST_CLAIMS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static TRUSTED_PROXY: GucSetting<bool> = GucSetting::<bool>::new(false);
/// Whether the planner hook evaluates session accessor calls once per execution (`hoist`).
pub static HOIST_SESSION_CALLS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static SESSION_JWK: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static NEON_SESSION_JWK: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// pg_session_jwt's token setting, which any role may SET: verified before it is used.
pub static NEON_SESSION_JWT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// PostgREST's claims and its legacy `sub`, defined here (unless another library defines them)
/// so that the fallback learns of every change from an assign hook instead of looking the
/// settings up per call.
pub static REQUEST_JWT_CLAIMS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static REQUEST_JWT_CLAIM_SUB: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
pub static AUDIT_LOG: GucSetting<bool> = GucSetting::<bool>::new(false);
/// The verified session: `<epoch>:<claims JSON>`, written only by auth.jwt_session_init().
pub static SESSION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// The claims of the token an OAuth login (PostgreSQL 18) presented, as JSON.
pub static LOGIN_SESSION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
#[cfg(feature = "pg18")]
pub static OAUTH_AUTHN_CLAIM: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"sub"));
#[cfg(feature = "pg18")]
pub static OAUTH_ROLE_CLAIM: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"role"));
/// Managed keys (see `managed_keys`): sources the background worker fetches, and its timing.
pub static JWKS_URLS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static OIDC_ISSUERS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static HTTP_CA_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static JWKS_REFRESH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(600);
pub static JWKS_REFRESH_WAIT: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static RATE_LIMIT_STORE: GucSetting<RateLimitStore> =
    GucSetting::<RateLimitStore>::new(RateLimitStore::Auto);
pub static RATE_LIMIT_ACTION: GucSetting<RateLimitAction> =
    GucSetting::<RateLimitAction>::new(RateLimitAction::Error);
pub static RATE_LIMIT_KEYS: GucSetting<RateLimitKeys> =
    GucSetting::<RateLimitKeys>::new(RateLimitKeys::Any);
pub static RATE_LIMIT_SLOTS: GucSetting<i32> = GucSetting::<i32>::new(65_536);
pub static RATE_LIMIT_LOCK_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(1000);

pub const SESSION_GUC: &CStr = c"pg_rls_auth.session";
pub const LOGIN_SESSION_GUC: &CStr = c"pg_rls_auth.login_session";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
pub enum RateLimitStore {
    #[name = c"auto"]
    Auto,
    #[name = c"memory"]
    Memory,
    #[name = c"table"]
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
pub enum RateLimitAction {
    #[name = c"error"]
    Error,
    #[name = c"deny"]
    Deny,
}

/// Which keys the limiter's callers may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PostgresGucEnum)]
pub enum RateLimitKeys {
    /// Any key, from any role (policies derive it from the session themselves).
    #[name = c"any"]
    Any,
    /// Only the session's own: explicit keys need membership in `rls_auth_admin`.
    #[name = c"session"]
    Session,
}

/// Bumped whenever a setting that affects verification changes (including at rollback).
pub static CONFIG_GENERATION: AtomicU64 = AtomicU64::new(1);
/// Bumped whenever `pg_rls_auth.session` changes (SET, RESET, rollback, parallel restore).
pub static SESSION_GENERATION: AtomicU64 = AtomicU64::new(1);
/// Bumped whenever `pg_rls_auth.login_session` changes.
pub static LOGIN_GENERATION: AtomicU64 = AtomicU64::new(1);
/// Bumped whenever `pg_session_jwt.jwt` changes.
pub static TOKEN_SETTING_GENERATION: AtomicU64 = AtomicU64::new(1);

/// Bumped whenever `request.jwt.claims` or `request.jwt.claim.sub` changes (when ours).
pub static REQUEST_CLAIMS_GENERATION: AtomicU64 = AtomicU64::new(1);
/// Whether `request.jwt.claims` and `request.jwt.claim.sub` are ours (no other library
/// defined them first).
pub static REQUEST_CLAIMS_DEFINED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether pg_session_jwt.jwt is ours (pg_session_jwt itself may be loaded and own it).
pub(crate) static TOKEN_SETTING_DEFINED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// # Safety
/// Called only by PostgreSQL as this setting's assign hook, on the main thread.
#[pg_guard]
unsafe extern "C-unwind" fn config_changed_string(_new: *const c_char, _extra: *mut c_void) {
    CONFIG_GENERATION.fetch_add(1, Ordering::Relaxed);
}
/// # Safety
/// Called only by PostgreSQL as this setting's assign hook, on the main thread.
#[pg_guard]
unsafe extern "C-unwind" fn config_changed_bool(_new: bool, _extra: *mut c_void) {
    CONFIG_GENERATION.fetch_add(1, Ordering::Relaxed);
}
/// # Safety
/// Called only by PostgreSQL as this setting's assign hook, on the main thread.
#[pg_guard]
unsafe extern "C-unwind" fn config_changed_int(_new: i32, _extra: *mut c_void) {
    CONFIG_GENERATION.fetch_add(1, Ordering::Relaxed);
}
/// # Safety
/// Called only by PostgreSQL as `pg_rls_auth.session`'s assign hook, on the main thread.
#[pg_guard]
unsafe extern "C-unwind" fn session_changed(_new: *const c_char, _extra: *mut c_void) {
    SESSION_GENERATION.fetch_add(1, Ordering::Relaxed);
}
/// # Safety
/// Called only by PostgreSQL as `pg_rls_auth.login_session`'s assign hook, on the main thread.
#[pg_guard]
unsafe extern "C-unwind" fn login_session_changed(_new: *const c_char, _extra: *mut c_void) {
    LOGIN_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The login session is written only by the OAuth validator, at the highest priority
/// (`PGC_S_OVERRIDE`, which no later SET, RESET or role setting displaces), and reaches
/// parallel workers the same way. Any other source is refused, superusers' included.
///
/// # Safety
/// Called only by PostgreSQL as a string check hook, on the main thread, with a valid `newval`.
#[pg_guard]
unsafe extern "C-unwind" fn check_login_source(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: `newval` is PostgreSQL's check-hook argument (our caller's obligation).
    unsafe {
        only_from(
            newval,
            source,
            pg_sys::GucSource::PGC_S_OVERRIDE,
            Some(c"pg_rls_auth.login_session can only be set by an OAuth login"),
            c"It holds the claims of the token the connection logged in with (PostgreSQL 18, oauth in pg_hba.conf).",
        )
    }
}

/// # Safety
/// Called only by PostgreSQL as `pg_session_jwt.jwt`'s assign hook, on the main thread.
#[pg_guard]
unsafe extern "C-unwind" fn token_setting_changed(_new: *const c_char, _extra: *mut c_void) {
    TOKEN_SETTING_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// # Safety
/// Called only by PostgreSQL as `request.jwt.claims`' or `request.jwt.claim.sub`'s assign hook,
/// on the main thread.
#[pg_guard]
unsafe extern "C-unwind" fn request_claims_changed(_new: *const c_char, _extra: *mut c_void) {
    REQUEST_CLAIMS_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// True when a check hook is given an empty or absent value (always allowed: it means unset).
///
/// # Safety
/// `newval` must be a string check hook's `newval`: a valid pointer to NULL or to a
/// NUL-terminated string.
unsafe fn is_empty(newval: *mut *mut c_char) -> bool {
    // SAFETY: `newval` is valid (caller's obligation); `**newval` is read only when the string
    // pointer is non-NULL (short-circuit), and a NUL-terminated string has a first byte.
    unsafe { (*newval).is_null() || **newval == 0 }
}

/// A check hook's verdict for a setting only one source may write: an empty value and the
/// built-in default always pass, a value from `allowed` passes, anything else is refused.
///
/// # Safety
/// As `is_empty`.
unsafe fn only_from(
    newval: *mut *mut c_char,
    source: pg_sys::GucSource::Type,
    allowed: pg_sys::GucSource::Type,
    message: Option<&CStr>,
    detail: &CStr,
) -> bool {
    // SAFETY: the caller's obligation, passed on.
    let empty = unsafe { is_empty(newval) };
    if empty || source == pg_sys::GucSource::PGC_S_DEFAULT || source == allowed {
        return true;
    }
    refuse(message, detail)
}

/// Refuses a value in a check hook, with our own message when `message` is given (PostgreSQL's
/// default one quotes the value) and `detail`.
fn refuse(message: Option<&CStr>, detail: &CStr) -> bool {
    // SAFETY: called only from our check hooks, on the main thread: PostgreSQL clears
    // GUC_check_errmsg_string/GUC_check_errdetail_string before the hook and reads them right
    // after it returns false, so writing them here is the documented protocol. pstrdup
    // (guarded) copies a NUL-terminated string into CurrentMemoryContext, which lives past
    // that read. It raises only when out of memory: the wrapper turns that into a panic that
    // the hook's #[pg_guard] raises again; nothing here needs dropping.
    unsafe {
        if let Some(message) = message {
            pg_sys::GUC_check_errmsg_string = pg_sys::pstrdup(message.as_ptr());
        }
        pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(detail.as_ptr());
    }
    false
}

/// A proxy's key is taken from the startup packet only: not from postgresql.conf, ALTER ROLE /
/// DATABASE SET, or SET, where someone other than the proxy could have put it.
///
/// # Safety
/// Called only by PostgreSQL as a string check hook, on the main thread, with a valid `newval`.
#[pg_guard]
unsafe extern "C-unwind" fn check_startup_only(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: `newval` is PostgreSQL's check-hook argument (our caller's obligation).
    unsafe {
        only_from(
            newval,
            source,
            pg_sys::GucSource::PGC_S_CLIENT,
            None,
            c"It can only be sent in the connection startup packet (trusted-proxy mode).",
        )
    }
}

/// The HMAC secret may not be stored per database, per role or on a function: PostgreSQL keeps
/// those values in catalogs every role can read (pg_db_role_setting, pg_proc.proconfig).
/// ALTER DATABASE/ROLE and CREATE FUNCTION ... SET validate with PGC_S_TEST; connection start
/// applies stored values with the database/user sources.
///
/// # Safety
/// Called only by PostgreSQL as a string check hook, on the main thread, with a valid `newval`.
#[pg_guard]
unsafe extern "C-unwind" fn check_secret_source(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    use pg_sys::GucSource::*;
    let catalogued = matches!(
        source,
        PGC_S_TEST | PGC_S_DATABASE | PGC_S_USER | PGC_S_DATABASE_USER
    );
    // SAFETY: `newval` is PostgreSQL's check-hook argument (our caller's obligation).
    if unsafe { is_empty(newval) } || !catalogued {
        return true;
    }
    // Our own message: PostgreSQL's default one would quote the secret.
    refuse(
        Some(c"pg_rls_auth.jwt_secret cannot be set per database, per role or on a function"),
        c"Those values are readable by every role. Set it in postgresql.conf or with ALTER SYSTEM.",
    )
}

fn define_string(
    name: &'static CStr,
    short: &'static CStr,
    long: &'static CStr,
    setting: &'static GucSetting<Option<CString>>,
    context: GucContext,
    flags: GucFlags,
    (check, assign): (pg_sys::GucStringCheckHook, pg_sys::GucStringAssignHook),
) {
    // SAFETY: called only from `init` (_PG_init, main thread) with 'static names and setting.
    // pgrx requires hooks that cannot leak a panic: every `check`/`assign` that `init` passes
    // is a #[pg_guard] function of this module. DefineCustomStringVariable (guarded) may run
    // those hooks and raises ERROR for a bad or duplicate name; that becomes a panic that
    // _PG_init's #[pg_guard] raises again.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            name, short, long, setting, context, flags, check, assign, None,
        )
    }
}

fn define_bool(
    name: &'static CStr,
    short: &'static CStr,
    long: &'static CStr,
    setting: &'static GucSetting<bool>,
    context: GucContext,
) {
    // SAFETY: as in `define_string`: _PG_init only, 'static arguments, and the only hook is
    // `config_changed_bool`, a #[pg_guard] function; an ERROR becomes a panic for _PG_init's
    // guard.
    unsafe {
        GucRegistry::define_bool_guc_with_hooks(
            name,
            short,
            long,
            setting,
            context,
            GucFlags::default(),
            None,
            Some(config_changed_bool),
            None,
        )
    }
}

/// True when the named setting is already defined by a loaded library (not a placeholder).
fn defined_elsewhere(name: &CStr) -> bool {
    // SAFETY: main thread; `name` is NUL-terminated. With missing_ok = true an unknown name
    // gives 0 instead of an ERROR: nothing can raise.
    let flags = unsafe { pg_sys::GetConfigOptionFlags(name.as_ptr(), true) };
    flags != 0 && (flags & pg_sys::GUC_CUSTOM_PLACEHOLDER as i32) == 0
}

fn not_in_sample() -> GucFlags {
    GucFlags::from_bits_retain(pg_sys::GUC_NOT_IN_SAMPLE as i32)
}

pub fn init() {
    startup_overrides::find();
    let hidden = GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL;
    define_string(
        c"pg_rls_auth.jwks",
        c"Public keys that verify tokens: a JWK or a JWKS (JSON).",
        c"Keys are picked by the token's kid; each key's alg, use and key_ops are honoured. Superuser-only; reload to rotate.",
        &JWKS,
        GucContext::Suset,
        GucFlags::default(),
        (None, Some(config_changed_string)),
    );
    define_string(
        c"pg_rls_auth.jwt_secret",
        c"HMAC secret for HS256/HS384/HS512 tokens (at least 32 bytes).",
        c"Hidden from non-superusers. Set it in postgresql.conf or with ALTER SYSTEM, not per database or role.",
        &JWT_SECRET,
        GucContext::Suset,
        hidden,
        (Some(check_secret_source), Some(config_changed_string)),
    );
    define_string(
        c"pg_rls_auth.jwt_secret_file",
        c"A file holding the HMAC secret (instead of pg_rls_auth.jwt_secret).",
        c"Read by the server; neither the secret nor the file's contents reach any log. Only in postgresql.conf or ALTER SYSTEM. A replaced file is read again at the next verification.",
        &JWT_SECRET_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
        (None, Some(config_changed_string)),
    );
    define_bool(
        c"pg_rls_auth.jwt_secret_is_base64",
        c"Whether pg_rls_auth.jwt_secret is base64-encoded.",
        c"",
        &JWT_SECRET_IS_BASE64,
        GucContext::Suset,
    );
    define_string(
        c"pg_rls_auth.issuer",
        c"When set, a token's iss claim must equal it.",
        c"",
        &ISSUER,
        GucContext::Suset,
        GucFlags::default(),
        (None, Some(config_changed_string)),
    );
    define_string(
        c"pg_rls_auth.audience",
        c"When set, a token's aud claim must contain one of these (comma-separated) audiences; PostgreSQL 18 OAuth logins require it.",
        c"",
        &AUDIENCE,
        GucContext::Suset,
        GucFlags::default(),
        (None, Some(config_changed_string)),
    );
    define_managed_key_settings();
    // SAFETY: as in `define_string`: _PG_init only, 'static arguments, and the only hook is
    // `config_changed_int`, a #[pg_guard] function; an ERROR becomes a panic for _PG_init's
    // guard.
    unsafe {
        GucRegistry::define_int_guc_with_hooks(
            c"pg_rls_auth.leeway",
            c"Clock skew tolerated when checking exp and nbf.",
            c"",
            &LEEWAY,
            0,
            3600,
            GucContext::Suset,
            GucFlags::UNIT_S,
            None,
            Some(config_changed_int),
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"pg_rls_auth.max_token_bytes",
            c"Longest token accepted.",
            c"Longer tokens are refused before any parsing.",
            &MAX_TOKEN_BYTES,
            256,
            1024 * 1024,
            GucContext::Suset,
            GucFlags::UNIT_BYTE,
            None,
            Some(config_changed_int),
            None,
        );
    }
    define_bool(
        c"pg_rls_auth.require_exp",
        c"Whether tokens must carry an exp claim.",
        c"",
        &REQUIRE_EXP,
        GucContext::Suset,
    );
    define_bool(
        c"pg_rls_auth.trust_request_claims",
        c"With no key configured, read claims from request.jwt.claims (PostgREST, Supabase).",
        c"Ignored while a key is configured. Turn off where clients can SET request.jwt.claims themselves.",
        &TRUST_REQUEST_CLAIMS,
        GucContext::Suset,
    );
    define_bool(
        c"pg_rls_auth.trusted_proxy",
        c"Accept a JWK sent by the connecting proxy at connection start.",
        c"Only for deployments where a proxy owns every connection (as Neon's does). Tokens verified by that key need an increasing integer jti.",
        &TRUSTED_PROXY,
        GucContext::Suset,
    );
    // Not a trust decision: no assign hook (nothing to reload when it changes).
    GucRegistry::define_bool_guc(
        c"pg_rls_auth.hoist_session_calls",
        c"Evaluate session accessor calls (auth.user_id(), auth.jwt() ->> 'x', ...) once per execution, as (SELECT auth.user_id()) is.",
        c"The planner then runs each such expression as an initplan, which can also drive an index scan; off plans them as written (once per row).",
        &HOIST_SESSION_CALLS,
        GucContext::Suset,
        GucFlags::default(),
    );
    define_string(
        c"pg_rls_auth.session_jwk",
        c"JWK sent by a trusted proxy in the startup packet.",
        c"Used only when pg_rls_auth.trusted_proxy is on.",
        &SESSION_JWK,
        GucContext::Backend,
        not_in_sample(),
        (Some(check_startup_only), Some(config_changed_string)),
    );
    if !defined_elsewhere(c"pg_session_jwt.jwt") {
        define_string(
            c"pg_session_jwt.jwt",
            c"pg_session_jwt's token setting: a JWT that becomes the session once it verifies.",
            c"Any role may set it; the token is verified before any claim is answered. auth.jwt_session_init() sets it too.",
            &NEON_SESSION_JWT,
            GucContext::Userset,
            not_in_sample() | GucFlags::NOT_WHILE_SEC_REST,
            (None, Some(token_setting_changed)),
        );
        TOKEN_SETTING_DEFINED.store(true, Ordering::Relaxed);
    }
    // PostgREST sets these (any role may, as with its placeholders). Never reserve the prefix:
    // it is not ours.
    if !defined_elsewhere(c"request.jwt.claims") && !defined_elsewhere(c"request.jwt.claim.sub") {
        define_string(
            c"request.jwt.claims",
            c"PostgREST's JWT claims (JSON), read by pg_rls_auth's fallback while no key is configured.",
            c"Any role may set it, as PostgREST does per request; pg_rls_auth ignores it while a key is configured.",
            &REQUEST_JWT_CLAIMS,
            GucContext::Userset,
            not_in_sample(),
            (None, Some(request_claims_changed)),
        );
        define_string(
            c"request.jwt.claim.sub",
            c"PostgREST's legacy sub claim, read by pg_rls_auth's fallback (it wins over request.jwt.claims).",
            c"Any role may set it; pg_rls_auth ignores it while a key is configured.",
            &REQUEST_JWT_CLAIM_SUB,
            GucContext::Userset,
            not_in_sample(),
            (None, Some(request_claims_changed)),
        );
        REQUEST_CLAIMS_DEFINED.store(true, Ordering::Relaxed);
    }
    if !defined_elsewhere(c"pg_session_jwt.jwk") {
        define_string(
            c"pg_session_jwt.jwk",
            c"pg_session_jwt's name for pg_rls_auth.session_jwk.",
            c"Used only when pg_rls_auth.trusted_proxy is on.",
            &NEON_SESSION_JWK,
            GucContext::Backend,
            not_in_sample(),
            (Some(check_startup_only), Some(config_changed_string)),
        );
    }
    define_bool(
        c"pg_rls_auth.audit_log",
        c"Log every token verification and rejection.",
        c"",
        &AUDIT_LOG,
        GucContext::Suset,
    );
    define_string(
        SESSION_GUC,
        c"The verified session (internal; written by auth.jwt_session_init).",
        c"",
        &SESSION,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL
            | not_in_sample()
            | GucFlags::DISALLOW_IN_FILE
            | GucFlags::SUPERUSER_ONLY,
        (None, Some(session_changed)),
    );
    define_string(
        LOGIN_SESSION_GUC,
        c"The claims an OAuth login presented (internal; written by pg_rls_auth's OAuth validator).",
        c"",
        &LOGIN_SESSION,
        GucContext::Suset,
        GucFlags::NO_SHOW_ALL
            | not_in_sample()
            | GucFlags::DISALLOW_IN_FILE
            | GucFlags::SUPERUSER_ONLY
            | GucFlags::NO_RESET_ALL,
        (Some(check_login_source), Some(login_session_changed)),
    );
    #[cfg(feature = "pg18")]
    define_oauth_settings();
    GucRegistry::define_enum_guc(
        c"pg_rls_auth.rate_limit_store",
        c"Where auth.check_write_rate keeps its state: auto, memory or table.",
        c"auto uses shared memory when the library is preloaded, else the table _pg_rls_auth.write_rate_state.",
        &RATE_LIMIT_STORE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_rls_auth.rate_limit_action",
        c"What auth.check_write_rate does over the limit: error (SQLSTATE PT429) or deny (returns false).",
        c"",
        &RATE_LIMIT_ACTION,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_rls_auth.rate_limit_keys",
        c"Which keys auth.check_write_rate and auth.write_rate_status may be given: any, or only the session's own (session).",
        c"With session, the forms that take an explicit key need membership in the role rls_auth_admin (or superuser); the session-keyed forms key on auth.user_id().",
        &RATE_LIMIT_KEYS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_rls_auth.rate_limit_lock_timeout",
        c"Longest a table-store check waits for another transaction checking the same key.",
        c"Past it the check fails with SQLSTATE 55P03; the other transaction holds the key until it ends.",
        &RATE_LIMIT_LOCK_TIMEOUT,
        1,
        3_600_000,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    // PostgreSQL allows a postmaster-level setting only while preloading (and it only means
    // something then): without preload this setting does not exist.
    // SAFETY: a plain read of a PostgreSQL global, on the main thread during _PG_init.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        define_rate_limit_slots();
    }
    // SAFETY: main thread, in _PG_init, with a NUL-terminated literal. It removes (with a
    // WARNING) leftover placeholders under the prefix, which nothing in this crate points to
    // yet; it raises only when out of memory, a panic here (guarded wrapper) for _PG_init's
    // guard, with nothing live that needs dropping.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"pg_rls_auth".as_ptr()) };
}

/// PostgreSQL 18's OAuth logins (see `oauth_validator`): read during authentication, so only
/// postgresql.conf and ALTER SYSTEM can set them.
#[cfg(feature = "pg18")]
fn define_oauth_settings() {
    define_string(
        c"pg_rls_auth.oauth_authn_claim",
        c"The claim whose value an OAuth login authenticates as (SYSTEM_USER oauth:<value>, pg_ident maps).",
        c"PostgreSQL 18, with oauth_validator_libraries = 'pg_rls_auth'.",
        &OAUTH_AUTHN_CLAIM,
        GucContext::Sighup,
        GucFlags::default(),
        (None, None),
    );
    define_string(
        c"pg_rls_auth.oauth_role_claim",
        c"With delegate_ident_mapping=1, the claim that must name the role an OAuth login asks for.",
        c"PostgreSQL 18, with oauth_validator_libraries = 'pg_rls_auth'.",
        &OAUTH_ROLE_CLAIM,
        GucContext::Sighup,
        GucFlags::default(),
        (None, None),
    );
}

/// Managed keys: read by the background worker and by every backend, so only postgresql.conf
/// and ALTER SYSTEM can set them, and both see the same values after a reload.
fn define_managed_key_settings() {
    define_string(
        c"pg_rls_auth.jwks_urls",
        c"Comma-separated JWKS URLs whose keys verify tokens, fetched by a background worker.",
        c"Needs shared_preload_libraries. https only (http only to loopback). See auth.jwks_status().",
        &JWKS_URLS,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
        (None, Some(config_changed_string)),
    );
    define_string(
        c"pg_rls_auth.oidc_issuers",
        c"Comma-separated OpenID Connect issuers whose keys (found by discovery) verify their own tokens.",
        c"Each is resolved through <issuer>/.well-known/openid-configuration; its keys verify only tokens whose iss is that issuer.",
        &OIDC_ISSUERS,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
        (None, Some(config_changed_string)),
    );
    define_string(
        c"pg_rls_auth.http_ca_file",
        c"A PEM bundle of certificate authorities trusted, besides the system's, when fetching keys.",
        c"",
        &HTTP_CA_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
        (None, None),
    );
    GucRegistry::define_int_guc(
        c"pg_rls_auth.jwks_refresh_interval",
        c"How often the background worker fetches managed keys again.",
        c"A response's Cache-Control max-age takes its place, within 1 min to 24 h.",
        &JWKS_REFRESH_INTERVAL,
        60,
        86_400,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_rls_auth.jwks_refresh_wait",
        c"Longest a token with an unknown kid waits for the managed keys to be fetched again.",
        c"Such refreshes happen at most once per source every 30 s; 0 never waits.",
        &JWKS_REFRESH_WAIT,
        0,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
}

fn define_rate_limit_slots() {
    GucRegistry::define_int_guc(
        c"pg_rls_auth.rate_limit_slots",
        c"Keys the shared-memory rate-limit store holds (needs shared_preload_libraries).",
        c"When full, fully replenished keys are evicted first, then the least recently checked.",
        &RATE_LIMIT_SLOTS,
        1024,
        64 * 1024 * 1024,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}
