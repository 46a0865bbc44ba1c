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

#[repr(C)]
struct Header {
    /// Per-cluster random key of the SipHash that names keys.
    secret: [u8; 16],
    slots_per_partition: usize,
    checks: AtomicU64,
    admitted: AtomicU64,
    rejected: AtomicU64,
    evictions: AtomicU64,
    /// Used slots per partition; each guarded by its partition's lock.
    used: [u32; PARTITIONS],
}

static mut HEADER: *mut Header = std::ptr::null_mut();
static mut SLOTS: *mut Slot = std::ptr::null_mut();
static mut LOCKS: *mut pg_sys::LWLockPadded = std::ptr::null_mut();
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

fn slots_per_partition() -> usize {
    let wanted = (guc::RATE_LIMIT_SLOTS.get() as usize).div_ceil(PARTITIONS);
    slots_for_capacity(wanted)
}

fn shmem_size() -> usize {
    std::mem::size_of::<Header>() + PARTITIONS * slots_per_partition() * std::mem::size_of::<Slot>()
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

/// Runs `f` on the partition holding `id`, under its lock.
fn with_partition<R>(
    id: KeyId,
    mode: pg_sys::LWLockMode::Type,
    f: impl FnOnce(&mut SlotTable) -> R,
) -> R {
    unsafe {
        let header = &mut *HEADER;
        let per = header.slots_per_partition;
        let p = id.partition(PARTITIONS);
        let lock = &raw mut (*LOCKS.add(p)).lock;
        pg_sys::LWLockAcquire(lock, mode);
        let slots = std::slice::from_raw_parts_mut(SLOTS.add(p * per), per);
        // The closure is plain Rust over plain memory: it cannot raise, so the lock is
        // always released here (an ERROR would release it too, via LWLockReleaseAll).
        let result = f(&mut SlotTable::new(slots, &mut header.used[p]));
        pg_sys::LWLockRelease(lock);
        result
    }
}

fn key_id(bucket: &str, key: &str) -> KeyId {
    KeyId::new(unsafe { &(*HEADER).secret }, bucket, key)
}

/// Returns the decision and whether a key was evicted to make room.
pub fn decide(
    bucket: &str,
    key: &str,
    limit: Limit,
    now_ns: i128,
    consume: bool,
) -> (Decision, bool) {
    let id = key_id(bucket, key);
    let mode = if consume {
        pg_sys::LWLockMode::LW_EXCLUSIVE
    } else {
        pg_sys::LWLockMode::LW_SHARED
    };
    if !consume {
        // A shared lock suffices: deciding without consuming never writes.
        return with_partition(id, mode, |t| (read_only(t, id, limit, now_ns), false));
    }
    let out = with_partition(id, mode, |t| t.decide(id, limit, now_ns, true));
    (out.decision, out.evicted)
}

fn read_only(t: &mut SlotTable, id: KeyId, limit: Limit, now_ns: i128) -> Decision {
    t.decide(id, limit, now_ns, false).decision
}

pub fn reset(bucket: &str, key: &str) -> bool {
    let id = key_id(bucket, key);
    with_partition(id, pg_sys::LWLockMode::LW_EXCLUSIVE, |t| t.remove(id))
}

/// Adds one check to the shared counters; false when there is no shared memory.
pub fn count(allowed: bool, evicted: bool) -> bool {
    if !available() {
        return false;
    }
    let h = unsafe { &*HEADER };
    h.checks.fetch_add(1, Ordering::Relaxed);
    if allowed { &h.admitted } else { &h.rejected }.fetch_add(1, Ordering::Relaxed);
    if evicted {
        h.evictions.fetch_add(1, Ordering::Relaxed);
    }
    true
}

pub fn counters() -> Option<Counters> {
    available().then(|| {
        let h = unsafe { &*HEADER };
        Counters {
            checks: h.checks.load(Ordering::Relaxed),
            admitted: h.admitted.load(Ordering::Relaxed),
            rejected: h.rejected.load(Ordering::Relaxed),
            evictions: h.evictions.load(Ordering::Relaxed),
        }
    })
}

/// (slots used, keys the store holds before it evicts).
pub fn usage() -> (i64, i64) {
    let per = unsafe { (*HEADER).slots_per_partition };
    let used = (0..PARTITIONS)
        .map(|p| {
            // Any slot id of partition p: read its count under its lock.
            let lock = unsafe { &raw mut (*LOCKS.add(p)).lock };
            unsafe {
                pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED);
                let n = (*HEADER).used[p];
                pg_sys::LWLockRelease(lock);
                i64::from(n)
            }
        })
        .sum();
    (used, (PARTITIONS * max_used(per)) as i64)
}
