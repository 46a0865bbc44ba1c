//! Tokens signed by an independent implementation (PyJWT on OpenSSL, keys made at test time)
//! verify, for every algorithm; tampering with any of them does not.

use pg_rls_auth_core::keys::KeyOrigin;
use pg_rls_auth_core::{verify_token, KeySet, VerifyPolicy};
use serde_json::Value;
use std::process::Command;

#[test]
fn tokens_from_pyjwt_verify() {
    let now = 1_800_000_000u64;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/independent_tokens.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(now.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "PyJWT and cryptography are needed (scripts/setup.sh installs them): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let policy = VerifyPolicy {
        audiences: vec!["api".into()],
        ..Default::default()
    };
    let mut seen = Vec::new();
    for case in &cases {
        let alg = case["alg"].as_str().unwrap();
        let mut keys = KeySet::new();
        match case.get("secret") {
            Some(secret) => keys
                .add_hmac_secret(secret.as_str().unwrap(), false, "secret")
                .unwrap(),
            None => keys
                .add_jwks(&case["jwk"].to_string(), KeyOrigin::Configured, "jwks")
                .unwrap(),
        }
        let token = case["token"].as_str().unwrap();
        let verified = verify_token(token, &keys, &policy, now as f64)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.claims.subject().as_deref(), Some("independent"));
        // Change one character inside the signature: refused.
        let mut tampered = token.as_bytes().to_vec();
        let i = tampered.len() - 10;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(
            verify_token(&tampered, &keys, &policy, now as f64).is_err(),
            "{alg}"
        );
        seen.push(alg.to_string());
    }
    assert_eq!(seen.len(), 12, "{seen:?}");
}
