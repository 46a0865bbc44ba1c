//! pg_rls_auth's internal tables, in schema `_pg_rls_auth` (the table store's state, the
//! revocations): ordinary roles cannot touch them, so the code that reads and writes them acts
//! as their owner, a superuser. That is safe only while nothing another role controls can run
//! (see `as_owner`), and only for tables that are still what the extension script made.

use crate::errors::{Raise, INSUFFICIENT_PRIVILEGE, OBJECT_NOT_IN_PREREQUISITE_STATE};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{CStr, CString};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Table {
    WriteRateState,
    Revocations,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::WriteRateState => "write_rate_state",
            Table::Revocations => "revocations",
        }
    }
}

thread_local! {
    /// Statements prepared once per backend (kept across transactions; PostgreSQL replans
    /// them when the catalogs they depend on change).
    static STATEMENTS: RefCell<HashMap<&'static str, OwnedPreparedStatement>> =
        RefCell::new(HashMap::new());
    /// Set while our own statements run (as the owner, or looking the owner up): the
    /// statement hooks then leave the session alone.
    static ACTING_AS_OWNER: Cell<bool> = const { Cell::new(false) };
    /// `select_latest`'s plans, kept like STATEMENTS.
    static LATEST_PLANS: RefCell<HashMap<&'static CStr, pg_sys::SPIPlanPtr>> =
        RefCell::new(HashMap::new());
}

/// Marks our own statements running; unmarked when dropped, by a panic's unwinding too.
struct ActingAsOwner(bool);

impl ActingAsOwner {
    fn start() -> Self {
        Self(ACTING_AS_OWNER.replace(true))
    }
}

impl Drop for ActingAsOwner {
    fn drop(&mut self) {
        ACTING_AS_OWNER.set(self.0);
    }
}

/// Whether the current statement is one of ours (on an internal table or looking one up).
pub fn acting_as_owner() -> bool {
    ACTING_AS_OWNER.get()
}

/// Runs the prepared form of `sql` (prepared here on first use) with `f`, for statements that
/// write.
pub fn with_prepared<R>(
    client: &mut SpiClient<'_>,
    sql: &'static str,
    types: &[PgOid],
    f: impl FnOnce(&mut SpiClient<'_>, &OwnedPreparedStatement) -> R,
) -> R {
    prepare(client, sql, types);
    STATEMENTS.with_borrow(|s| f(client, s.get(sql).expect("prepared above")))
}

fn prepare(client: &SpiClient<'_>, sql: &'static str, types: &[PgOid]) {
    if STATEMENTS.with_borrow(|s| s.contains_key(sql)) {
        return;
    }
    let stmt = client
        .prepare_mut(sql, types)
        .unwrap_or_else(|e| pgrx::error!("pg_rls_auth: preparing an internal query failed: {e}"))
        .keep();
    STATEMENTS.with_borrow_mut(|s| s.insert(sql, stmt));
}

/// One row of `select_latest`'s result, read while the query's result is alive.
pub struct LatestRow {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

impl LatestRow {
    /// Column `column` (from 1); None when NULL.
    fn datum(&self, column: i32) -> Option<pg_sys::Datum> {
        let mut is_null = false;
        // SAFETY: `tuple` and `desc` are the SPI result's, alive for as long as this row (see
        // `select_latest`). SPI_getbinval only reads them (an unknown column is NULL, with
        // SPI_result set); it does not raise.
        let datum = unsafe { pg_sys::SPI_getbinval(self.tuple, self.desc, column, &mut is_null) };
        (!is_null).then_some(datum)
    }

    /// A `text` column.
    pub fn text(&self, column: i32) -> Option<String> {
        // SAFETY: the column is text (the caller's query says so) and not NULL; `from_datum`
        // copies it into a Rust String (detoasting, in the SPI context, may raise: a panic,
        // with only owned values live).
        self.datum(column)
            .and_then(|d| unsafe { String::from_datum(d, false) })
    }

    /// A `double precision` column.
    pub fn float8(&self, column: i32) -> Option<f64> {
        // SAFETY: the column is float8 (the caller's query says so) and not NULL.
        self.datum(column)
            .and_then(|d| unsafe { f64::from_datum(d, false) })
    }
}

/// Runs the read-only `sql` (text parameters `args`, prepared here on first use and kept) on
/// the latest committed state: a snapshot taken now, not the statement's or the transaction's
/// (under REPEATABLE READ both are older). A security check must see every change committed
/// before it was told of one. Call inside `Spi::connect`; `row` reads each row.
pub fn select_latest<R>(
    sql: &'static CStr,
    args: &[Option<&str>],
    mut row: impl FnMut(&LatestRow) -> R,
) -> Vec<R> {
    let plan = match LATEST_PLANS.with_borrow(|p| p.get(sql).copied()) {
        Some(plan) => plan,
        None => {
            let mut types = vec![pg_sys::TEXTOID; args.len()];
            // SAFETY: main thread, connected to SPI (the caller's `Spi::connect`). `sql` is
            // NUL-terminated and `types` holds one OID per parameter; both outlive the call,
            // which copies them. SPI_keepplan moves the plan under CacheMemoryContext, where
            // it stays for the backend's life (PostgreSQL revalidates it when the catalogs
            // change). Guarded wrappers: an ERROR is a panic, with only `types` live.
            let plan = unsafe {
                let plan =
                    pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
                if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
                    pgrx::error!("pg_rls_auth: preparing an internal query failed");
                }
                plan
            };
            LATEST_PLANS.with_borrow_mut(|p| p.insert(sql, plan));
            plan
        }
    };
    let mut values: Vec<pg_sys::Datum> = args
        .iter()
        .map(|a| a.into_datum().unwrap_or(pg_sys::Datum::from(0usize)))
        .collect();
    let nulls: Vec<std::ffi::c_char> = args
        .iter()
        .map(|a| if a.is_some() { b' ' } else { b'n' } as std::ffi::c_char)
        .collect();
    // SAFETY: main thread, connected to SPI, not in parallel mode (GetLatestSnapshot refuses
    // it: our callers run in a statement hook that skips parallel mode, or in PARALLEL UNSAFE
    // functions). The snapshot is registered (a copy, on the current resource owner) while
    // the query runs read-only on exactly it, then unregistered; an ERROR in between is a
    // panic, and the abort releases the snapshot and the SPI result. `values` and `nulls`
    // hold one entry per parameter and outlive the call. The result (SPI_tuptable) lives until
    // the caller's SPI_finish, after `row` has read every row and the rows are dropped.
    unsafe {
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
        let status = pg_sys::SPI_execute_snapshot(
            plan,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            snapshot,
            std::ptr::null_mut(),
            true,
            false,
            0,
        );
        pg_sys::UnregisterSnapshot(snapshot);
        if status != pg_sys::SPI_OK_SELECT as i32 {
            pgrx::error!("pg_rls_auth: an internal query failed (SPI status {status})");
        }
        let table = pg_sys::SPI_tuptable;
        let rows = pg_sys::SPI_processed as usize;
        (0..rows)
            .map(|i| {
                row(&LatestRow {
                    tuple: *(*table).vals.add(i),
                    desc: (*table).tupdesc,
                })
            })
            .collect()
    }
}

/// `table` and its owner, checked at every use; None when the table does not exist (an older
/// version of the extension's SQL). Only a superuser can own, rename, create in or attach code
/// to schema `_pg_rls_auth` and its tables (the extension script made them as one), so a name
/// there cannot be redirected by the database owner who installed the extension or by anyone
/// else. Should either not be a superuser's (a superuser changed them), this refuses rather
/// than act for someone who could have planted code there. Read from the catalog caches: no
/// statement runs, and a check costs a few hash lookups.
fn owned(table: Table) -> Result<Option<(pg_sys::Oid, pg_sys::Oid)>, Raise> {
    let name = CString::new(table.name()).expect("table names have no NUL byte");
    // SAFETY: main thread, inside a transaction (a SQL function call, a statement hook or
    // pre-commit), as catalog cache lookups need. Names are NUL-terminated and outlive the
    // calls. Every call is pgrx's guarded wrapper: an ERROR (catalog access) becomes a panic
    // for the caller's guard, with only `name` live (dropped by the unwinding). Each tuple is
    // read only while held and released before the next lookup; a panic leaves it to the
    // transaction's resource owner, which releases it at abort.
    let owners = unsafe {
        let schema = pg_sys::get_namespace_oid(c"_pg_rls_auth".as_ptr(), true);
        let relation = if schema == pg_sys::Oid::INVALID {
            pg_sys::Oid::INVALID
        } else {
            pg_sys::get_relname_relid(name.as_ptr(), schema)
        };
        if relation == pg_sys::Oid::INVALID
            || pg_sys::get_rel_relkind(relation) != pg_sys::RELKIND_RELATION as std::ffi::c_char
        {
            None
        } else {
            let relation_owner = catalog_owner(pg_sys::SysCacheIdentifier::RELOID, relation, |t| {
                (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(t)).relowner
            });
            let schema_owner =
                catalog_owner(pg_sys::SysCacheIdentifier::NAMESPACEOID, schema, |t| {
                    (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_namespace>(t)).nspowner
                });
            Some((relation, relation_owner, schema_owner))
        }
    };
    let Some((relation, Some(relation_owner), Some(schema_owner))) = owners else {
        return Ok(None);
    };
    // SAFETY: main thread, inside a transaction, as the syscache lookup needs. superuser_arg
    // can raise (catalog access); the guarded wrapper makes that a panic for the caller's pgrx
    // guard, and only Copy values are live here.
    if unsafe { !pg_sys::superuser_arg(relation_owner) || !pg_sys::superuser_arg(schema_owner) } {
        return Err(Raise::new(
            INSUFFICIENT_PRIVILEGE,
            format!(
                "pg_rls_auth: _pg_rls_auth.{} or its schema is not owned by a superuser",
                table.name()
            ),
        )
        .detail("pg_rls_auth acts as the table's owner and refuses to for any other role."));
    }
    Ok(Some((relation, relation_owner)))
}

/// The OID of `table`, for code that reads or writes it without running a statement; with the
/// same checks as `as_owner`, and None when it does not exist.
pub fn relation(table: Table) -> Result<Option<pg_sys::Oid>, Raise> {
    Ok(owned(table)?.map(|(relation, _)| relation))
}

/// Reads the owner column of catalog object `oid` through `cache`; None when it is gone.
///
/// # Safety
/// Main thread, inside a transaction; `read` must read the tuple as the catalog `cache`
/// belongs to lays it out.
unsafe fn catalog_owner(
    cache: pg_sys::SysCacheIdentifier::Type,
    oid: pg_sys::Oid,
    read: impl Fn(pg_sys::HeapTuple) -> pg_sys::Oid,
) -> Option<pg_sys::Oid> {
    // SAFETY: caller's obligations; the tuple is released right after `read`.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(cache as std::ffi::c_int, pg_sys::Datum::from(oid));
        if tuple.is_null() {
            return None;
        }
        let owner = read(tuple);
        pg_sys::ReleaseSysCache(tuple);
        Some(owner)
    }
}

/// Runs `f` as the owner of `table` (see `as_owner_if_present`); a missing table is an error.
pub fn as_owner<R>(table: Table, lock_timeout_ms: i32, f: impl FnOnce() -> R) -> Result<R, Raise> {
    as_owner_if_present(table, lock_timeout_ms, f)?.ok_or_else(|| {
        Raise::new(
            OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "pg_rls_auth: the table _pg_rls_auth.{} is missing",
                table.name()
            ),
        )
        .hint("Update the extension: ALTER EXTENSION pg_rls_auth UPDATE.")
    })
}

/// Runs `f` as the owner of `table`, the way PostgreSQL runs RI checks: in a security
/// restricted operation, with `search_path` pinned to pg_catalog (as maintenance commands do)
/// and `lock_timeout` at `lock_timeout_ms`. Our statements name only `_pg_rls_auth` and
/// pg_catalog, and the tables have no triggers, rules or policies (only a superuser could add
/// them), so nothing another role wrote runs with the owner's rights. None, without running
/// `f`, when the table does not exist.
pub fn as_owner_if_present<R>(
    table: Table,
    lock_timeout_ms: i32,
    f: impl FnOnce() -> R,
) -> Result<Option<R>, Raise> {
    let Some((_, owner)) = owned(table)? else {
        return Ok(None);
    };
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0);
    let lock_timeout = CString::new(lock_timeout_ms.to_string()).expect("digits have no NUL byte");
    // SAFETY: main thread, inside a transaction. GetUserIdAndSecContext writes two valid
    // locals; SetUserIdAndSecContext only assigns globals. Neither raises. The change is
    // undone below, or, if anything in between raises, by the (sub)transaction abort, which
    // restores the user and security context saved at its start.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    let pinned = [
        crate::guc::PINNED_SEARCH_PATH,
        (c"lock_timeout", lock_timeout.as_c_str()),
    ];
    let result = crate::guc::with_settings(&pinned, || {
        let acting = ActingAsOwner::start();
        // An ERROR in `f` aborts the (sub)transaction, which restores the user and the
        // settings.
        let result = PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
            .catch_when(PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE, |_| {
                crate::errors::report(match table {
                    Table::WriteRateState => Raise::new(
                        *b"55P03",
                        "pg_rls_auth: another transaction holds this rate-limit key",
                    )
                    .detail("It checked the same key and has not ended yet.")
                    .hint("pg_rls_auth.rate_limit_lock_timeout bounds the wait."),
                    Table::Revocations => Raise::new(
                        *b"55P03",
                        "pg_rls_auth: another transaction is changing this revocation",
                    ),
                })
            })
            .execute();
        drop(acting);
        result
    });
    // SAFETY: main thread, same transaction: restores the user and security context saved
    // above (only assigns globals; does not raise).
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    Ok(Some(result))
}
