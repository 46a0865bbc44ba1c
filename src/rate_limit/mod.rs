//! auth.check_write_rate() and friends: GCRA (see `pg_rls_auth_core::gcra`) over one of two
//! stores, chosen by `pg_rls_auth.rate_limit_store`.

mod memory_store;
mod table_heap;
mod table_store;

use crate::errors::{
    OrReport, Raise, INSUFFICIENT_PRIVILEGE, INVALID_PARAMETER_VALUE,
    OBJECT_NOT_IN_PREREQUISITE_STATE, READ_ONLY_SQL_TRANSACTION, TOO_MANY_REQUESTS,
};
use crate::fmgr::{Answer, Boolean, Datum};
use crate::guc::{self, RateLimitAction, RateLimitKeys, RateLimitStore};
use crate::session;
use crate::sql_function;
use pg_rls_auth_core::gcra::{Decision, Limit, NANOS_PER_SEC};
use pgrx::prelude::*;
use std::cell::Cell;

/// Longest bucket + key accepted; the table store indexes them.
const MAX_KEY_BYTES: usize = 1024;

pub use memory_store::{attach_shmem, request_shmem, revocation_epoch};

pub fn init() {
    table_store::init();
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    Memory,
    Table,
}

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Table => "table",
        }
    }
}

fn store() -> Result<Store, Raise> {
    let store = match (guc::RATE_LIMIT_STORE.get(), memory_store::available()) {
        (RateLimitStore::Auto, true) | (RateLimitStore::Memory, true) => Store::Memory,
        (RateLimitStore::Auto, false) | (RateLimitStore::Table, _) => Store::Table,
        (RateLimitStore::Memory, false) => return Err(Raise::new(
            OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_rls_auth.rate_limit_store = memory needs pg_rls_auth in shared_preload_libraries",
        )
        .hint("Add it and restart, or use the table store.")),
    };
    // A hot standby cannot write the table; `auto` picks memory there whenever preloaded.
    // SAFETY: main thread, in a SQL function call; RecoveryInProgress only reads (a local
    // cache, else the shared recovery state) and cannot raise. Guarded wrapper, inside the
    // caller's pgrx guard; no Rust value needing drop is live.
    if store == Store::Table && unsafe { pg_sys::RecoveryInProgress() } {
        return Err(Raise::new(
            READ_ONLY_SQL_TRANSACTION,
            "pg_rls_auth: the table store cannot be used on a hot standby",
        )
        .hint("Preload the library on the standby (shared_preload_libraries = 'pg_rls_auth') so that its memory store is used there."));
    }
    Ok(store)
}

/// Wall-clock time from the coarse clock: a few milliseconds' resolution is plenty for limits
/// counted in seconds, and reading it costs a fraction of the precise clock (a check is a few
/// hundred nanoseconds in all). A clock that lags only makes the limiter stricter.
fn now_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Cannot fail for a valid clock id and pointer.
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_REALTIME_COARSE a valid clock id
    // (Linux); a libc call, not PostgreSQL: it cannot raise.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    i128::from(ts.tv_sec) * NANOS_PER_SEC + i128::from(ts.tv_nsec)
}

fn checked_key<'a>(
    key: Option<&'a str>,
    bucket: Option<&'a str>,
) -> Result<(&'a str, &'a str), Raise> {
    let key = key.ok_or_else(|| {
        Raise::new(
            INVALID_PARAMETER_VALUE,
            "the rate-limit key must not be NULL",
        )
    })?;
    let bucket = bucket.ok_or_else(|| {
        Raise::new(
            INVALID_PARAMETER_VALUE,
            "the rate-limit bucket must not be NULL",
        )
    })?;
    if key.len() + bucket.len() > MAX_KEY_BYTES {
        return Err(Raise::new(
            INVALID_PARAMETER_VALUE,
            format!(
                "the rate-limit key and bucket are {} bytes; at most {MAX_KEY_BYTES} are allowed",
                key.len() + bucket.len()
            ),
        ));
    }
    Ok((key, bucket))
}

/// The role whose members may name any key when `pg_rls_auth.rate_limit_keys = session`. The
/// extension does not create it (roles are cluster-wide): administrators do, and grant it to
/// server-side roles.
const ADMIN_ROLE: &std::ffi::CStr = c"rls_auth_admin";

/// With `rate_limit_keys = session`, only superusers and members of rls_auth_admin may name
/// a key: everyone else may spend and read only their own session's budget.
fn explicit_key_allowed() -> Result<(), Raise> {
    if guc::RATE_LIMIT_KEYS.get() == RateLimitKeys::Any {
        return Ok(());
    }
    // SAFETY: main thread, inside a SQL function call. GetUserId reads a backend variable and
    // cannot raise. superuser_arg, get_role_oid (missing_ok: no ERROR for an absent role) and
    // has_privs_of_role read the syscache and the cached role memberships; they are pgrx's
    // guarded wrappers, so an ERROR (out of memory) is a panic for the caller's guard, and
    // only Copy values are live here.
    let allowed = unsafe {
        let user = pg_sys::GetUserId();
        let admin = pg_sys::get_role_oid(ADMIN_ROLE.as_ptr(), true);
        pg_sys::superuser_arg(user)
            || (admin != pg_sys::InvalidOid && pg_sys::has_privs_of_role(user, admin))
    };
    if allowed {
        return Ok(());
    }
    Err(Raise::new(
        INSUFFICIENT_PRIVILEGE,
        "pg_rls_auth.rate_limit_keys = session: only the session's own budget may be checked",
    )
    .hint("Call auth.check_write_rate(max_writes, window_seconds[, bucket]) or auth.write_rate_status(max_writes, window_seconds[, bucket]), which key on auth.user_id(); naming a key needs membership in rls_auth_admin."))
}

/// Runs `f` on the session's `sub` (what auth.user_id() returns) as the key, checked with
/// `bucket` like an explicit key: the session-keyed forms.
fn with_session_key<R>(
    bucket: Option<&str>,
    f: impl FnOnce(&str, &str) -> Result<R, Raise>,
) -> Result<R, Raise> {
    let session = session::current()?;
    match session.as_ref().and_then(|s| s.user_id.as_deref()) {
        Some(sub) => {
            let (key, bucket) = checked_key(Some(sub), bucket)?;
            f(key, bucket)
        }
        None => Err(Raise::new(
            INVALID_PARAMETER_VALUE,
            "the rate-limit key must not be NULL: there is no session (or it has no sub claim)",
        )
        .hint("The session-keyed forms key on auth.user_id(): start a session with auth.jwt_session_init(token) first.")),
    }
}

fn checked_limit(max_writes: Option<i32>, window_seconds: Option<i32>) -> Result<Limit, Raise> {
    match (max_writes, window_seconds) {
        (Some(m), Some(w)) => Limit::new(m, w).map_err(Raise::from),
        _ => Err(Raise::new(
            INVALID_PARAMETER_VALUE,
            "max_writes and window_seconds must not be NULL",
        )),
    }
}

/// Counters for auth.write_rate_stats(): in shared memory when preloaded, else this backend's.
#[derive(Default, Clone, Copy)]
pub struct Counters {
    pub checks: u64,
    pub admitted: u64,
    pub rejected: u64,
    pub evictions: u64,
}

thread_local! {
    static LOCAL_COUNTERS: Cell<Counters> = Cell::new(Counters::default());
}

/// Counts a table-store check: in shared memory when preloaded, else in this backend.
fn count_table_check(allowed: bool) {
    if !memory_store::count_table_check(allowed) {
        LOCAL_COUNTERS.with(|c| {
            let mut v = c.get();
            v.checks += 1;
            v.admitted += u64::from(allowed);
            v.rejected += u64::from(!allowed);
            c.set(v);
        });
    }
}

fn decide(bucket: &str, key: &str, limit: Limit, consume: bool) -> Result<Decision, Raise> {
    let now = now_ns();
    Ok(match store()? {
        // The memory store counts its checks under its partition lock.
        Store::Memory => memory_store::decide(bucket, key, limit, now, consume),
        Store::Table => {
            let decision = table_store::decide(bucket, key, limit, now, consume)?;
            if consume {
                count_table_check(decision.allowed);
            }
            decision
        }
    })
}

fn seconds(ns: i128) -> f64 {
    ns as f64 / NANOS_PER_SEC as f64
}

fn check_write_rate_with(
    key: Option<&str>,
    max_writes: Option<i32>,
    window_seconds: Option<i32>,
    bucket: Option<&str>,
) -> Answer<Boolean> {
    let (key, bucket) = checked_key(key, bucket)?;
    explicit_key_allowed()?;
    check(key, max_writes, window_seconds, bucket)
}

/// Admits or refuses one write for a checked key.
fn check(
    key: &str,
    max_writes: Option<i32>,
    window_seconds: Option<i32>,
    bucket: &str,
) -> Answer<Boolean> {
    let limit = checked_limit(max_writes, window_seconds)?;
    let decision = decide(bucket, key, limit, true)?;
    if decision.allowed {
        return Ok(Some(Datum::boolean(true)));
    }
    if guc::RATE_LIMIT_ACTION.get() == RateLimitAction::Deny {
        return Ok(Some(Datum::boolean(false)));
    }
    let retry = seconds(decision.retry_after_ns).ceil().max(1.0);
    Err(Raise::new(TOO_MANY_REQUESTS, "rate limit exceeded")
        .detail(format!(
            "The limit is {} write{} per {} seconds (bucket \"{bucket}\").",
            limit.max_writes(),
            if limit.max_writes() == 1 { "" } else { "s" },
            limit.window_seconds()
        ))
        .hint(format!("The next write is allowed in {retry} seconds.")))
}

sql_function! {
    symbol = auth_check_write_rate, finfo = pg_finfo_auth_check_write_rate,
    name = "auth_check_write_rate",
    body = check_write_rate_with(key: Text, max_writes: Integer, window_seconds: Integer, bucket: Text) -> Boolean,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.check_write_rate(key text, max_writes integer, window_seconds integer, bucket text DEFAULT 'default')
    RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'auth_check_write_rate';
COMMENT ON FUNCTION auth.check_write_rate(text, integer, integer, text) IS
    'Admits a write for (bucket, key) under max_writes per window_seconds (GCRA); over the limit raises SQLSTATE PT429';
"#,
}

fn check_write_rate_session(
    max_writes: Option<i32>,
    window_seconds: Option<i32>,
    bucket: Option<&str>,
) -> Answer<Boolean> {
    with_session_key(bucket, |key, bucket| {
        check(key, max_writes, window_seconds, bucket)
    })
}
sql_function! {
    symbol = auth_check_write_rate_session, finfo = pg_finfo_auth_check_write_rate_session,
    name = "auth_check_write_rate_session",
    body = check_write_rate_session(max_writes: Integer, window_seconds: Integer, bucket: Text) -> Boolean,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.check_write_rate(max_writes integer, window_seconds integer, bucket text DEFAULT 'default')
    RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'auth_check_write_rate_session';
COMMENT ON FUNCTION auth.check_write_rate(integer, integer, text) IS
    'Admits a write for the session''s own key (auth.user_id()) in bucket under max_writes per window_seconds; over the limit raises SQLSTATE PT429';
"#,
}

fn check_write_rate_uuid(
    key: Option<pgrx::Uuid>,
    max_writes: Option<i32>,
    window_seconds: Option<i32>,
    bucket: Option<&str>,
) -> Answer<Boolean> {
    let key = key.map(|u| pg_rls_auth_core::claims::uuid_text(*u));
    check_write_rate_with(key.as_deref(), max_writes, window_seconds, bucket)
}
sql_function! {
    symbol = auth_check_write_rate_uuid, finfo = pg_finfo_auth_check_write_rate_uuid,
    name = "auth_check_write_rate_uuid",
    body = check_write_rate_uuid(key: Uuid, max_writes: Integer, window_seconds: Integer, bucket: Text) -> Boolean,
    hide_statement = false,
    sql = r#"
CREATE FUNCTION auth.check_write_rate(key uuid, max_writes integer, window_seconds integer, bucket text DEFAULT 'default')
    RETURNS boolean LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'auth_check_write_rate_uuid';
"#,
}

/// (allowed, remaining, retry_after_seconds, reset_after_seconds) for a checked key.
fn status(
    key: &str,
    bucket: &str,
    max_writes: Option<i32>,
    window_seconds: Option<i32>,
) -> Result<(bool, i32, f64, f64), Raise> {
    let limit = checked_limit(max_writes, window_seconds)?;
    let d = decide(bucket, key, limit, false)?;
    Ok((
        d.allowed,
        d.remaining as i32,
        seconds(d.retry_after_ns),
        seconds(d.reset_after_ns.max(0)),
    ))
}

/// Where a key stands, without consuming a write.
#[pg_extern(volatile, parallel_unsafe)]
fn write_rate_status(
    key: Option<&str>,
    max_writes: Option<i32>,
    window_seconds: Option<i32>,
    bucket: default!(Option<&str>, "'default'"),
) -> TableIterator<
    'static,
    (
        name!(allowed, bool),
        name!(remaining, i32),
        name!(retry_after_seconds, f64),
        name!(reset_after_seconds, f64),
    ),
> {
    let (key, bucket) = checked_key(key, bucket).or_report();
    explicit_key_allowed().or_report();
    TableIterator::once(status(key, bucket, max_writes, window_seconds).or_report())
}

/// Where the session's own key stands, without consuming a write.
#[pg_extern(name = "write_rate_status", volatile, parallel_unsafe)]
fn write_rate_status_of_session(
    max_writes: Option<i32>,
    window_seconds: Option<i32>,
    bucket: default!(Option<&str>, "'default'"),
) -> TableIterator<
    'static,
    (
        name!(allowed, bool),
        name!(remaining, i32),
        name!(retry_after_seconds, f64),
        name!(reset_after_seconds, f64),
    ),
> {
    let row = with_session_key(bucket, |key, bucket| {
        status(key, bucket, max_writes, window_seconds)
    })
    .or_report();
    TableIterator::once(row)
}

/// Forgets a key's state in the current store (privileged: EXECUTE is revoked from PUBLIC).
#[pg_extern(volatile, parallel_unsafe)]
fn reset_write_rate(key: Option<&str>, bucket: default!(Option<&str>, "'default'")) -> bool {
    let (key, bucket) = checked_key(key, bucket).or_report();
    match store().or_report() {
        Store::Memory => memory_store::reset(bucket, key),
        Store::Table => table_store::reset(bucket, key).or_report(),
    }
}

#[pg_extern(volatile, parallel_unsafe)]
fn write_rate_stats() -> TableIterator<
    'static,
    (
        name!(store, String),
        name!(slots_used, i64),
        name!(slots_total, i64),
        name!(checks, i64),
        name!(admitted, i64),
        name!(rejected, i64),
        name!(evictions, i64),
    ),
> {
    let store = store().or_report();
    let counters = memory_store::counters().unwrap_or_else(|| LOCAL_COUNTERS.with(Cell::get));
    let (used, total) = match store {
        Store::Memory => memory_store::usage(),
        Store::Table => (table_store::rows().or_report(), -1),
    };
    TableIterator::once((
        store.name().to_string(),
        used,
        total,
        counters.checks as i64,
        counters.admitted as i64,
        counters.rejected as i64,
        counters.evictions as i64,
    ))
}

pgrx::extension_sql!(
    r#"
-- Internal state lives in a schema of its own, created here by the script (as a superuser) and
-- so owned by one: the database owner who installs the extension owns schema auth and could
-- rename it or create look-alike objects there, but cannot touch this schema.
CREATE SCHEMA _pg_rls_auth;
COMMENT ON SCHEMA _pg_rls_auth IS 'pg_rls_auth internal state; no role uses it directly';
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
"#,
    name = "rate_limit_sql",
);

pgrx::extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION auth.reset_write_rate(text, text) FROM PUBLIC;
"#,
    name = "rate_limit_grants",
    requires = [reset_write_rate],
);
