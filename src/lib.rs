//! pg_rls_auth: verified JWT session claims and a native write-rate limiter for Row Level
//! Security. The rules live in the pure `pg_rls_auth_core` crate; this crate maps them onto
//! PostgreSQL: settings (`guc`), session state (`session`), SQL functions (`*_api`,
//! `token_kit`, `rate_limit`), shared memory and errors.

#![deny(clippy::undocumented_unsafe_blocks)]

use pgrx::prelude::*;

mod claims_api;
mod errors;
mod fmgr;
mod guc;
mod hoist;
mod hooks;
mod internal_tables;
mod key_config;
mod lint;
mod managed_keys;
#[cfg(feature = "pg18")]
mod oauth_validator;
mod pg_raw;
mod pg_versions;
mod rate_limit;
mod revocation;
mod secret_file;
mod session;
mod session_api;
mod shmem;
mod token_kit;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    shmem::init();
    hooks::init();
    hoist::init();
    managed_keys::init();
    rate_limit::init();
    revocation::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_rls_auth'"]
    }
}
