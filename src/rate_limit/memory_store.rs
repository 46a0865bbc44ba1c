//! The memory store: a fixed-size table in shared memory, split into partitions with one
//! LWLock each so concurrent backends rarely wait on one another (as pg_stat_statements and the
//! buffer mapping table do). Needs shared_preload_libraries; starts empty after a restart, and
//! counts attempts in transactions that later roll back.

use super::Counters;
use crate::guc;
use pg_rls_auth_core::gcra::{Decision, Limit};
use pg_rls_auth_core::slot_table::{max_used, slots_for_capacity, KeyId, Slot, SlotTable};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};

const PARTITIONS: usize = 16;
const NAME: &CStr = c"pg_rls_auth";

/// One partition's bookkeeping, guarded by its lock; a cache line each, so backends working
/// on different partitions do not contend for it.
#[repr(C, align(64))]
struct PartitionStats {
    used: u32,
    checks: u64,
    admitted: u64,
    evictions: u64,
}

#[repr(C)]
struct Header {
    /// Per-cluster random key of the SipHash that names keys.
    secret: [u8; 16],
    slots_per_partition: usize,
    /// Checks of the table store (counted here when the library is preloaded).
    checks: AtomicU64,
    admitted: AtomicU64,
    partitions: [PartitionStats; PARTITIONS],
}

// LWLockAcquire/Release called directly rather than through pgrx's guarded wrappers (which set
// up a longjmp catch per call): in this hot path they cannot raise, as the slot table code
// between them cannot.
unsafe extern "C-unwind" {
    #[link_name = "LWLockAcquire"]
    fn raw_lwlock_acquire(lock: *mut pg_sys::LWLock, mode: pg_sys::LWLockMode::Type) -> bool;
    #[link_name = "LWLockRelease"]
    fn raw_lwlock_release(lock: *mut pg_sys::LWLock);
}

static mut HEADER: *mut Header = std::ptr::null_mut();
static mut SLOTS: *mut Slot = std::ptr::null_mut();
/// Each partition's overflow cells (see `SlotTable`), as many as it has slots.
static mut CELLS: *mut i64 = std::ptr::null_mut();
static mut LOCKS: *mut pg_sys::LWLockPadded = std::ptr::null_mut();
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

fn slots_per_partition() -> usize {
    let wanted = (guc::RATE_LIMIT_SLOTS.get() as usize).div_ceil(PARTITIONS);
    slots_for_capacity(wanted)
}

fn shmem_size() -> usize {
    let per_slot = std::mem::size_of::<Slot>() + std::mem::size_of::<i64>();
    std::mem::size_of::<Header>() + PARTITIONS * slots_per_partition() * per_slot
}

pub fn init() {
    if unsafe { !pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    unsafe {
        PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(shmem_size());
        pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), PARTITIONS as i32);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        pg_sys::LWLockAcquire(addin_shmem_init_lock(), pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let base = pg_sys::ShmemInitStruct(NAME.as_ptr(), shmem_size(), &mut found) as *mut u8;
        HEADER = base as *mut Header;
        SLOTS = base.add(std::mem::size_of::<Header>()) as *mut Slot;
        CELLS = SLOTS.add(PARTITIONS * slots_per_partition()) as *mut i64;
        if !found {
            std::ptr::write_bytes(base, 0, shmem_size());
            let mut secret = [0u8; 16];
            if !pg_sys::pg_strong_random(secret.as_mut_ptr().cast(), secret.len()) {
                pgrx::error!(
                    "pg_rls_auth: could not generate a random secret for the rate limiter"
                );
            }
            (*HEADER).secret = secret;
            (*HEADER).slots_per_partition = slots_per_partition();
        }
        LOCKS = pg_sys::GetNamedLWLockTranche(NAME.as_ptr());
        pg_sys::LWLockRelease(addin_shmem_init_lock());
    }
}

/// `AddinShmemInitLock`, a macro in C: slot 21 of the main LWLock array.
unsafe fn addin_shmem_init_lock() -> *mut pg_sys::LWLock {
    unsafe { &raw mut (*pg_sys::MainLWLockArray.add(21)).lock }
}

pub fn available() -> bool {
    unsafe { !HEADER.is_null() }
}

/// Runs `f` on the partition holding `id`, under its exclusive lock. Nothing in shared memory
/// is referenced before the lock is held.
fn with_partition<R>(id: KeyId, f: impl FnOnce(&mut SlotTable, &mut PartitionStats) -> R) -> R {
    unsafe {
        // Set once at startup, before any backend runs a query.
        let per = (*HEADER).slots_per_partition;
        let p = id.partition(PARTITIONS);
        let lock = &raw mut (*LOCKS.add(p)).lock;
        raw_lwlock_acquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let slots = std::slice::from_raw_parts_mut(SLOTS.add(p * per), per);
        let cells = std::slice::from_raw_parts_mut(CELLS.add(p * per), per);
        let stats = &mut (*HEADER).partitions[p];
        // The closure is plain Rust over plain memory: it cannot raise, so the lock is
        // always released here (an ERROR would release it too, via LWLockReleaseAll).
        let mut used = stats.used;
        let result = f(&mut SlotTable::new(slots, cells, &mut used), stats);
        stats.used = used;
        raw_lwlock_release(lock);
        result
    }
}

fn key_id(bucket: &str, key: &str) -> KeyId {
    KeyId::new(unsafe { &(*HEADER).secret }, bucket, key)
}

/// Decides, and with `consume` records the write and counts the check.
pub fn decide(bucket: &str, key: &str, limit: Limit, now_ns: i128, consume: bool) -> Decision {
    let id = key_id(bucket, key);
    if !consume {
        return with_partition(id, |t, _| t.decide(id, limit, now_ns, false).decision);
    }
    with_partition(id, |t, stats| {
        let out = t.decide(id, limit, now_ns, true);
        stats.checks += 1;
        stats.admitted += u64::from(out.decision.allowed);
        stats.evictions += u64::from(out.evicted);
        out.decision
    })
}

pub fn reset(bucket: &str, key: &str) -> bool {
    let id = key_id(bucket, key);
    with_partition(id, |t, _| t.remove(id))
}

/// Counts a check of the table store in shared memory; false when there is none.
pub fn count_table_check(allowed: bool) -> bool {
    if !available() {
        return false;
    }
    let h = unsafe { &*HEADER };
    h.checks.fetch_add(1, Ordering::Relaxed);
    h.admitted.fetch_add(u64::from(allowed), Ordering::Relaxed);
    true
}

/// Each partition's stats, read under its lock.
fn partition_stats() -> impl Iterator<Item = (u32, u64, u64, u64)> {
    (0..PARTITIONS).map(|p| unsafe {
        let lock = &raw mut (*LOCKS.add(p)).lock;
        raw_lwlock_acquire(lock, pg_sys::LWLockMode::LW_SHARED);
        let s = &(*HEADER).partitions[p];
        let out = (s.used, s.checks, s.admitted, s.evictions);
        raw_lwlock_release(lock);
        out
    })
}

pub fn counters() -> Option<Counters> {
    available().then(|| {
        let h = unsafe { &*HEADER };
        let mut c = Counters {
            checks: h.checks.load(Ordering::Relaxed),
            admitted: h.admitted.load(Ordering::Relaxed),
            ..Counters::default()
        };
        for (_, checks, admitted, evictions) in partition_stats() {
            c.checks += checks;
            c.admitted += admitted;
            c.evictions += evictions;
        }
        // The two table-store counters are read one after the other, not together.
        c.rejected = c.checks.saturating_sub(c.admitted);
        c
    })
}

/// (slots used, keys the store holds before it evicts).
pub fn usage() -> (i64, i64) {
    let per = unsafe { (*HEADER).slots_per_partition };
    let used = partition_stats().map(|(used, ..)| i64::from(used)).sum();
    (used, (PARTITIONS * max_used(per)) as i64)
}
