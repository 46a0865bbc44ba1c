//! The table store's common case, done without running a statement: the first check of a key
//! in a READ COMMITTED transaction, when the key's row exists and nobody else holds it. The row
//! is found through the primary key with a dirty snapshot (its latest version, as an UPDATE
//! under READ COMMITTED acts on), locked by `heap_lock_tuple` without waiting and, for an
//! admitted write, replaced by `heap_update`. That is what the store's `INSERT … ON CONFLICT DO
//! UPDATE` does (lock, then update), without its executor start-up and speculative insertion
//! check, and without acting as the owner: no statement runs, so no name, operator or trigger
//! is looked up, and nothing another role wrote can run.
//!
//! Exact: the lock is granted only when, under the page's lock, the version read is still the
//! latest and no other transaction holds it; the row is then held for this transaction until
//! it ends, as the statement's row lock would. Anything else (no row yet, a row another
//! transaction holds or has just replaced, a transaction that is read-only, parallel or uses
//! one snapshot throughout, a table or index not as the extension made it) changes nothing and
//! returns false: the store's statement path then waits, inserts and raises as before.
//!
//! Why not under REPEATABLE READ or SERIALIZABLE: there the latest version may be newer than
//! the transaction's snapshot. Writing on top of it would leave the transaction seeing two
//! versions of the row (the snapshot's and its own), so its later statements on the row (the
//! write-back at commit, `reset`) would fail with 40001 after checks were admitted; and a read
//! through a dirty snapshot takes no predicate lock. The statement path raises 40001 at once.

use crate::errors::Raise;
use crate::internal_tables::{self, Table};
use crate::pg_versions;
use pgrx::pg_sys;
use pgrx::{IntoDatum, PgTupleDesc};
use std::ffi::{CStr, CString};

/// The types of `_pg_rls_auth.write_rate_state`'s columns: id, tat, scale, free_at.
const COLUMNS: [pg_sys::Oid; 4] = [
    pg_sys::BYTEAOID,
    pg_sys::NUMERICOID,
    pg_sys::INT4OID,
    pg_sys::INT8OID,
];

/// What to do with a row, given its tat (as text) and scale.
pub enum Step {
    /// Replace it by these values (tat in the text form `numeric_in` reads).
    Write {
        tat: String,
        scale: i32,
        free_at: i64,
    },
    /// Keep it as it is, held until the transaction ends.
    Hold,
    /// Leave it to the statement path.
    Decline,
}

/// Applies `step(tat, scale)` to the latest version of key `id`'s row, if that row exists and
/// nobody else holds it. Returns whether it did; when false, nothing changed.
pub fn settle_unheld(id: &[u8; 16], step: impl FnOnce(&str, i32) -> Step) -> Result<bool, Raise> {
    // SAFETY: main thread, in a SQL function call: reads backend globals and the parallel
    // state; none raises.
    let read_committed = unsafe {
        !pg_sys::XactReadOnly
            && !pg_sys::IsInParallelMode()
            && pg_sys::XactIsoLevel < pg_sys::XACT_REPEATABLE_READ as i32
    };
    if !read_committed {
        return Ok(false);
    }
    let Some(relid) = internal_tables::relation(Table::WriteRateState)? else {
        return Ok(false);
    };
    let key = id.as_slice().into_datum().expect("a bytea is never NULL");
    // SAFETY: main thread, in a transaction that may write and is not parallel (checked above).
    // The relation is the extension's table, found by OID after `relation`'s ownership checks;
    // it is opened only once locked (RowExclusiveLock, as an UPDATE takes, kept until the
    // transaction ends; taking it processes pending invalidations; a table dropped since
    // `relation` looked is left to the statement path). Every pg_sys call is pgrx's guarded
    // wrapper: an ERROR becomes a panic that unwinds through these frames,
    // dropping only Rust values (`key`'s datum is palloc'd, not dropped); the abort then
    // releases the relations, scan, slot and buffer pins through the resource owner. Each
    // early return closes what was opened before it.
    unsafe {
        // Never wait here: a lock another transaction holds is the statement path's to wait
        // for, bounded by pg_rls_auth.rate_limit_lock_timeout.
        if !pg_sys::ConditionalLockRelationOid(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE)
        {
            return Ok(false);
        }
        let heap = pg_sys::try_table_open(relid, pg_sys::NoLock as pg_sys::LOCKMODE);
        if heap.is_null() {
            return Ok(false);
        }
        let index = primary_key(heap);
        let settled = !index.is_null() && settle_in(heap, index, key, step);
        if !index.is_null() {
            pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
        pg_sys::table_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        Ok(settled)
    }
}

/// The table's only index, its primary key on `id`, opened with RowExclusiveLock; NULL when the
/// table or its indexes are not as the extension made them (a superuser changed them: the
/// statement path copes with whatever they are), or when the lock is not free at once.
///
/// # Safety
/// Main thread, in a transaction; `heap` open and locked.
unsafe fn primary_key(heap: pg_sys::Relation) -> pg_sys::Relation {
    // SAFETY: the caller's obligations; `heap`'s relcache entry and descriptor stay valid while
    // it is open. RelationGetIndexList returns a palloc'd copy (freed here) and sets
    // rd_pkindex. What an UPDATE statement would honour and `heap_update` does not: triggers,
    // rules, CHECK constraints, typmods (numeric rounding), a partition's constraint, a replica
    // identity other than the primary key (which may forbid updates when published); and a
    // non-HOT update here would miss any other index's entries. Any of those: decline.
    unsafe {
        let table = &*(*heap).rd_rel;
        if table.relam != pg_sys::HEAP_TABLE_AM_OID
            || table.relhastriggers
            || table.relhasrules
            || table.relispartition
            || table.relreplident as u8 != pg_sys::REPLICA_IDENTITY_DEFAULT
        {
            return std::ptr::null_mut();
        }
        let constraints = (*(*heap).rd_att).constr;
        if !constraints.is_null() && (*constraints).num_check > 0 {
            return std::ptr::null_mut();
        }
        let columns = PgTupleDesc::from_pg_unchecked((*heap).rd_att);
        let same_columns = columns.len() == COLUMNS.len()
            && (0..COLUMNS.len()).all(|i| {
                columns.get(i).is_some_and(|a| {
                    !a.attisdropped && a.atttypid == COLUMNS[i] && a.atttypmod == -1
                })
            });
        drop(columns);
        if !same_columns {
            return std::ptr::null_mut();
        }
        let indexes = pg_sys::RelationGetIndexList(heap);
        let only_one = pg_sys::list_length(indexes) == 1;
        pg_sys::list_free(indexes);
        let pk = (*heap).rd_pkindex;
        if !only_one || pk == pg_sys::InvalidOid {
            return std::ptr::null_mut();
        }
        if !pg_sys::ConditionalLockRelationOid(pk, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE) {
            return std::ptr::null_mut();
        }
        let index = pg_sys::index_open(pk, pg_sys::NoLock as pg_sys::LOCKMODE);
        let form = (*index).rd_index;
        let as_made = (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID
            && (*form).indisunique
            && (*form).indisvalid
            && (*form).indisready
            && (*form).indnatts == 1
            && (*form).indkey.values.as_slice(1)[0] == 1;
        if as_made {
            index
        } else {
            pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
            std::ptr::null_mut()
        }
    }
}

/// Looks `key` up and settles its row (see `settle_unheld`).
///
/// # Safety
/// As in `settle_unheld`: `heap` and `index` (from `primary_key`) open and locked.
unsafe fn settle_in(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    key: pg_sys::Datum,
    step: impl FnOnce(&str, i32) -> Step,
) -> bool {
    // SAFETY: the caller's obligations. `dirty` (InitDirtySnapshot: a zeroed SnapshotData of
    // type SNAPSHOT_DIRTY) and `scan_key` outlive the scan, which ends below. The slot pins the
    // found tuple's buffer until it is dropped, after the update: the tuple read stays valid.
    unsafe {
        let mut dirty: pg_sys::SnapshotData = std::mem::zeroed();
        dirty.snapshot_type = pg_sys::SnapshotType::SNAPSHOT_DIRTY;
        let mut scan_key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut scan_key,
            1,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::Oid::from(pg_sys::F_BYTEAEQ),
            key,
        );
        let scan = pg_versions::index_beginscan(heap, index, &mut dirty, 1);
        pg_sys::index_rescan(scan, &mut scan_key, 1, std::ptr::null_mut(), 0);
        let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
        let found =
            pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
        // The dirty snapshot marks a version another transaction is inserting (xmin) or
        // replacing or deleting (xmax): leave those to the statement path, which waits.
        let settled = found
            && dirty.xmin == pg_sys::InvalidTransactionId
            && dirty.xmax == pg_sys::InvalidTransactionId;
        let done = settled && settle(heap, index, slot, step);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_endscan(scan);
        done
    }
}

/// Applies `step` to the version in `slot`, if nobody else holds it.
///
/// # Safety
/// As in `settle_in`; `slot` holds a version of `heap` just found through `index`.
unsafe fn settle(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    slot: *mut pg_sys::TupleTableSlot,
    step: impl FnOnce(&str, i32) -> Step,
) -> bool {
    // SAFETY: the caller's obligations. ExecFetchSlotHeapTuple without materialising returns
    // the slot's tuple, in the pinned buffer; its header's raw xmin and xmax are plain reads,
    // made without the page's lock and without the infomask (an xmax may be a MultiXactId or
    // an aborted locker's): a wrong match only declines, and heap_lock_tuple below decides
    // under the lock. heap_deform_tuple fills exactly natts (4, checked by `primary_key`)
    // values and flags; the by-reference values point into the pinned buffer and are copied
    // by numeric_out and heap_form_tuple before the slot is dropped. numeric_in gets a
    // NUL-terminated string (our own decimal digits) that outlives the call. heap_lock_tuple
    // reads the tuple at `locked.t_self` and returns its buffer pinned (on every path),
    // released at once.
    unsafe {
        let tuple = pg_sys::ExecFetchSlotHeapTuple(slot, false, std::ptr::null_mut());
        let fields = (*(*tuple).t_data).t_choice.t_heap;
        // A version this transaction made or holds: `heap_update` would raise on one made by
        // the current command; the statement path sees it as a statement should.
        if pg_sys::TransactionIdIsCurrentTransactionId(fields.t_xmin)
            || pg_sys::TransactionIdIsCurrentTransactionId(fields.t_xmax)
        {
            return false;
        }
        let mut values = [pg_sys::Datum::from(0); 4];
        let mut nulls = [true; 4];
        pg_sys::heap_deform_tuple(
            tuple,
            (*heap).rd_att,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        );
        if nulls.iter().any(|&null| null) {
            return false;
        }
        let tat = pgrx::direct_function_call::<&CStr>(pg_sys::numeric_out, &[Some(values[1])])
            .and_then(|text| text.to_str().ok().map(str::to_owned));
        let Some(tat) = tat else {
            return false;
        };
        let write = match step(&tat, values[2].value() as i32) {
            Step::Write {
                tat,
                scale,
                free_at,
            } => Some((tat, scale, free_at)),
            Step::Hold => None,
            Step::Decline => return false,
        };
        // Hold the row without waiting (as SKIP LOCKED does): TM_Ok only when the version read
        // is still the latest and no other transaction holds it, so the step was taken on the
        // current state. The update below then finds the row held by this transaction alone
        // and does not wait either.
        let cid = pg_sys::GetCurrentCommandId(true);
        let mut locked = pg_sys::HeapTupleData {
            t_self: (*slot).tts_tid,
            ..Default::default()
        };
        let mut buffer: pg_sys::Buffer = 0;
        let mut failure = pg_sys::TM_FailureData::default();
        let held = pg_sys::heap_lock_tuple(
            heap,
            &mut locked,
            cid,
            pg_sys::LockTupleMode::LockTupleNoKeyExclusive,
            pg_sys::LockWaitPolicy::LockWaitSkip,
            false,
            &mut buffer,
            &mut failure,
        );
        pg_sys::ReleaseBuffer(buffer);
        if held != pg_sys::TM_Result::TM_Ok {
            return false;
        }
        let Some((tat, scale, free_at)) = write else {
            return true;
        };
        let tat = CString::new(tat).expect("digits have no NUL byte");
        let Some(tat) = pgrx::direct_function_call_as_datum(
            pg_sys::numeric_in,
            &[
                Some(pg_sys::Datum::from(tat.as_ptr())),
                Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                Some(pg_sys::Datum::from(-1i32)),
            ],
        ) else {
            return false;
        };
        let mut new_values = [
            values[0],
            tat,
            pg_sys::Datum::from(scale),
            pg_sys::Datum::from(free_at),
        ];
        let mut new_nulls = [false; 4];
        let new = pg_sys::heap_form_tuple(
            (*heap).rd_att,
            new_values.as_mut_ptr(),
            new_nulls.as_mut_ptr(),
        );
        let mut otid = (*slot).tts_tid;
        let (result, needs_index_entry) = pg_versions::heap_update(heap, &mut otid, new, cid);
        if result != pg_sys::TM_Result::TM_Ok {
            return false;
        }
        // Not a HOT update: the new version needs its own primary-key entry, checked as an
        // UPDATE's is (the version it replaces is this transaction's, so no conflict).
        if needs_index_entry {
            pg_sys::index_insert(
                index,
                new_values.as_mut_ptr(),
                new_nulls.as_mut_ptr(),
                &mut (*new).t_self,
                heap,
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES,
                true,
                pg_sys::BuildIndexInfo(index),
            );
        }
        true
    }
}
