//! The library's shared memory (with `shared_preload_libraries` only): one pair of hooks,
//! chained after any installed before, that reserves and then attaches every block — the rate
//! limiter's memory store and the managed keys.

use crate::managed_keys;
use crate::rate_limit;
use pgrx::{pg_guard, pg_sys};

static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

pub fn init() {
    // SAFETY: a plain read of a PostgreSQL global, on the main thread during _PG_init.
    if unsafe { !pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    // SAFETY: _PG_init while preloading: the postmaster, single-threaded, before shared
    // memory exists, so nothing reads these statics concurrently. Each previous hook is saved
    // before ours is installed, and ours call it first. Plain writes: nothing can raise.
    unsafe {
        PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

/// # Safety
/// Called only by PostgreSQL as shmem_request_hook, in the postmaster, single-threaded.
#[pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: this runs as shmem_request_hook (PostgreSQL 15+), the one place where the
    // blocks' RequestAddinShmemSpace and RequestNamedLWLockTranche calls are allowed. The
    // previous hook is a raw C function pointer: an ERROR in it longjmps past this frame,
    // which holds nothing that needs dropping.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        rate_limit::request_shmem();
        managed_keys::request_shmem();
    }
}

/// # Safety
/// Called only by PostgreSQL as shmem_startup_hook (in the postmaster, or in each backend
/// under EXEC_BACKEND), single-threaded, after shared memory and the LWLocks were created.
#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: single-threaded, after CreateLWLocks (so MainLWLockArray is valid) and after
    // shmem_request reserved every block. AddinShmemInitLock is held exclusively around the
    // blocks' ShmemInitStruct calls, as PostgreSQL requires, so exactly one process
    // initialises each block before anyone uses it. The attach functions call guarded
    // wrappers only: an ERROR becomes a panic for this #[pg_guard] (FATAL in the postmaster;
    // exit releases the lock). The previous hook is a raw C pointer, called with nothing live.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        let lock = addin_shmem_init_lock();
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        rate_limit::attach_shmem();
        managed_keys::attach_shmem();
        pg_sys::LWLockRelease(lock);
    }
}

/// `AddinShmemInitLock`, a macro in C: slot 21 of the main LWLock array.
///
/// # Safety
/// Only after the main LWLock array exists (CreateLWLocks); main thread.
unsafe fn addin_shmem_init_lock() -> *mut pg_sys::LWLock {
    // SAFETY: MainLWLockArray is valid (caller's obligation) and has far more than 22
    // entries; AddinShmemInitLock is entry 21 in PostgreSQL 15 to 18 (lwlocknames). Only a
    // raw pointer is formed, no reference.
    unsafe { &raw mut (*pg_sys::MainLWLockArray.add(21)).lock }
}
