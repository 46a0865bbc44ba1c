//! Any bytes as a token payload: parsing, every claim check and path lookups must return.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_rls_auth_core::{VerifyPolicy, Claims};

fuzz_target!(|data: &[u8]| {
    let policy = VerifyPolicy {
        issuer: Some("https://issuer".into()),
        audiences: vec!["api".into()],
        ..Default::default()
    };
    if let Ok(claims) = Claims::from_payload(data) {
        let _ = claims.check(&policy, 1_800_000_000.0);
        let _ = claims.subject();
        let _ = claims.jti_integer();
        for path in ["sub", "app_metadata.tenant_id", "a.b.c", ".", ""] {
            let _ = claims.get_path(path);
        }
        let again = Claims::from_trusted_json(&claims.to_json()).expect("round trip");
        assert_eq!(again.as_map(), claims.as_map());
    }
});
