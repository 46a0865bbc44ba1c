//! The table store, for servers where the library cannot be preloaded (hosted PostgreSQL): GCRA
//! state in `_pg_rls_auth.write_rate_state`, updated in the caller's transaction and kept
//! across restarts.
//!
//! No statement in the common case: the first check of a key in a transaction whose row exists
//! and is held by no other transaction reads and replaces (or, refused, locks) the row through
//! the heap directly (`table_heap`). Otherwise it is a single `INSERT … ON CONFLICT DO UPDATE
//! … RETURNING` that performs the GCRA step in SQL (`gcra::UpsertStep`, whose rule the core
//! proves equal to `gcra::decide`): it creates the key's row or advances it when the write is
//! admitted, waiting for a transaction that holds it, and locks the row either way. Only a
//! refused write (or a row kept in another limit's units) then costs a second statement, to
//! read the state for the answer.
//!
//! Exact under concurrency: that row lock makes concurrent transactions on one key queue, each
//! waiting at most `pg_rls_auth.rate_limit_lock_timeout` (then SQLSTATE 55P03). Linear inside a
//! long transaction: later checks of that key use this backend's copy of the state, written
//! back once, just before commit; updating the row per check would leave a chain of row
//! versions that every following check walks (the quadratic PL/pgSQL design).
//!
//! Bounded: a row is 16 bytes of key hash plus the state, whatever the key's length. A row may
//! go once its key has been fully replenished (forgetting it grants nothing) for one more
//! window, so a key checked at least once per window keeps its row and is only ever updated.
//! Each transaction that adds rows looks at the next SWEEP_ROWS rows in key order after where
//! this backend's last sweep stopped (wrapping around) and removes those that may go: such a row
//! is looked at within (rows / SWEEP_ROWS) insertions, so the table holds about one row per key
//! checked within its last two windows, plus about 1/SWEEP_ROWS of that. No column an update
//! changes is indexed, so the checks' updates are HOT updates that add no index entries.
//!
//! Privileges: ordinary roles cannot touch the table. The store acts as the table's owner, a
//! superuser, so it must never run anything another role controls (see `internal_tables`).

use super::table_heap::{self, Step};
use crate::errors::{Raise, INVALID_PARAMETER_VALUE};
use crate::guc;
use crate::internal_tables::{self, Table};
use pg_rls_auth_core::gcra::{
    decide as gcra_decide, Decision, Limit, State, UpsertStep, NANOS_PER_SEC,
};
use pg_rls_auth_core::key_id::durable_key_id;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;

/// Rows one transaction looks at (and removes if fully replenished) when it adds rows.
const SWEEP_ROWS: i64 = 64;

/// The first check of a key in a transaction (see the module comment): $1 id, $2 and $4 a
/// fresh key's TAT and free_at after one write, $3 the limit's units, $5 now, $6 the emission
/// interval and $7 the latest TAT that still admits, all in those units, and $8 the window in
/// ns (a row lingers that long after its key is replenished). Returns the new state and whether
/// the row is new; no row when the write is refused or the row is in other units.
const UPSERT: &str = "INSERT INTO _pg_rls_auth.write_rate_state AS s (id, tat, scale, free_at) \
    VALUES ($1, $2::pg_catalog.numeric, $3, $4) \
    ON CONFLICT (id) DO UPDATE SET \
    tat = GREATEST(s.tat, $5::pg_catalog.numeric) OPERATOR(pg_catalog.+) $6::pg_catalog.numeric, \
    free_at = pg_catalog.ceil((GREATEST(s.tat, $5::pg_catalog.numeric) OPERATOR(pg_catalog.+) \
    $6::pg_catalog.numeric) OPERATOR(pg_catalog./) $3)::pg_catalog.int8 OPERATOR(pg_catalog.+) $8 \
    WHERE s.scale OPERATOR(pg_catalog.=) $3 AND s.tat OPERATOR(pg_catalog.<=) $7::pg_catalog.numeric \
    RETURNING s.tat::pg_catalog.text, s.scale, s.xmax OPERATOR(pg_catalog.=) 0";
const READ_ROW: &str = "SELECT tat::pg_catalog.text, scale FROM _pg_rls_auth.write_rate_state \
    WHERE id OPERATOR(pg_catalog.=) $1";
const WRITE_ROW: &str = "UPDATE _pg_rls_auth.write_rate_state \
    SET tat = $2::pg_catalog.numeric, scale = $3, free_at = $4 WHERE id OPERATOR(pg_catalog.=) $1";
const DELETE_ROW: &str =
    "DELETE FROM _pg_rls_auth.write_rate_state WHERE id OPERATOR(pg_catalog.=) $1";
/// The next $3 rows after id $2 in key order; of those, the ones fully replenished at $1 and
/// not locked by a running transaction (so the sweep never waits) are deleted. Returns the
/// last id looked at (no row past the end).
const SWEEP: &str = "WITH batch AS (SELECT id FROM _pg_rls_auth.write_rate_state \
    WHERE id OPERATOR(pg_catalog.>) $2 ORDER BY id LIMIT $3), \
    swept AS (DELETE FROM _pg_rls_auth.write_rate_state WHERE ctid OPERATOR(pg_catalog.=) ANY \
    (ARRAY(SELECT s.ctid FROM _pg_rls_auth.write_rate_state s WHERE s.id IN (SELECT id FROM batch) \
    AND s.free_at OPERATOR(pg_catalog.<=) $1 FOR UPDATE OF s SKIP LOCKED))) \
    SELECT id FROM batch ORDER BY id DESC LIMIT 1";
struct Entry {
    state: State,
    /// The window (ns) of the limit last applied: how long the row lingers once replenished.
    linger_ns: i128,
    dirty: bool,
    /// Transaction nesting level that locked the row; a rollback to below it drops the entry.
    level: i32,
}

#[derive(Default)]
struct Backend {
    entries: HashMap<[u8; 16], Entry>,
    /// This transaction added rows: sweep before it commits.
    inserted: bool,
    /// Where this backend's next sweep starts (after this id; empty: from the first row).
    sweep_after: Vec<u8>,
}

thread_local! {
    static BACKEND: RefCell<Backend> = RefCell::new(Backend::default());
}

pub fn init() {
    // SAFETY: called once from _PG_init, on the main thread. Both callbacks are #[pg_guard]
    // functions with the signatures PostgreSQL expects, and the arg pointer is unused. The
    // registration allocates in TopMemoryContext; only out of memory raises, a panic here
    // (guarded wrapper) for _PG_init's guard, with nothing live that needs dropping.
    unsafe {
        pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(subxact_callback), std::ptr::null_mut());
    }
}

/// # Safety
/// Called only by PostgreSQL as a transaction callback (RegisterXactCallback), main thread.
#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => flush(),
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE | XACT_EVENT_PARALLEL_ABORT => {
            BACKEND.with_borrow_mut(|b| {
                b.entries.clear();
                b.inserted = false;
            })
        }
        _ => {}
    }
}

/// # Safety
/// Called only by PostgreSQL as a subtransaction callback (RegisterSubXactCallback), main
/// thread.
#[pg_guard]
unsafe extern "C-unwind" fn subxact_callback(
    event: pg_sys::SubXactEvent::Type,
    _my: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    // SAFETY: main thread; a plain read of the current transaction state: cannot raise.
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

/// Runs `f` as the owner of the state table (see `internal_tables::as_owner`).
fn as_owner<R>(f: impl FnOnce() -> R) -> Result<R, Raise> {
    internal_tables::as_owner(Table::WriteRateState, guc::RATE_LIMIT_LOCK_TIMEOUT.get(), f)
}

/// Runs the prepared `sql` with `args`; its first row's first two columns as (tat, scale).
fn run(
    sql: &'static str,
    args: Vec<pgrx::datum::DatumWithOid>,
    types: &[PgOid],
) -> Option<(String, i32)> {
    run_returning(sql, args, types, |row| {
        let (tat, scale) = row.get_two::<String, i32>().ok()?;
        Some((tat?, scale?))
    })
}

fn run_returning<R>(
    sql: &'static str,
    args: Vec<pgrx::datum::DatumWithOid>,
    types: &[PgOid],
    read: impl FnOnce(pgrx::spi::SpiTupleTable<'_>) -> Option<R>,
) -> Option<R> {
    Spi::connect_mut(|client| {
        let result = internal_tables::with_prepared(client, sql, types, |client, stmt| {
            client
                .update(stmt, None, &args)
                .map(|table| read(table.first()))
        });
        result.unwrap_or_else(|e| pgrx::error!("pg_rls_auth: the table store failed: {e}"))
    })
}

fn key_types() -> [PgOid; 1] {
    [PgOid::from(pg_sys::BYTEAOID)]
}

fn parse_state(row: Option<(String, i32)>) -> Result<State, Raise> {
    match row {
        None => Ok(State::default()),
        Some((tat, scale)) => Ok(State {
            tat: tat.parse().map_err(|_| {
                Raise::new(
                    INVALID_PARAMETER_VALUE,
                    "_pg_rls_auth.write_rate_state holds a malformed tat",
                )
            })?,
            scale: u32::try_from(scale).unwrap_or(0),
        }),
    }
}

/// A row's free_at column: when (ns) it may be removed, `linger_ns` after its key is fully
/// replenished. Keys checked at least once per window therefore keep their row (an update, never
/// a delete and an insert again).
fn free_at(state: State, linger_ns: i128) -> i64 {
    i64::try_from(state.tat_ns().saturating_add(linger_ns)).unwrap_or(i64::MAX)
}

fn window_ns(limit: Limit) -> i128 {
    i128::from(limit.window_seconds()) * NANOS_PER_SEC
}

pub fn decide(
    bucket: &str,
    key: &str,
    limit: Limit,
    now_ns: i128,
    consume: bool,
) -> Result<Decision, Raise> {
    let id = durable_key_id(bucket, key);
    let cached = BACKEND.with_borrow_mut(|b| {
        b.entries.get_mut(&id).map(|e| {
            let d = gcra_decide(&mut e.state, limit, now_ns, consume);
            if consume && d.allowed {
                e.dirty = true;
                e.linger_ns = window_ns(limit);
            }
            d
        })
    });
    if let Some(d) = cached {
        return Ok(d);
    }
    let args = || vec![id.as_slice().into()];
    if !consume {
        let mut state = parse_state(as_owner(|| run(READ_ROW, args(), &key_types()))?)?;
        return Ok(gcra_decide(&mut state, limit, now_ns, false));
    }
    if let Some(decision) = decide_in_place(id, limit, now_ns)? {
        return Ok(decision);
    }
    let step = UpsertStep::new(limit, now_ns);
    let fresh = State {
        tat: step.fresh_tat,
        scale: step.scale,
    };
    let upserted = as_owner(|| {
        let types = [
            pg_sys::BYTEAOID,
            pg_sys::TEXTOID,
            pg_sys::INT4OID,
            pg_sys::INT8OID,
            pg_sys::TEXTOID,
            pg_sys::TEXTOID,
            pg_sys::TEXTOID,
            pg_sys::INT8OID,
        ]
        .map(PgOid::from);
        let args = vec![
            id.as_slice().into(),
            step.fresh_tat.to_string().into(),
            (step.scale as i32).into(),
            free_at(fresh, window_ns(limit)).into(),
            step.now.to_string().into(),
            step.window.to_string().into(),
            step.threshold.to_string().into(),
            i64::try_from(window_ns(limit)).unwrap_or(i64::MAX).into(),
        ];
        run_returning(UPSERT, args, &types, |row| {
            let (tat, scale, inserted) = row.get_three::<String, i32, bool>().ok()?;
            Some((tat?, scale?, inserted.unwrap_or(false)))
        })
    })?;
    let (state, decision, dirty) = match upserted {
        // Admitted and written: the answer is what a look at the new state says.
        Some((tat, scale, inserted)) => {
            BACKEND.with_borrow_mut(|b| b.inserted |= inserted);
            let state = parse_state(Some((tat, scale)))?;
            let mut peek = state;
            let d = gcra_decide(&mut peek, limit, now_ns, false);
            (state, Decision { allowed: true, ..d }, false)
        }
        // Refused, or kept in another limit's units: the row is locked all the same; decide on
        // what it holds, and write an admitted write back at commit.
        None => {
            let mut state = parse_state(as_owner(|| run(READ_ROW, args(), &key_types()))?)?;
            let d = gcra_decide(&mut state, limit, now_ns, true);
            (state, d, d.allowed)
        }
    };
    remember(id, state, limit, dirty);
    Ok(decision)
}

/// The common case without a statement (see `table_heap`): the key's row exists and nobody
/// else holds it. None when that is not so; nothing changed then.
fn decide_in_place(id: [u8; 16], limit: Limit, now_ns: i128) -> Result<Option<Decision>, Raise> {
    let mut decided = None;
    let settled = table_heap::settle_unheld(&id, |tat, scale| {
        let Ok(mut state) = parse_state(Some((tat.to_owned(), scale))) else {
            return Step::Decline;
        };
        let decision = gcra_decide(&mut state, limit, now_ns, true);
        decided = Some((state, decision));
        if decision.allowed {
            Step::Write {
                tat: state.tat.to_string(),
                scale: state.scale as i32,
                free_at: free_at(state, window_ns(limit)),
            }
        } else {
            Step::Hold
        }
    })?;
    Ok(match (settled, decided) {
        (true, Some((state, decision))) => {
            remember(id, state, limit, false);
            Some(decision)
        }
        _ => None,
    })
}

/// Keeps this transaction's copy of key `id`'s state, whose row it now holds.
fn remember(id: [u8; 16], state: State, limit: Limit, dirty: bool) {
    // SAFETY: main thread; a plain read of the current transaction state: cannot raise.
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    BACKEND.with_borrow_mut(|b| {
        b.entries.insert(
            id,
            Entry {
                state,
                linger_ns: window_ns(limit),
                dirty,
                level,
            },
        )
    });
}

/// Writes back every key this transaction changed, once each; then, when it added rows,
/// removes up to SWEEP_ROWS rows of fully replenished keys.
fn flush() {
    let (dirty, sweep): (Vec<([u8; 16], State, i128)>, bool) = BACKEND.with_borrow_mut(|b| {
        let dirty = b
            .entries
            .iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(k, e)| {
                e.dirty = false;
                (*k, e.state, e.linger_ns)
            })
            .collect();
        (dirty, std::mem::take(&mut b.inserted))
    });
    if dirty.is_empty() && !sweep {
        return;
    }
    let types = [
        pg_sys::BYTEAOID,
        pg_sys::TEXTOID,
        pg_sys::INT4OID,
        pg_sys::INT8OID,
    ]
    .map(PgOid::from);
    let now_ns = super::now_ns();
    // At pre-commit the statement's snapshot is gone; SPI needs one.
    // SAFETY: main thread, at XACT_EVENT_PRE_COMMIT/PRE_PREPARE: the transaction is still in
    // progress, so GetTransactionSnapshot is allowed; PushActiveSnapshot copies it if needed.
    // Both are guarded: an ERROR (e.g. out of memory) becomes a panic that unwinds `dirty` to
    // xact_callback's #[pg_guard]; no RefCell borrow is live. The snapshot is popped below,
    // or, when `as_owner` raises first, by the abort's snapshot cleanup.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    let done = as_owner(|| {
        for (id, state, linger_ns) in &dirty {
            let args = vec![
                id.as_slice().into(),
                state.tat.to_string().into(),
                (state.scale as i32).into(),
                free_at(*state, *linger_ns).into(),
            ];
            run(WRITE_ROW, args, &types);
        }
        if sweep {
            let now = i64::try_from(now_ns).unwrap_or(i64::MAX);
            let after = BACKEND.with_borrow(|b| b.sweep_after.clone());
            let types = [pg_sys::INT8OID, pg_sys::BYTEAOID, pg_sys::INT8OID].map(PgOid::from);
            let args = vec![now.into(), after.as_slice().into(), SWEEP_ROWS.into()];
            let last = run_returning(SWEEP, args, &types, |row| {
                row.get_one::<Vec<u8>>().ok().flatten()
            });
            BACKEND.with_borrow_mut(|b| b.sweep_after = last.unwrap_or_default());
        }
    });
    // SAFETY: main thread; pops exactly the snapshot pushed above (SPI's own pushes and pops
    // are balanced). Frees memory only: cannot raise.
    unsafe { pg_sys::PopActiveSnapshot() };
    if let Err(e) = done {
        crate::errors::report(e);
    }
}

pub fn reset(bucket: &str, key: &str) -> Result<bool, Raise> {
    let id = durable_key_id(bucket, key);
    BACKEND.with_borrow_mut(|b| b.entries.remove(&id));
    as_owner(|| {
        Spi::connect_mut(|client| {
            client
                .update(DELETE_ROW, None, &[id.as_slice().into()])
                .map(|t| !t.is_empty())
                .unwrap_or_else(|e| pgrx::error!("pg_rls_auth: the table store failed: {e}"))
        })
    })
}

pub fn rows() -> Result<i64, Raise> {
    as_owner(|| {
        Spi::get_one::<i64>("SELECT pg_catalog.count(*) FROM _pg_rls_auth.write_rate_state")
            .ok()
            .flatten()
            .unwrap_or(0)
    })
}
