//! Any bytes as a fetched JWKS, a discovery document, a URL or a Cache-Control header: each rule
//! of the managed keys returns a value or an error, never panics, and what it accepts is safe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_rls_auth_core::managed_keys::{
    check_url, discovery_jwks_uri, keep_signature_keys, next_refresh_secs, parse_max_age,
    redirect_target, shown_url, MAX_KEPT_JWKS_BYTES, MAX_MAX_AGE_SECS, MIN_MAX_AGE_SECS,
};
use pg_rls_auth_core::KeySet;

const ISSUER: &str = "https://issuer.example/";
const DISCOVERY: &str = "https://issuer.example/.well-known/openid-configuration";

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 4 {
        0 => {
            if let Ok(kept) = keep_signature_keys(rest) {
                // What is kept is small, public, and parses as every backend will parse it.
                assert!(kept.count >= 1 && kept.jwks.len() <= MAX_KEPT_JWKS_BYTES);
                let value: serde_json::Value = serde_json::from_str(&kept.jwks).unwrap();
                for key in value["keys"].as_array().unwrap() {
                    assert!(key.get("d").is_none() && key.get("k").is_none());
                }
                KeySet::new()
                    .add_managed_jwks(&kept.jwks, Some(ISSUER), "fuzz")
                    .unwrap();
            }
        }
        1 => {
            if let Ok(uri) = discovery_jwks_uri(rest, ISSUER, DISCOVERY) {
                assert!(check_url(&uri).unwrap().https, "{uri}");
            }
        }
        2 => {
            let _ = shown_url(&text);
            if let Ok(parts) = check_url(&text) {
                let host = parts.host.to_ascii_lowercase();
                assert!(
                    parts.https
                        || host == "localhost"
                        || host == "[::1]"
                        || host.starts_with("127."),
                    "{text}"
                );
            }
            if let Ok(target) = redirect_target(DISCOVERY, &text) {
                assert!(check_url(&target).unwrap().https, "{target}");
            }
        }
        _ => {
            let next = next_refresh_secs(600, parse_max_age(&text), true);
            assert!(next == 600 || (MIN_MAX_AGE_SECS..=MAX_MAX_AGE_SECS).contains(&next));
        }
    }
});
