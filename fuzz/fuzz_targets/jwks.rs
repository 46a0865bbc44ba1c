//! Any text as pg_rls_auth.jwks: parsing must return (a key set or a config error), never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_rls_auth_core::keys::KeyOrigin;
use pg_rls_auth_core::KeySet;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut keys = KeySet::new();
    if keys.add_jwks(&text, KeyOrigin::Configured, "fuzz").is_ok() {
        assert!(!keys.is_empty());
    }
    let _ = KeySet::new().add_hmac_secret(&text, true, "fuzz");
});
