//! Token revocation: auth.revoke_sessions(), auth.revoke_token() and their inverses, recorded
//! in `_pg_rls_auth.revocations` (durable, crash-safe, replicated to standbys), and the check
//! that refuses a revoked token at `jwt_session_init` and ends a session whose token was
//! revoked at its next statement. The rules are `pg_rls_auth_core::revocation`'s.
//!
//! Sessions the extension did not verify (PostgREST's `request.jwt.claims`) are checked by
//! auth.check_not_revoked(), called in PostgREST's pre-request function.
//!
//! When the check runs: at every init; and before a statement, when the session or the
//! revocations changed since the last check. With the library preloaded, a commit that changed
//! the revocations bumps an epoch in shared memory, so backends read the table only after a
//! change (and not at all while it holds nothing in force). Without preload, and on a standby
//! (whose revocations arrive by replication, unannounced), a backend with a session reads it
//! once per top-level statement: an index lookup. auth.user_id() and the other per-row
//! accessors never read it.

use crate::errors::{OrReport, Raise, INVALID_PARAMETER_VALUE};
use crate::guc;
use crate::internal_tables::{self, Table};
use pg_rls_auth_core::revocation::{self as rules, Freshness, Revocation, TokenIdentity};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::{c_void, CStr};
use std::sync::atomic::Ordering;

/// The revocations naming a token's `sub` or `jti`, and whether any is in force at all.
const LOOKUP: &CStr = c"SELECT kind, pg_catalog.date_part('epoch', issued_before), \
    pg_catalog.date_part('epoch', expires_at) FROM _pg_rls_auth.revocations \
    WHERE (kind OPERATOR(pg_catalog.=) 'sessions' AND value OPERATOR(pg_catalog.=) $1) \
    OR (kind OPERATOR(pg_catalog.=) 'token' AND value OPERATOR(pg_catalog.=) $2) \
    UNION ALL SELECT 'any', NULL, NULL WHERE EXISTS (SELECT FROM _pg_rls_auth.revocations \
    WHERE expires_at IS NULL OR expires_at OPERATOR(pg_catalog.>) pg_catalog.now())";
/// A later revocation of the same sub never narrows an earlier one.
const REVOKE_SESSIONS: &str = "INSERT INTO _pg_rls_auth.revocations AS r \
    (kind, value, issued_before, expires_at, revoked_by) VALUES ('sessions', $1, $2, $3, $4) \
    ON CONFLICT (kind, value) DO UPDATE SET \
    issued_before = GREATEST(r.issued_before, excluded.issued_before), \
    expires_at = CASE WHEN r.expires_at IS NULL OR excluded.expires_at IS NULL THEN NULL \
    ELSE GREATEST(r.expires_at, excluded.expires_at) END, \
    revoked_at = pg_catalog.now(), revoked_by = excluded.revoked_by";
const REVOKE_TOKEN: &str = "INSERT INTO _pg_rls_auth.revocations AS r \
    (kind, value, expires_at, revoked_by) VALUES ('token', $1, $2, $3) \
    ON CONFLICT (kind, value) DO UPDATE SET \
    expires_at = GREATEST(r.expires_at, excluded.expires_at), \
    revoked_at = pg_catalog.now(), revoked_by = excluded.revoked_by";
const UNREVOKE: &str = "DELETE FROM _pg_rls_auth.revocations \
    WHERE kind OPERATOR(pg_catalog.=) $1 AND value OPERATOR(pg_catalog.=) $2";
/// Revocations that refuse nothing any more; removed whenever one is added, so the table holds
/// about what is in force.
const SWEEP: &str = "DELETE FROM _pg_rls_auth.revocations \
    WHERE expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()";
const LIST: &str = "SELECT kind, value, issued_before, expires_at, revoked_at, revoked_by \
    FROM _pg_rls_auth.revocations \
    WHERE expires_at IS NULL OR expires_at OPERATOR(pg_catalog.>) pg_catalog.now() \
    ORDER BY revoked_at, kind, value";

thread_local! {
    /// The epoch at which the table was last seen holding nothing in force.
    static EMPTY_AS_OF: Cell<Option<u64>> = const { Cell::new(None) };
    /// This transaction changed the revocations: bump the epoch when it commits.
    static CHANGED: Cell<bool> = const { Cell::new(false) };
}

pub fn init() {
    // SAFETY: called once from _PG_init, on the main thread. The callback is a #[pg_guard]
    // function with the signature PostgreSQL expects, and the arg pointer is unused. The
    // registration allocates in TopMemoryContext; only out of memory raises (guarded wrapper:
    // a panic for _PG_init's guard), with nothing live that needs dropping.
    unsafe { pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut()) };
}

/// # Safety
/// Called only by PostgreSQL as a transaction callback (RegisterXactCallback), main thread.
#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    match event {
        // After the commit is visible: a backend that sees the new epoch then reads the table
        // with a snapshot that includes it.
        XACT_EVENT_COMMIT if CHANGED.replace(false) => {
            if let Some(epoch) = crate::rate_limit::revocation_epoch() {
                epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
        // COMMIT PREPARED runs in another backend and calls no callback: the epoch would never
        // move, and preloaded backends would never read the change. Refused, as PostgreSQL
        // refuses to prepare a transaction that ran NOTIFY.
        XACT_EVENT_PRE_PREPARE if CHANGED.get() => crate::errors::report(
            Raise::new(
                *b"0A000",
                "cannot PREPARE a transaction that changed pg_rls_auth's revocations",
            )
            .hint("Revoke in a transaction of its own."),
        ),
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => CHANGED.set(false),
        _ => {}
    }
}

/// Where this backend stands: the shared epoch when there is one to trust, else the current
/// top-level statement (every statement then checks once).
pub fn freshness() -> Freshness {
    // SAFETY: main thread, inside a transaction (a statement hook or a SQL function call).
    // RecoveryInProgress reads a local cache or the shared recovery state and cannot raise;
    // GetCurrentStatementStartTimestamp reads a backend variable. Guarded wrappers, inside
    // the caller's pgrx guard; only Copy values are live.
    let (in_recovery, statement) = unsafe {
        (
            pg_sys::RecoveryInProgress(),
            pg_sys::GetCurrentStatementStartTimestamp(),
        )
    };
    match crate::rate_limit::revocation_epoch() {
        Some(epoch) if !in_recovery => Freshness::Epoch(epoch.load(Ordering::Acquire)),
        _ => Freshness::Statement(statement),
    }
}

/// Whether a recorded revocation refuses `token`. Read as the table's owner; a database whose
/// extension SQL predates the table has revoked nothing.
pub fn refuses(token: &TokenIdentity, freshness: Freshness) -> Result<bool, Raise> {
    if let Some(why) = rules::uncheckable(token) {
        return Err(Raise::new(crate::errors::INVALID_AUTHORIZATION, why));
    }
    if let Freshness::Epoch(epoch) = freshness {
        if EMPTY_AS_OF.get() == Some(epoch) {
            return Ok(false);
        }
    }
    // The latest committed revocations, not this statement's or transaction's snapshot: a
    // revocation committed after they were taken (and the epoch read above) must refuse.
    let found = internal_tables::as_owner_if_present(Table::Revocations, 0, || {
        Spi::connect(|_| {
            let rows = internal_tables::select_latest(
                LOOKUP,
                &[token.sub.as_deref(), token.jti.as_deref()],
                |row| {
                    (
                        row.text(1).unwrap_or_default(),
                        row.float8(2),
                        row.float8(3),
                    )
                },
            );
            let mut any = false;
            let mut found = Vec::new();
            for (kind, issued_before, expires_at) in rows {
                match (kind.as_str(), issued_before, expires_at) {
                    ("any", ..) => any = true,
                    ("sessions", Some(issued_before), expires_at) => {
                        found.push(Revocation::Sessions {
                            issued_before,
                            expires_at,
                        })
                    }
                    ("token", _, Some(expires_at)) => found.push(Revocation::Token { expires_at }),
                    _ => {}
                }
            }
            (found, any)
        })
    })?;
    let Some((found, any)) = found else {
        return Ok(false);
    };
    if let (Freshness::Epoch(epoch), false) = (freshness, any) {
        EMPTY_AS_OF.set(Some(epoch));
    }
    Ok(rules::refuses(token, &found, crate::session::now_secs()))
}

/// The error a revoked token gets at init: the usual 28000, reason in the message.
pub fn revoked() -> Raise {
    Raise::new(
        crate::errors::INVALID_AUTHORIZATION,
        "the token has been revoked",
    )
    .hint("Sign in again for a new token.")
}

fn checked(what: &str, value: Option<&str>) -> Result<String, Raise> {
    rules::check_value(what, value).map_err(|m| Raise::new(INVALID_PARAMETER_VALUE, m))
}

fn required<T>(what: &str, value: Option<T>) -> Result<T, Raise> {
    value.ok_or_else(|| Raise::new(INVALID_PARAMETER_VALUE, format!("{what} must not be NULL")))
}

/// The current role's name, recorded as who revoked (read before acting as the owner).
fn current_role_name() -> String {
    // SAFETY: main thread, in a SQL function call. GetUserId reads a backend variable;
    // GetUserNameFromId (noerr = true: NULL, not an ERROR, for a dropped role) reads the
    // syscache and returns a palloc'd copy, valid until the call's memory context is reset.
    // Guarded wrapper inside this function's pgrx guard; no borrow is live.
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetUserId(), true);
        if name.is_null() {
            return String::new();
        }
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}

/// Runs one change to the revocations as their owner, then removes the expired ones.
fn change(sql: &'static str, types: &[PgOid], args: Vec<pgrx::datum::DatumWithOid>) -> bool {
    let changed = internal_tables::as_owner(
        Table::Revocations,
        guc::RATE_LIMIT_LOCK_TIMEOUT.get(),
        || {
            Spi::connect_mut(|client| {
                let changed = internal_tables::with_prepared(client, sql, types, |client, stmt| {
                    client.update(stmt, None, &args).map(|t| !t.is_empty())
                });
                let swept = internal_tables::with_prepared(client, SWEEP, &[], |client, stmt| {
                    client.update(stmt, None, &[]).map(|_| ())
                });
                changed.and_then(|c| swept.map(|()| c)).unwrap_or_else(|e| {
                    pgrx::error!("pg_rls_auth: changing the revocations failed: {e}")
                })
            })
        },
    )
    .or_report();
    CHANGED.set(true);
    // This backend's own inits see the change before it commits.
    EMPTY_AS_OF.set(None);
    changed
}

/// Refuses, from now on, every token of `sub` issued before `issued_before` (a token without
/// `iat` counts as issued at the epoch); sessions using one end at their next statement.
/// `expires_at`: when every such token has expired (the longest token lifetime after
/// `issued_before`); the revocation is then removed. NULL keeps it until withdrawn.
#[pg_extern(volatile, parallel_unsafe)]
fn revoke_sessions(
    sub: Option<&str>,
    issued_before: default!(Option<TimestampWithTimeZone>, "pg_catalog.now()"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) {
    let sub = checked("sub", sub).or_report();
    let issued_before = required("issued_before", issued_before).or_report();
    let types = [
        pg_sys::TEXTOID,
        pg_sys::TIMESTAMPTZOID,
        pg_sys::TIMESTAMPTZOID,
        pg_sys::TEXTOID,
    ]
    .map(PgOid::from);
    let args = vec![
        sub.into(),
        issued_before.into(),
        expires_at.into(),
        current_role_name().into(),
    ];
    change(REVOKE_SESSIONS, &types, args);
}

/// Refuses the token whose `jti` this is until `expires_at` (its `exp`), when it would have
/// expired anyway; a session using it ends at its next statement.
#[pg_extern(volatile, parallel_unsafe)]
fn revoke_token(jti: Option<&str>, expires_at: Option<TimestampWithTimeZone>) {
    let jti = checked("jti", jti).or_report();
    let expires_at = required("expires_at", expires_at).or_report();
    let types = [pg_sys::TEXTOID, pg_sys::TIMESTAMPTZOID, pg_sys::TEXTOID].map(PgOid::from);
    change(
        REVOKE_TOKEN,
        &types,
        vec![jti.into(), expires_at.into(), current_role_name().into()],
    );
}

/// Withdraws auth.revoke_sessions(sub): true when there was one. Sessions it already ended
/// stay ended; tokens it refused verify again.
#[pg_extern(volatile, parallel_unsafe)]
fn unrevoke_sessions(sub: Option<&str>) -> bool {
    let sub = checked("sub", sub).or_report();
    let types = [pg_sys::TEXTOID, pg_sys::TEXTOID].map(PgOid::from);
    change(UNREVOKE, &types, vec!["sessions".into(), sub.into()])
}

/// Withdraws auth.revoke_token(jti): true when there was one.
#[pg_extern(volatile, parallel_unsafe)]
fn unrevoke_token(jti: Option<&str>) -> bool {
    let jti = checked("jti", jti).or_report();
    let types = [pg_sys::TEXTOID, pg_sys::TEXTOID].map(PgOid::from);
    change(UNREVOKE, &types, vec!["token".into(), jti.into()])
}

/// Raises 28000 when a revocation refuses the current session's token: for sessions the
/// extension did not start itself, such as PostgREST's `request.jwt.claims` (PostgREST verified
/// that token): call it in PostgREST's `db-pre-request` function.
#[pg_extern(volatile, parallel_unsafe)]
fn check_not_revoked() {
    let Some(session) = crate::session::current().or_report() else {
        return;
    };
    if refuses(&session.token_identity(), freshness()).or_report() {
        crate::errors::report(revoked());
    }
}

type Listed = (
    String,
    String,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    TimestampWithTimeZone,
    String,
);

/// The revocations in force.
// The row type is the SQL signature, spelled as pgrx needs it.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn revocations() -> TableIterator<
    'static,
    (
        name!(kind, String),
        name!(value, String),
        name!(issued_before, Option<TimestampWithTimeZone>),
        name!(expires_at, Option<TimestampWithTimeZone>),
        name!(revoked_at, TimestampWithTimeZone),
        name!(revoked_by, String),
    ),
> {
    let rows: Vec<Listed> = internal_tables::as_owner(Table::Revocations, 0, || {
        Spi::connect(|client| {
            client
                .select(LIST, None, &[])
                .unwrap_or_else(|e| {
                    pgrx::error!("pg_rls_auth: reading the revocations failed: {e}")
                })
                .filter_map(|row| {
                    Some((
                        row.get::<String>(1).ok()??,
                        row.get::<String>(2).ok()??,
                        row.get::<TimestampWithTimeZone>(3).ok()?,
                        row.get::<TimestampWithTimeZone>(4).ok()?,
                        row.get::<TimestampWithTimeZone>(5).ok()??,
                        row.get::<String>(6).ok()??,
                    ))
                })
                .collect()
        })
    })
    .or_report();
    TableIterator::new(rows)
}

pgrx::extension_sql!(
    r#"
CREATE TABLE _pg_rls_auth.revocations (
    kind text NOT NULL CHECK (kind IN ('sessions', 'token')),
    value text NOT NULL,
    issued_before timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    revoked_by text NOT NULL,
    PRIMARY KEY (kind, value),
    CHECK ((kind = 'sessions') = (issued_before IS NOT NULL)),
    CHECK (kind = 'sessions' OR expires_at IS NOT NULL)
);
CREATE INDEX revocations_expires_at ON _pg_rls_auth.revocations (expires_at);
COMMENT ON TABLE _pg_rls_auth.revocations IS
    'pg_rls_auth revocations: every token of a sub issued before a time, or one token by jti; change them with auth.revoke_sessions() and friends';
REVOKE ALL ON _pg_rls_auth.revocations FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('_pg_rls_auth.revocations', '');
"#,
    name = "revocation_table",
    requires = ["rate_limit_sql"],
);

// Revocation restricts access only, but any caller could lock users out: only superusers and
// the role that installed the extension may, and whom they grant it to.
pgrx::extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION auth.revoke_sessions(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auth.revoke_token(text, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auth.unrevoke_sessions(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auth.unrevoke_token(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION auth.revocations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.revoke_sessions(text, timestamptz, timestamptz),
    auth.revoke_token(text, timestamptz), auth.unrevoke_sessions(text),
    auth.unrevoke_token(text), auth.revocations() TO @extowner@ WITH GRANT OPTION;
"#,
    name = "revocation_grants",
    requires = [
        "revocation_table",
        revoke_sessions,
        revoke_token,
        unrevoke_sessions,
        unrevoke_token,
        revocations
    ],
);
