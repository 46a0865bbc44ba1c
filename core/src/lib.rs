//! The pure core of pg_rls_auth: no PostgreSQL types, so every rule here is unit-tested,
//! fuzzed and benchmarked as plain Rust. The extension (`src/`) maps it onto GUCs, SQL
//! functions, shared memory and `ereport`.

pub mod claims;
pub mod error;
pub mod gcra;
#[cfg(feature = "http")]
pub mod http_fetch;
pub mod key_id;
pub mod keys;
pub mod managed_keys;
pub mod oauth_login;
pub mod revocation;
pub mod session_rules;
pub mod slot_table;
pub mod sql_signature;
pub mod token_kit;
pub mod verify;

pub use claims::Claims;
pub use error::{AuthError, ErrorKind};
pub use keys::KeySet;
pub use verify::{verify_token, VerifiedToken, VerifyPolicy, DEFAULT_MAX_TOKEN_BYTES};
