//! The table store, for servers where the library cannot be preloaded (hosted PostgreSQL): GCRA
//! state in `auth.write_rate_state`, updated in the caller's transaction and kept across
//! restarts.
//!
//! Exact under concurrency: the first check of a key in a transaction locks its row
//! (`FOR UPDATE`), so concurrent transactions on one key queue. Linear inside a long
//! transaction: later checks of that key use this backend's copy of the state, written back
//! once, just before commit; updating the row per check would leave a chain of row versions
//! that every following check walks (the quadratic PL/pgSQL design).
//!
//! Ordinary roles cannot touch the table; the queries run as its owner, fully schema-qualified.

use crate::errors::{Raise, INVALID_PARAMETER_VALUE};
use pg_rls_auth_core::gcra::{decide as gcra_decide, Decision, Limit, State};
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;

const LOCK_ROW: &str = "SELECT tat::pg_catalog.text, scale FROM auth.write_rate_state \
    WHERE bucket OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2 FOR UPDATE";
/// A separate statement from LOCK_ROW: when a concurrent transaction inserts the same key, this
/// waits for it, and the LOCK_ROW that follows (a new snapshot) then sees its row.
const INSERT_ROW: &str = "INSERT INTO auth.write_rate_state (bucket, key, tat, scale) \
    VALUES ($1, $2, 0, 0) ON CONFLICT (bucket, key) DO NOTHING";
const READ_ROW: &str = "SELECT tat::pg_catalog.text, scale FROM auth.write_rate_state \
    WHERE bucket OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2";
const WRITE_ROW: &str =
    "UPDATE auth.write_rate_state SET tat = $3::pg_catalog.numeric, scale = $4 \
    WHERE bucket OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2";
const DELETE_ROW: &str = "DELETE FROM auth.write_rate_state \
    WHERE bucket OPERATOR(pg_catalog.=) $1 AND key OPERATOR(pg_catalog.=) $2";

struct Entry {
    state: State,
    dirty: bool,
    /// Transaction nesting level that locked the row; a rollback to below it drops the entry.
    level: i32,
}

#[derive(Default)]
struct Backend {
    entries: HashMap<(String, String), Entry>,
    owner: Option<pg_sys::Oid>,
    statements: HashMap<&'static str, OwnedPreparedStatement>,
}

thread_local! {
    static BACKEND: RefCell<Backend> = RefCell::new(Backend::default());
}

pub fn init() {
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => flush(),
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE | XACT_EVENT_PARALLEL_ABORT => {
            BACKEND.with_borrow_mut(|b| b.entries.clear())
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    BACKEND.with_borrow_mut(|b| match event {
        // The row lock (and a row inserted) at this level are gone: forget the copy.
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => b.entries.retain(|_, e| e.level < level),
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => b
            .entries
            .values_mut()
            .filter(|e| e.level >= level)
            .for_each(|e| e.level = level - 1),
        _ => {}
    });
}

/// Runs `f` as the owner of auth.write_rate_state, the way PostgreSQL runs RI checks, with
/// `search_path` pinned to pg_catalog (as maintenance commands do): nothing the caller put on
/// their path can run with the owner's rights.
fn as_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = BACKEND.with_borrow(|b| b.owner).unwrap_or_else(|| {
        let owner = Spi::get_one::<pg_sys::Oid>(
            "SELECT relowner FROM pg_catalog.pg_class \
             WHERE oid OPERATOR(pg_catalog.=) 'auth.write_rate_state'::pg_catalog.regclass",
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| pgrx::error!("pg_rls_auth: auth.write_rate_state is missing"));
        BACKEND.with_borrow_mut(|b| b.owner = Some(owner));
        owner
    });
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0);
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        nest
    };
    // An ERROR in `f` aborts the (sub)transaction, which restores the user and the path itself.
    let result = f();
    unsafe {
        pg_sys::AtEOXact_GUC(true, nest);
        pg_sys::SetUserIdAndSecContext(user, context);
    }
    result
}

fn run(
    sql: &'static str,
    args: Vec<pgrx::datum::DatumWithOid>,
    types: &[PgOid],
) -> Option<(String, i32)> {
    Spi::connect_mut(|client| {
        let missing = BACKEND.with_borrow(|b| !b.statements.contains_key(sql));
        if missing {
            let stmt = client
                .prepare_mut(sql, types)
                .unwrap_or_else(|e| {
                    pgrx::error!("pg_rls_auth: preparing the table store failed: {e}")
                })
                .keep();
            BACKEND.with_borrow_mut(|b| b.statements.insert(sql, stmt));
        }
        let result = BACKEND.with_borrow(|b| {
            let stmt = b.statements.get(sql).expect("prepared above");
            client.update(stmt, None, &args).map(|table| {
                table
                    .first()
                    .get_two::<String, i32>()
                    .ok()
                    .and_then(|(tat, scale)| Some((tat?, scale?)))
            })
        });
        result.unwrap_or_else(|e| pgrx::error!("pg_rls_auth: the table store failed: {e}"))
    })
}

fn key_types() -> [PgOid; 2] {
    [PgOid::from(pg_sys::TEXTOID), PgOid::from(pg_sys::TEXTOID)]
}

fn parse_state(row: Option<(String, i32)>) -> Result<State, Raise> {
    match row {
        None => Ok(State::default()),
        Some((tat, scale)) => Ok(State {
            tat: tat.parse().map_err(|_| {
                Raise::new(
                    INVALID_PARAMETER_VALUE,
                    "auth.write_rate_state holds a malformed tat",
                )
            })?,
            scale: u32::try_from(scale).unwrap_or(0),
        }),
    }
}

pub fn decide(
    bucket: &str,
    key: &str,
    limit: Limit,
    now_ns: i128,
    consume: bool,
) -> Result<Decision, Raise> {
    let id = (bucket.to_string(), key.to_string());
    let cached = BACKEND.with_borrow_mut(|b| {
        b.entries.get_mut(&id).map(|e| {
            let d = gcra_decide(&mut e.state, limit, now_ns, consume);
            e.dirty |= consume && d.allowed;
            d
        })
    });
    if let Some(d) = cached {
        return Ok(d);
    }
    let args = || vec![bucket.into(), key.into()];
    if !consume {
        let mut state = parse_state(as_owner(|| run(READ_ROW, args(), &key_types())))?;
        return Ok(gcra_decide(&mut state, limit, now_ns, false));
    }
    let row = as_owner(|| {
        run(LOCK_ROW, args(), &key_types()).or_else(|| {
            run(INSERT_ROW, args(), &key_types());
            run(LOCK_ROW, args(), &key_types())
        })
    });
    let mut state = parse_state(row)?;
    let d = gcra_decide(&mut state, limit, now_ns, true);
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    BACKEND.with_borrow_mut(|b| {
        b.entries.insert(
            id,
            Entry {
                state,
                dirty: d.allowed,
                level,
            },
        )
    });
    Ok(d)
}

/// Writes back every key this transaction changed, once each.
fn flush() {
    let dirty: Vec<((String, String), State)> = BACKEND.with_borrow_mut(|b| {
        b.entries
            .iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(k, e)| {
                e.dirty = false;
                (k.clone(), e.state)
            })
            .collect()
    });
    if dirty.is_empty() {
        return;
    }
    let types = [
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::TEXTOID,
        pg_sys::INT4OID,
    ]
    .map(PgOid::from);
    // At pre-commit the statement's snapshot is gone; SPI needs one.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    as_owner(|| {
        for ((bucket, key), state) in &dirty {
            let args = vec![
                bucket.as_str().into(),
                key.as_str().into(),
                state.tat.to_string().into(),
                (state.scale as i32).into(),
            ];
            run(WRITE_ROW, args, &types);
        }
    });
    unsafe { pg_sys::PopActiveSnapshot() };
}

pub fn reset(bucket: &str, key: &str) -> Result<bool, Raise> {
    BACKEND.with_borrow_mut(|b| b.entries.remove(&(bucket.to_string(), key.to_string())));
    let existed = as_owner(|| {
        Spi::connect_mut(|client| {
            client
                .update(DELETE_ROW, None, &[bucket.into(), key.into()])
                .map(|t| !t.is_empty())
                .unwrap_or_else(|e| pgrx::error!("pg_rls_auth: the table store failed: {e}"))
        })
    });
    Ok(existed)
}

pub fn rows() -> Result<i64, Raise> {
    Ok(as_owner(|| {
        Spi::get_one::<i64>("SELECT pg_catalog.count(*) FROM auth.write_rate_state")
            .ok()
            .flatten()
            .unwrap_or(0)
    }))
}
