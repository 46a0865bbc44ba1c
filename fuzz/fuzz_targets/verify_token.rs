//! Any bytes as a token, against a fixed key set (Ed25519 and P-256 public keys and an HMAC
//! secret): verification must return, never panic, and never accept a token it did not sign.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_rls_auth_core::keys::KeyOrigin;
use pg_rls_auth_core::{verify_token, VerifyPolicy, KeySet};
use std::sync::OnceLock;

// Public keys only: the fuzzer cannot sign, so every token it makes must be refused.
const JWKS: &str = r#"{"keys":[
 {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"},
 {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"es"}
]}"#;

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut k = KeySet::new();
        k.add_jwks(JWKS, KeyOrigin::Configured, "fuzz").unwrap();
        k.add_hmac_secret("fuzz-secret-fuzz-secret-fuzz-secret!", false, "fuzz").unwrap();
        k
    })
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let policy = VerifyPolicy { require_exp: false, ..Default::default() };
    if let Ok(v) = verify_token(&token, keys(), &policy, 1_800_000_000.0) {
        panic!("accepted a token nobody signed: {:?}", v.claims.as_map());
    }
});
