//! The background worker that fetches managed keys: the only process that touches the
//! network. It fetches every source at start and when due, when a backend met an unknown
//! `kid` (the backend marks the sources, at most once per source every 30 s), or when
//! auth.refresh_jwks() asks, and writes each outcome to its source's slot: a success replaces
//! the key set, a failure only records the error.

use super::shared::{self, Shared};
use super::{now_us, sources_from_settings};
use crate::guc;
use pg_rls_auth_core::http_fetch::Fetcher;
use pg_rls_auth_core::managed_keys::{
    kept_kids, next_refresh_secs, shown_url, Source, MAX_MAX_AGE_SECS,
};
use pg_rls_auth_core::AuthError;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// Far more than a CA bundle needs (this machine's whole system bundle is about 220 kB).
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;
use std::time::Duration;

/// Registers the worker (while preloading): it starts with the server and, should it exit,
/// starts again after 10 s.
pub fn register() {
    BackgroundWorkerBuilder::new("pg_rls_auth key refresher")
        .set_type("pg_rls_auth key refresher")
        .set_library("pg_rls_auth")
        .set_function("pg_rls_auth_key_worker_main")
        .enable_shmem_access(None)
        // Connected to no database, only so that it shows in pg_stat_activity.
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// What the settings say, as the worker last read them.
struct Config {
    sources: Vec<Source>,
    fetcher: Result<Fetcher, AuthError>,
    interval_secs: u64,
}

fn read_config() -> Config {
    let sources = match sources_from_settings() {
        Ok(sources) => sources,
        Err(e) => {
            // Backends fail closed with the same error; the worker has nothing to fetch.
            pgrx::warning!("pg_rls_auth: {}", e.message);
            Vec::new()
        }
    };
    let fetcher = match guc::string_value(&guc::HTTP_CA_FILE, "pg_rls_auth.http_ca_file") {
        Err(e) => Err(e),
        Ok(None) => Fetcher::new(None),
        Ok(Some(path)) => match crate::secret_file::read_regular_file(path, MAX_CA_FILE_BYTES) {
            Ok((pem, _)) => Fetcher::new(Some(&pem)),
            Err(why) => Err(AuthError::bad_config(format!(
                "pg_rls_auth.http_ca_file \"{path}\": {why}"
            ))),
        },
    };
    Config {
        sources,
        fetcher,
        interval_secs: guc::JWKS_REFRESH_INTERVAL.get().max(1) as u64,
    }
}

/// Gives each configured source a slot: a source that stays keeps its slot, keys and status;
/// slots of sources no longer configured are freed. Bumps the version when anything changed.
fn assign_slots(s: &mut Shared, sources: &[Source]) {
    let mut changed = false;
    for slot in s.slots.iter_mut() {
        let kept = sources.iter().any(|src| slot.is(src.kind, &src.configured));
        if slot.kind().is_some() && !kept {
            slot.reset(None);
            changed = true;
        }
    }
    for source in sources {
        if s.slot_of(source.kind, &source.configured).is_some() {
            continue;
        }
        // parse_sources allows at most as many sources as there are slots.
        if let Some(free) = s.slots.iter_mut().find(|slot| slot.kind().is_none()) {
            free.reset(Some((source.kind, &source.configured)));
            changed = true;
        }
    }
    if changed {
        shared::bump(s);
    }
}

static TERMINATING: AtomicBool = AtomicBool::new(false);

/// Whether the server asked this worker to stop (checked between fetches, too).
fn terminating() -> bool {
    if BackgroundWorker::sigterm_received() {
        TERMINATING.store(true, Ordering::Relaxed);
    }
    TERMINATING.load(Ordering::Relaxed)
}

/// # Safety
/// Called only by PostgreSQL, as the entry point of the worker registered by `register`.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_rls_auth_key_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    let mut config = read_config();
    // SAFETY: registers a #[pg_guard] callback that runs at process exit, however the worker
    // ends (normally, or FATAL after an ERROR), before the process leaves shared memory.
    unsafe { pg_sys::before_shmem_exit(Some(forget_worker), pg_sys::Datum::from(0)) };
    shared::write(|s| {
        // SAFETY: MyProc is this process's PGPROC, set before a worker's entry point runs;
        // its procLatch lives in shared memory. `forget_worker` clears the pointer before
        // this process leaves shared memory, and backends also check the latch's owner.
        s.worker_latch = unsafe { &raw mut (*pg_sys::MyProc).procLatch };
        // SAFETY: a plain read of a PostgreSQL global set at process start.
        s.worker_pid = unsafe { pg_sys::MyProcPid };
        assign_slots(s, &config.sources);
    });
    while !terminating() {
        run_round(&config);
        if terminating() || !BackgroundWorker::wait_latch(Some(time_to_next_round())) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: a guarded call in the worker's main loop, as every PostgreSQL process
            // handles SIGHUP; an ERROR becomes a panic for this #[pg_guard] entry point,
            // which exits the worker (restarted in 10 s).
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            config = read_config();
            shared::write(|s| assign_slots(s, &config.sources));
        }
    }
    drop(config);
    // Exit code 1: the postmaster starts the worker again (after 10 s) unless the server is
    // shutting down, so pg_terminate_backend() restarts it rather than ending key refreshes.
    // SAFETY: proc_exit runs the exit callbacks (forget_worker) and exits; nothing is live.
    unsafe { pg_sys::proc_exit(1) };
}

/// # Safety
/// Called only by PostgreSQL at process exit, as registered by the worker.
#[pg_guard]
unsafe extern "C-unwind" fn forget_worker(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: at exit, nothing else runs in this process. An ERROR may have left our lock
    // held (a panic inside `shared::write`), and LWLocks are not reentrant: release every
    // lock first, as process exit would a moment later. LWLockReleaseAll cannot raise.
    unsafe { pg_sys::LWLockReleaseAll() };
    shared::write(|s| {
        s.worker_pid = 0;
        s.worker_latch = std::ptr::null_mut();
    });
}

/// One source to fetch this round: its slot and what it is.
struct Due {
    slot: usize,
    source: Source,
}

/// Fetches every source that is due, marked by a backend, or asked for; then marks the round
/// done, waking the backends waiting for it.
fn run_round(config: &Config) {
    let now = now_us();
    let (round, due) = shared::write(|s| {
        s.rounds_started += 1;
        let all = std::mem::take(&mut s.refresh_all);
        let mut due = Vec::new();
        for (i, slot) in s.slots.iter_mut().enumerate() {
            let Some(kind) = slot.kind() else { continue };
            let for_kid = std::mem::take(&mut slot.kid_refresh_pending);
            // A schedule further away than any refresh interval means the clock stepped back.
            let stale = slot.next_refresh_us - now > MAX_MAX_AGE_SECS as i64 * 1_000_000;
            if all || for_kid || stale || now >= slot.next_refresh_us {
                due.push(Due {
                    slot: i,
                    source: Source {
                        kind,
                        configured: slot.configured.as_str().to_string(),
                    },
                });
            }
        }
        (s.rounds_started, due)
    });
    for Due { slot: i, source } in due {
        if terminating() {
            break;
        }
        let outcome = match &config.fetcher {
            Ok(fetcher) => fetcher.fetch(&source),
            Err(e) => Err(e.clone()),
        };
        // A kid another source publishes would make every backend's key set ambiguous: such
        // a set is refused here, and the source keeps its last good keys.
        let outcome = outcome.and_then(|fetched| {
            let others = kids_of_other_slots(i);
            match fetched.keys.kids.iter().find(|kid| others.contains(*kid)) {
                Some(kid) => Err(AuthError::bad_config(format!(
                    "kid \"{}\" is also published by another source; keeping the last good keys",
                    pg_rls_auth_core::keys::printable(kid)
                ))),
                None => Ok(fetched),
            }
        });
        let finished = now_us();
        shared::write(|s| {
            if !s.slots[i].is(source.kind, &source.configured) {
                return; // reassigned by a reload meanwhile
            }
            let (succeeded, max_age) = match &outcome {
                Ok(fetched) => {
                    let slot = &s.slots[i];
                    let changed = slot.keys.as_str() != fetched.keys.jwks
                        || slot.jwks_url.as_str() != fetched.jwks_url;
                    let slot = &mut s.slots[i];
                    slot.keys.set(&fetched.keys.jwks);
                    slot.jwks_url.set(&fetched.jwks_url);
                    slot.key_count = fetched.keys.count as u32;
                    slot.last_success_us = finished;
                    slot.last_error.set("");
                    if changed {
                        shared::bump(s);
                    }
                    (true, fetched.max_age)
                }
                Err(e) => {
                    s.slots[i].last_error.set(&e.message);
                    (false, None)
                }
            };
            let next = next_refresh_secs(config.interval_secs, max_age, succeeded);
            let slot = &mut s.slots[i];
            slot.last_attempt_us = finished;
            slot.next_refresh_us = finished + next as i64 * 1_000_000;
        });
        if let Err(e) = &outcome {
            pgrx::log!(
                "pg_rls_auth: fetching the keys of {} \"{}\" failed: {}",
                source.kind.setting(),
                shown_url(&source.configured),
                e.message
            );
        }
    }
    shared::read(|s| s.rounds_done.store(round, Ordering::Release));
}

/// The kids every other slot's keys hold: the sets are copied under the lock and parsed after.
fn kids_of_other_slots(this: usize) -> HashSet<String> {
    let sets: Vec<String> = shared::read(|s| {
        s.slots
            .iter()
            .enumerate()
            .filter(|(i, slot)| *i != this && slot.kind().is_some())
            .map(|(_, slot)| slot.keys.as_str().to_string())
            .collect()
    });
    sets.iter().flat_map(|jwks| kept_kids(jwks)).collect()
}

fn time_to_next_round() -> Duration {
    let now = now_us();
    let next = shared::read(|s| {
        s.slots
            .iter()
            .filter(|slot| slot.kind().is_some())
            .map(|slot| slot.next_refresh_us)
            .min()
    });
    match next {
        Some(next) => Duration::from_micros((next - now).clamp(10_000, 3_600_000_000) as u64),
        None => Duration::from_secs(3600),
    }
}
