//! The managed keys' shared memory: one slot per source with its last good key set and its
//! status, a version bumped whenever a key set changes, and the requests backends leave for
//! the worker. One LWLock guards it all; nothing is referenced outside the lock, and nothing
//! under it can raise (plain copies only).

use pg_rls_auth_core::managed_keys::{SourceKind, MAX_KEPT_JWKS_BYTES, MAX_SOURCES};
use pgrx::pg_sys;
use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};

const NAME: &CStr = c"pg_rls_auth managed keys";

/// Text of at most N bytes, stored inline.
#[repr(C)]
pub struct Text<const N: usize> {
    len: u32,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    pub fn as_str(&self) -> &str {
        // Only `set` writes it, from a &str cut at a character boundary.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    /// Stores `s`, cut to N bytes at a character boundary (only error messages are ever cut:
    /// URLs and key sets are bounded below N where they are made).
    pub fn set(&mut self, s: &str) {
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        self.len = end as u32;
    }
}

/// One source's state. All-zero is "unused".
#[repr(C)]
pub struct Slot {
    /// 0: unused; else the source's kind (see `kind`).
    kind_code: u8,
    /// The URL or issuer as configured: the slot's identity.
    pub configured: Text<1024>,
    /// The JWKS URL last fetched (an issuer's discovered `jwks_uri`).
    pub jwks_url: Text<1024>,
    /// The last good key set (`KeptKeys::jwks`); empty until a fetch succeeds.
    pub keys: Text<MAX_KEPT_JWKS_BYTES>,
    pub key_count: u32,
    /// Unix microseconds; 0 for never.
    pub last_attempt_us: i64,
    pub last_success_us: i64,
    pub next_refresh_us: i64,
    /// When a backend last marked this source for an unknown `kid` (see
    /// `refresh_for_unknown_kid`), and whether the worker has yet to fetch it for that.
    pub last_kid_refresh_us: i64,
    pub kid_refresh_pending: bool,
    pub last_error: Text<512>,
}

impl Slot {
    pub fn kind(&self) -> Option<SourceKind> {
        match self.kind_code {
            1 => Some(SourceKind::JwksUrl),
            2 => Some(SourceKind::OidcIssuer),
            _ => None,
        }
    }

    pub fn is(&self, kind: SourceKind, configured: &str) -> bool {
        self.kind() == Some(kind) && self.configured.as_str() == configured
    }

    /// Makes this the slot of a new source: nothing fetched, due now.
    pub fn reset(&mut self, source: Option<(SourceKind, &str)>) {
        self.kind_code = match source.map(|s| s.0) {
            None => 0,
            Some(SourceKind::JwksUrl) => 1,
            Some(SourceKind::OidcIssuer) => 2,
        };
        self.configured.set(source.map_or("", |s| s.1));
        self.jwks_url.set("");
        self.keys.set("");
        self.key_count = 0;
        self.last_attempt_us = 0;
        self.last_success_us = 0;
        self.next_refresh_us = 0;
        self.last_kid_refresh_us = 0;
        self.kid_refresh_pending = false;
        self.last_error.set("");
    }
}

#[repr(C)]
pub struct Shared {
    /// Bumped, under the exclusive lock, whenever a slot's keys or identity change: backends
    /// rebuild their key set only when it moves. Read without the lock.
    pub version: AtomicU64,
    /// Rounds of fetches the worker started and finished; a backend that asks for a refresh
    /// waits for the round after the one running when it asked.
    pub rounds_started: u64,
    pub rounds_done: AtomicU64,
    /// The worker, while it runs.
    pub worker_pid: i32,
    pub worker_latch: *mut pg_sys::Latch,
    /// Fetch every source now (auth.refresh_jwks).
    pub refresh_all: bool,
    /// The round that serves the latest unknown-kid request.
    pub kid_round: u64,
    pub slots: [Slot; MAX_SOURCES],
}

static mut SHARED: *mut Shared = std::ptr::null_mut();
static mut LOCK: *mut pg_sys::LWLock = std::ptr::null_mut();

/// Reserves the block and its lock.
///
/// # Safety
/// Only from `shmem::shmem_request` (the shmem_request_hook), in the postmaster.
pub unsafe fn request_shmem() {
    // SAFETY: the caller is shmem_request_hook, the one place where these calls are allowed;
    // both are guarded wrappers (an ERROR becomes a panic for the hook's #[pg_guard]).
    unsafe {
        pg_sys::RequestAddinShmemSpace(std::mem::size_of::<Shared>());
        pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), 1);
    }
}

/// Finds (or creates and zeroes) the block.
///
/// # Safety
/// Only from `shmem::shmem_startup`, single-threaded, after `request_shmem`, with
/// AddinShmemInitLock held exclusively.
pub unsafe fn attach_shmem() {
    // SAFETY: the caller holds AddinShmemInitLock, so exactly one process zeroes the block
    // (all-zero is a valid Shared: no source, version 0, no worker) before anyone uses it.
    // The block is size_of::<Shared>() bytes aligned to PG_CACHE_LINE_SIZE, more than
    // Shared's alignment (8). Guarded wrappers only, with nothing live that needs dropping.
    unsafe {
        let mut found = false;
        let base =
            pg_sys::ShmemInitStruct(NAME.as_ptr(), std::mem::size_of::<Shared>(), &mut found);
        if !found {
            std::ptr::write_bytes(base as *mut u8, 0, std::mem::size_of::<Shared>());
        }
        SHARED = base as *mut Shared;
        LOCK = &raw mut (*pg_sys::GetNamedLWLockTranche(NAME.as_ptr())).lock;
    }
}

pub fn available() -> bool {
    // SAFETY: read by value on the main thread; written only by shmem_startup, before any
    // query runs (inherited by fork).
    unsafe { !SHARED.is_null() }
}

fn shared_ptr() -> *mut Shared {
    assert!(
        available(),
        "managed keys' shared memory used without preload"
    );
    // SAFETY: as in `available`.
    unsafe { SHARED }
}

/// The key sets' version, without the lock (an atomic read).
pub fn version() -> u64 {
    // SAFETY: SHARED points to the initialised block (checked); `version` is an atomic, read
    // through a shared reference to that field only.
    unsafe { (*shared_ptr()).version.load(Ordering::Acquire) }
}

/// Rounds the worker has finished, without the lock.
pub fn rounds_done() -> u64 {
    // SAFETY: as in `version`.
    unsafe { (*shared_ptr()).rounds_done.load(Ordering::Acquire) }
}

/// Runs `f` under the lock, shared or exclusive. `f` must not raise: it only copies plain
/// data, so the lock is always released here.
fn locked<R>(mode: pg_sys::LWLockMode::Type, f: impl FnOnce(*mut Shared) -> R) -> R {
    let shared = shared_ptr();
    // SAFETY: LOCK is our tranche's lock, set with SHARED at startup. lwlock_acquire raises
    // only "too many LWLocks taken" (it would longjmp past the callers, unguarded, some of
    // which hold the session's RefCell borrow); callers hold none of ours and run from SQL
    // functions, hooks or the worker loop, far below 200 held locks, so it never does. `f` is plain Rust over plain
    // memory: a panic in it unwinds with the lock held, and the ERROR pgrx makes of it
    // releases the lock at abort (LWLockReleaseAll).
    unsafe {
        crate::pg_raw::lwlock_acquire(LOCK, mode);
        let result = f(shared);
        crate::pg_raw::lwlock_release(LOCK);
        result
    }
}

/// Reads the shared state under the shared lock.
pub fn read<R>(f: impl FnOnce(&Shared) -> R) -> R {
    // SAFETY: the pointer is valid (see `shared_ptr`), and under the shared lock no process
    // writes the non-atomic fields, so a shared reference is sound for f's duration.
    locked(pg_sys::LWLockMode::LW_SHARED, |s| f(unsafe { &*s }))
}

/// Changes the shared state under the exclusive lock.
pub fn write<R>(f: impl FnOnce(&mut Shared) -> R) -> R {
    // SAFETY: the pointer is valid, and the exclusive lock makes this the only reference to
    // the block's non-atomic fields (atomics are only read without the lock).
    locked(pg_sys::LWLockMode::LW_EXCLUSIVE, |s| f(unsafe { &mut *s }))
}

impl Shared {
    /// The slot of the source `kind` `configured`, if the worker has given it one.
    pub fn slot_of(&self, kind: SourceKind, configured: &str) -> Option<&Slot> {
        self.slots.iter().find(|slot| slot.is(kind, configured))
    }
}

/// Wakes the worker, if it runs: its pid.
pub fn wake_worker() -> Option<i32> {
    read(|s| {
        if s.worker_pid == 0 || s.worker_latch.is_null() {
            return None;
        }
        // SAFETY: the latch is the worker's procLatch, in PGPROC memory that lives as long
        // as shared memory; the worker clears the pointer under the exclusive lock when it
        // exits (we hold the shared lock), and the owner check guards against a PGPROC
        // reused after an exit that skipped that. SetLatch cannot raise.
        unsafe {
            if (*s.worker_latch).owner_pid != s.worker_pid {
                return None;
            }
            pg_sys::SetLatch(s.worker_latch);
        }
        Some(s.worker_pid)
    })
}

/// Bumps the version after a change (caller holds the exclusive lock through `write`).
pub fn bump(s: &Shared) {
    s.version.fetch_add(1, Ordering::AcqRel);
}
