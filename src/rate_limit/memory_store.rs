//! The memory store: a fixed-size table in shared memory (whose header also holds the
//! revocation epoch), split into partitions with one LWLock each so concurrent backends rarely
//! wait on one another (as pg_stat_statements and the buffer mapping table do). Needs shared_preload_libraries; starts empty after a restart, and
//! counts attempts in transactions that later roll back.

use super::Counters;
use crate::guc;
use crate::pg_raw;
use pg_rls_auth_core::gcra::{Decision, Limit};
use pg_rls_auth_core::slot_table::{max_used, slots_for_capacity, KeyId, Slot, SlotTable};
use pgrx::pg_sys;
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
    /// Checks of the table store (counted here when the library is preloaded), as admitted and
    /// rejected: each check adds to exactly one, so no reader ever subtracts two counters
    /// read at different moments.
    admitted: AtomicU64,
    rejected: AtomicU64,
    /// Bumped by every commit that changed `_pg_rls_auth.revocations` (see `revocation`).
    revocation_epoch: AtomicU64,
    partitions: [PartitionStats; PARTITIONS],
}

static mut HEADER: *mut Header = std::ptr::null_mut();
static mut SLOTS: *mut Slot = std::ptr::null_mut();
/// Each partition's overflow cells (see `SlotTable`), as many as it has slots.
static mut CELLS: *mut i64 = std::ptr::null_mut();
static mut LOCKS: *mut pg_sys::LWLockPadded = std::ptr::null_mut();

fn slots_per_partition() -> usize {
    let wanted = (guc::RATE_LIMIT_SLOTS.get() as usize).div_ceil(PARTITIONS);
    slots_for_capacity(wanted)
}

fn shmem_size() -> usize {
    let per_slot = std::mem::size_of::<Slot>() + std::mem::size_of::<i64>();
    std::mem::size_of::<Header>() + PARTITIONS * slots_per_partition() * per_slot
}

/// Reserves the block and its locks.
///
/// # Safety
/// Only from `shmem::shmem_request` (the shmem_request_hook), in the postmaster.
pub unsafe fn request_shmem() {
    // SAFETY: the caller is shmem_request_hook, the one place where RequestAddinShmemSpace
    // and RequestNamedLWLockTranche are allowed (elsewhere they raise ERROR). Both are guarded
    // wrappers: an ERROR becomes a panic for the hook's #[pg_guard]. The size is the one
    // `attach_shmem` claims, as pg_rls_auth.rate_limit_slots is PGC_POSTMASTER and cannot
    // change in between.
    unsafe {
        pg_sys::RequestAddinShmemSpace(shmem_size());
        pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), PARTITIONS as i32);
    }
}

/// Finds (or creates and initialises) the block.
///
/// # Safety
/// Only from `shmem::shmem_startup`, single-threaded, after `request_shmem`, with
/// AddinShmemInitLock held exclusively.
pub unsafe fn attach_shmem() {
    // SAFETY: the caller holds AddinShmemInitLock, so exactly one process sees `found ==
    // false` and initialises the block before anyone uses it. ShmemInitStruct returns
    // shmem_size() bytes aligned to PG_CACHE_LINE_SIZE (128), enough for Header (align 64);
    // SLOTS starts size_of::<Header>() (a multiple of 64) in and CELLS after PARTITIONS * per
    // slots (40 bytes, align 8): all aligned and inside the block, by shmem_size's arithmetic.
    // The block is zeroed before Header is written, and all-zero is a valid Header and Slot.
    // Every pg_sys call here is a guarded wrapper, and pgrx::error! panics: either becomes a
    // panic for the hook's #[pg_guard], with only `found` and `secret` (no destructors) live.
    unsafe {
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
    }
}

pub fn available() -> bool {
    // SAFETY: read by value on the main thread; written only by shmem_startup, before any
    // query runs (inherited by fork, or set again in this backend under EXEC_BACKEND).
    unsafe { !HEADER.is_null() }
}

/// Runs `f` on the partition holding `id`, under its exclusive lock. Nothing in shared memory
/// is referenced before the lock is held.
fn with_partition<R>(id: KeyId, f: impl FnOnce(&mut SlotTable, &mut PartitionStats) -> R) -> R {
    // SAFETY: callers get here only when `available()`, so HEADER, SLOTS, CELLS and LOCKS
    // were set by shmem_startup and never change; slots_per_partition too is written once at
    // startup, so it is read before the lock. p < PARTITIONS, so the lock is one of our
    // tranche's and both slices lie inside the block. The slices and `stats` are formed only
    // once this partition's LWLock is held exclusively, and every other access to them (here
    // or in partition_stats) holds that lock, so the &mut are unique. LWLockRelease cannot
    // raise; LWLockAcquire (raw) raises only "too many LWLocks taken", which would longjmp
    // past the callers unguarded, but this never holds more than one. `f` is plain Rust over
    // plain memory: it cannot raise, only panic (e.g. an assert); that unwinds with the lock
    // held, and the ERROR pgrx makes of it releases the lock at abort (LWLockReleaseAll),
    // possibly leaving this partition's `used` stale.
    unsafe {
        // Set once at startup, before any backend runs a query.
        let per = (*HEADER).slots_per_partition;
        let p = id.partition(PARTITIONS);
        let lock = &raw mut (*LOCKS.add(p)).lock;
        pg_raw::lwlock_acquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let slots = std::slice::from_raw_parts_mut(SLOTS.add(p * per), per);
        let cells = std::slice::from_raw_parts_mut(CELLS.add(p * per), per);
        let stats = &mut (*HEADER).partitions[p];
        // The closure is plain Rust over plain memory: it cannot raise, so the lock is
        // always released here (an ERROR would release it too, via LWLockReleaseAll).
        let mut used = stats.used;
        let result = f(&mut SlotTable::new(slots, cells, &mut used), stats);
        stats.used = used;
        pg_raw::lwlock_release(lock);
        result
    }
}

fn key_id(bucket: &str, key: &str) -> KeyId {
    // SAFETY: only when `available()` (callers use the memory store only then): HEADER points
    // to the initialised block. `secret` is written once at startup and only read after, so a
    // shared reference to that field alone, without a lock, is sound.
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
    let (admitted, rejected) = table_store_counters();
    if allowed { admitted } else { rejected }.fetch_add(1, Ordering::Relaxed);
    true
}

/// The table store's two counters (admitted, rejected): atomics, so shared references without a lock are sound.
fn table_store_counters() -> (&'static AtomicU64, &'static AtomicU64) {
    // SAFETY: callers run only when `available()`, so HEADER points to the initialised block,
    // which lives as long as the server. The references cover these two atomic fields only,
    // never the partitions' plain counters, which other backends write under their locks.
    unsafe { (&(*HEADER).admitted, &(*HEADER).rejected) }
}

/// The revocation epoch, when preloaded: the one piece of pg_rls_auth's shared memory that is
/// not the limiter's. An atomic, so a shared reference without a lock is sound.
pub fn revocation_epoch() -> Option<&'static AtomicU64> {
    // SAFETY: only when `available()`, so HEADER points to the initialised block, which lives
    // as long as the server; the reference covers this atomic field only.
    available().then(|| unsafe { &(*HEADER).revocation_epoch })
}

/// Each partition's stats, read under its lock.
fn partition_stats() -> impl Iterator<Item = (u32, u64, u64, u64)> {
    // SAFETY: callers run only when `available()` (see with_partition). Each partition's stats
    // are read through a reference formed after its LWLock is held in shared mode, and are
    // written only under the exclusive lock; the raw Acquire/Release cannot raise in practice
    // (see with_partition), and plain reads cannot panic.
    (0..PARTITIONS).map(|p| unsafe {
        let lock = &raw mut (*LOCKS.add(p)).lock;
        pg_raw::lwlock_acquire(lock, pg_sys::LWLockMode::LW_SHARED);
        let s = &(*HEADER).partitions[p];
        let out = (s.used, s.checks, s.admitted, s.evictions);
        pg_raw::lwlock_release(lock);
        out
    })
}

pub fn counters() -> Option<Counters> {
    available().then(|| {
        let (admitted, rejected) = table_store_counters();
        let mut c = Counters {
            admitted: admitted.load(Ordering::Relaxed),
            rejected: rejected.load(Ordering::Relaxed),
            ..Counters::default()
        };
        // A partition's counters are read together, under its lock: admitted <= checks.
        for (_, checks, admitted, evictions) in partition_stats() {
            c.admitted += admitted;
            c.rejected += checks - admitted;
            c.evictions += evictions;
        }
        c.checks = c.admitted + c.rejected;
        c
    })
}

/// (slots used, keys the store holds before it evicts).
pub fn usage() -> (i64, i64) {
    // SAFETY: called only for the memory store, i.e. when `available()`; slots_per_partition
    // is written once at startup and read-only after: a plain read, no lock needed.
    let per = unsafe { (*HEADER).slots_per_partition };
    let used = partition_stats().map(|(used, ..)| i64::from(used)).sum();
    (used, (PARTITIONS * max_used(per)) as i64)
}
