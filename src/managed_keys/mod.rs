//! Managed keys: key sets fetched from `pg_rls_auth.jwks_urls` and `pg_rls_auth.oidc_issuers`
//! by a background worker (`worker`) into shared memory (`shared`). Backends never touch the
//! network: they rebuild their key set when the shared version moves, and a token with an
//! unknown `kid` asks the worker for a refresh, waiting at most `pg_rls_auth.jwks_refresh_wait`.
//! The rules (which URLs, which keys, when) are the core's `managed_keys`.

mod shared;
mod worker;

use crate::errors::{OrReport, Raise, OBJECT_NOT_IN_PREREQUISITE_STATE};
use crate::guc;
use pg_rls_auth_core::managed_keys::{kept_kids, parse_sources, shown_url, Source};
use pg_rls_auth_core::{AuthError, KeySet};
use pgrx::prelude::*;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub fn init() {
    // SAFETY: a plain read of a PostgreSQL global, on the main thread during _PG_init.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        worker::register();
    }
}

pub use shared::{attach_shmem, request_shmem};

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The sources the settings name (possibly none).
pub(crate) fn sources_from_settings() -> Result<Vec<Source>, AuthError> {
    parse_sources(
        guc::string_value(&guc::JWKS_URLS, "pg_rls_auth.jwks_urls")?,
        guc::string_value(&guc::OIDC_ISSUERS, "pg_rls_auth.oidc_issuers")?,
    )
}

/// Whether either setting names anything: a configured key source, even before (or without)
/// any key from it, so request.jwt.claims is never trusted in its place.
pub fn configured() -> bool {
    [&guc::JWKS_URLS, &guc::OIDC_ISSUERS]
        .into_iter()
        .any(|setting| {
            guc::bytes_value(setting).is_some_and(|b| b.iter().any(|c| *c != b' ' && *c != b','))
        })
}

fn needs_preload() -> AuthError {
    AuthError::not_configured(
        "pg_rls_auth.jwks_urls and pg_rls_auth.oidc_issuers need shared_preload_libraries = \
         'pg_rls_auth': a background worker fetches their keys",
    )
}

/// Adds the last good keys of every configured source to `keys` (`key_config::load` reads the
/// shared version before, so a change meanwhile makes the next use load again).
pub fn add_keys(keys: &mut KeySet) -> Result<(), AuthError> {
    let sources = sources_from_settings()?;
    if sources.is_empty() {
        return Ok(());
    }
    if !shared::available() {
        return Err(needs_preload());
    }
    for issuer in sources.iter().filter_map(Source::bound_issuer) {
        keys.reserve_issuer(issuer);
    }
    // Copied out under the lock; parsed after it.
    let found: Vec<String> = shared::read(|s| {
        sources
            .iter()
            .map(|src| {
                s.slot_of(src.kind, &src.configured)
                    .map(|slot| slot.keys.as_str().to_string())
                    .unwrap_or_default()
            })
            .collect()
    });
    for (source, jwks) in sources.iter().zip(found) {
        if !jwks.is_empty() {
            let name = format!(
                "the keys of {} \"{}\"",
                source.kind.setting(),
                shown_url(&source.configured)
            );
            keys.add_managed_jwks(&jwks, source.bound_issuer(), &name)?;
        }
    }
    Ok(())
}

/// The shared version now (cheap: an atomic read): `key_config` keeps the one its keys were
/// read at, and `session` loads again when it moves.
pub fn version() -> Option<u64> {
    shared::available().then(shared::version)
}

/// The error for a token no key could verify because no source has delivered keys yet.
pub fn nothing_fetched_yet() -> AuthError {
    AuthError::unknown_key(
        "no key of pg_rls_auth.jwks_urls or pg_rls_auth.oidc_issuers has been fetched yet \
         (see auth.jwks_status())",
    )
}

/// Asks the worker to fetch the sources an unknown `kid` may concern and waits for it, at
/// most `pg_rls_auth.jwks_refresh_wait`. False, at once, when the rate limit (one such fetch
/// per source every 30 s) allows none, or the worker does not run.
pub fn refresh_for_unknown_kid() -> bool {
    // Without sources (the usual case for a pasted key), no lock is taken for nothing.
    if !configured() || !shared::available() || guc::JWKS_REFRESH_WAIT.get() == 0 {
        return false;
    }
    let now = now_us();
    let gap_us = pg_rls_auth_core::managed_keys::UNKNOWN_KID_REFRESH_SECS as i64 * 1_000_000;
    // A clock stepped back counts as time passed: the rate limit never locks refreshes out.
    let markable = |slot: &shared::Slot| {
        let since = now - slot.last_kid_refresh_us;
        slot.kind().is_some() && !(0..gap_us).contains(&since)
    };
    // A refresh is worth waiting for when a source may be marked now, or one marked moments
    // ago is still under way (its answer may hold this kid too). Read first under the shared
    // lock: a flood of unknown kids then never queues on the exclusive one.
    let in_flight = |s: &shared::Shared| shared::rounds_done() < s.kid_round;
    let worth_it =
        shared::read(|s| s.worker_pid != 0 && (s.slots.iter().any(markable) || in_flight(s)));
    if !worth_it {
        return false;
    }
    let target = shared::write(|s| {
        let mut marked = false;
        for slot in s.slots.iter_mut().filter(|slot| markable(slot)) {
            slot.last_kid_refresh_us = now;
            slot.kid_refresh_pending = true;
            marked = true;
        }
        if marked {
            s.kid_round = s.rounds_started + 1;
        }
        (marked || in_flight(s)).then_some(s.kid_round)
    });
    let Some(target) = target else {
        return false;
    };
    let wait = Duration::from_millis(guc::JWKS_REFRESH_WAIT.get() as u64);
    shared::wake_worker().is_some_and(|worker| wait_for_round(target, wait, worker) == Wait::Done)
}

#[derive(PartialEq, Eq)]
enum Wait {
    Done,
    TimedOut,
    /// The worker stopped (or was replaced) before finishing the round.
    WorkerGone,
}

/// Waits until the worker `worker` has finished round `target`, or `timeout` passes, or the
/// worker stops; interruptible.
fn wait_for_round(target: u64, timeout: Duration, worker: i32) -> Wait {
    let deadline = Instant::now() + timeout;
    loop {
        if shared::rounds_done() >= target {
            return Wait::Done;
        }
        if shared::read(|s| s.worker_pid) != worker {
            return Wait::WorkerGone;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Wait::TimedOut;
        }
        let nap = left.min(Duration::from_millis(10)).as_millis().max(1) as std::ffi::c_long;
        // SAFETY: guarded calls on the main thread, in a SQL function's or hook's guard; only
        // Copy values are live here. WaitLatch on our own latch, with WL_EXIT_ON_PM_DEATH,
        // returns after at most `nap` ms; ResetLatch cannot raise; CHECK_FOR_INTERRUPTS may
        // raise (a cancel), which the guard turns into a panic and an ERROR.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                nap,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pgrx::check_for_interrupts!();
    }
}

type StatusRow = (
    String,
    Option<String>,
    i32,
    Vec<String>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    Option<String>,
    Option<TimestampWithTimeZone>,
);

fn timestamp(us: i64) -> Option<TimestampWithTimeZone> {
    const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;
    (us != 0)
        .then(|| TimestampWithTimeZone::try_from(us - POSTGRES_EPOCH_US).ok())
        .flatten()
}

fn status_rows() -> Result<Vec<StatusRow>, Raise> {
    let sources = sources_from_settings().map_err(Raise::from)?;
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    if !shared::available() {
        return Err(needs_preload().into());
    }
    // (url, keys, count, attempt, success, error, next) per source, copied under the lock.
    type Copied = Option<(String, String, u32, i64, i64, String, i64)>;
    let copied: Vec<Copied> = shared::read(|s| {
        sources
            .iter()
            .map(|src| {
                s.slot_of(src.kind, &src.configured).map(|slot| {
                    (
                        slot.jwks_url.as_str().to_string(),
                        slot.keys.as_str().to_string(),
                        slot.key_count,
                        slot.last_attempt_us,
                        slot.last_success_us,
                        slot.last_error.as_str().to_string(),
                        slot.next_refresh_us,
                    )
                })
            })
            .collect()
    });
    Ok(sources
        .into_iter()
        .zip(copied)
        .map(|(source, slot)| match slot {
            None => (
                shown_url(&source.configured),
                None,
                0,
                Vec::new(),
                None,
                None,
                Some("not yet picked up by the key refresher (is it running?)".to_string()),
                None,
            ),
            Some((url, keys, count, attempt, success, error, next)) => (
                shown_url(&source.configured),
                (!url.is_empty()).then(|| shown_url(&url)),
                count as i32,
                kept_kids(&keys),
                timestamp(attempt),
                timestamp(success),
                (!error.is_empty()).then_some(error),
                timestamp(next),
            ),
        })
        .collect())
}

/// One row per managed key source: the keys in force and how their last fetches went. Public
/// data only, so every role may read it.
// pgrx reads the columns from the signature itself, so the type cannot be an alias.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn jwks_status() -> TableIterator<
    'static,
    (
        name!(source, String),
        name!(url, Option<String>),
        name!(keys, i32),
        name!(kids, Vec<String>),
        name!(last_attempt, Option<TimestampWithTimeZone>),
        name!(last_success, Option<TimestampWithTimeZone>),
        name!(last_error, Option<String>),
        name!(next_refresh, Option<TimestampWithTimeZone>),
    ),
> {
    TableIterator::new(status_rows().or_report())
}

/// Fetches every managed key source now and returns the status once the fetches are done.
// pgrx reads the columns from the signature itself, so the type cannot be an alias.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn refresh_jwks() -> TableIterator<
    'static,
    (
        name!(source, String),
        name!(url, Option<String>),
        name!(keys, i32),
        name!(kids, Vec<String>),
        name!(last_attempt, Option<TimestampWithTimeZone>),
        name!(last_success, Option<TimestampWithTimeZone>),
        name!(last_error, Option<String>),
        name!(next_refresh, Option<TimestampWithTimeZone>),
    ),
> {
    let sources = sources_from_settings().map_err(Raise::from).or_report();
    if !sources.is_empty() {
        if !shared::available() {
            crate::errors::report(needs_preload().into());
        }
        let target = shared::write(|s| {
            s.refresh_all = true;
            s.rounds_started + 1
        });
        // Each source takes at most two documents (discovery, JWKS), 5 s each with redirects.
        let timeout = Duration::from_secs(10 + 10 * sources.len() as u64);
        let failure = match shared::wake_worker().map(|w| wait_for_round(target, timeout, w)) {
            Some(Wait::Done) => None,
            None => Some("the pg_rls_auth key refresher is not running".to_string()),
            Some(Wait::WorkerGone) => Some(
                "the pg_rls_auth key refresher is not running (it stopped before the fetch \
                 finished)"
                    .to_string(),
            ),
            Some(Wait::TimedOut) => Some(format!(
                "the pg_rls_auth key refresher did not finish within {} s",
                timeout.as_secs()
            )),
        };
        if let Some(message) = failure {
            crate::errors::report(Raise::new(OBJECT_NOT_IN_PREREQUISITE_STATE, message));
        }
    }
    TableIterator::new(status_rows().or_report())
}

pgrx::extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION auth.refresh_jwks() FROM PUBLIC;
"#,
    name = "managed_keys_grants",
    requires = [refresh_jwks],
);
