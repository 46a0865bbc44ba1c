//! Verification end to end: every algorithm round-trips through the token kit, and a long list
//! of malformed or hostile tokens is refused with InvalidToken, never a panic.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pg_rls_auth_core::keys::KeyOrigin;
use pg_rls_auth_core::token_kit::{generate_jwk, public_jwk, sign_jwt};
use pg_rls_auth_core::{verify_token, AuthError, ErrorKind, KeySet, VerifiedToken, VerifyPolicy};
use serde_json::{json, Value};

#[path = "common/hostile_tokens.rs"]
mod common;
use common::hostile_tokens;

const NOW: f64 = 1_800_000_000.0;
const SECRET: &str = common::UNKNOWN_SECRET;

fn claims() -> Value {
    json!({"sub": "alice", "exp": NOW as i64 + 600, "role": "authenticated"})
}

fn keyset_for(private: &Value) -> KeySet {
    let mut keys = KeySet::new();
    keys.add_jwks(
        &public_jwk(private).unwrap().to_string(),
        KeyOrigin::Configured,
        "test",
    )
    .unwrap();
    keys
}

fn verify(token: &str, keys: &KeySet) -> Result<VerifiedToken, AuthError> {
    verify_token(token, keys, &VerifyPolicy::default(), NOW)
}

#[test]
fn every_algorithm_round_trips() {
    for alg in [
        "EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    ] {
        let private = generate_jwk(alg).unwrap();
        let keys = keyset_for(&private);
        let token = sign_jwt(&claims(), &private.to_string(), None).unwrap();
        let verified = verify(&token, &keys).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.claims.subject().as_deref(), Some("alice"), "{alg}");
        // A different key of the same type must not verify it.
        let other = keyset_for(&generate_jwk(alg).unwrap());
        assert_eq!(
            verify(&token, &other).unwrap_err().kind,
            ErrorKind::InvalidToken,
            "{alg}"
        );
    }
    for alg in ["HS256", "HS384", "HS512"] {
        let mut keys = KeySet::new();
        keys.add_hmac_secret(SECRET, false, "secret").unwrap();
        let token = sign_jwt(&claims(), SECRET, Some(alg)).unwrap();
        assert!(verify(&token, &keys).is_ok(), "{alg}");
    }
}

#[test]
fn base64_secrets_and_short_secrets() {
    let mut keys = KeySet::new();
    let encoded = base64::engine::general_purpose::STANDARD.encode(SECRET);
    keys.add_hmac_secret(&encoded, true, "secret").unwrap();
    let token = sign_jwt(&claims(), SECRET, None).unwrap();
    assert!(verify(&token, &keys).is_ok());
    let err = KeySet::new()
        .add_hmac_secret("short", false, "pg_rls_auth.jwt_secret")
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BadConfig);
    assert!(err.message.contains("at least 32"));
}

#[test]
fn kid_selects_among_several_keys() {
    let a = generate_jwk("EdDSA").unwrap();
    let b = generate_jwk("ES256").unwrap();
    let jwks = json!({"keys": [public_jwk(&a).unwrap(), public_jwk(&b).unwrap()]});
    let mut keys = KeySet::new();
    keys.add_jwks(&jwks.to_string(), KeyOrigin::Configured, "test")
        .unwrap();
    for k in [&a, &b] {
        assert!(verify(&sign_jwt(&claims(), &k.to_string(), None).unwrap(), &keys).is_ok());
    }
    let c = generate_jwk("EdDSA").unwrap();
    let err = verify(&sign_jwt(&claims(), &c.to_string(), None).unwrap(), &keys).unwrap_err();
    assert!(err.message.starts_with("unknown kid"), "{}", err.message);
    // No kid and two Ed25519 keys: ambiguous.
    let strip_kid = |mut v: Value| {
        v.as_object_mut().unwrap().remove("kid");
        v
    };
    let a1 = strip_kid(public_jwk(&a).unwrap());
    let a2 = strip_kid(public_jwk(&generate_jwk("EdDSA").unwrap()).unwrap());
    let mut keys = KeySet::new();
    keys.add_jwks(
        &json!({"keys": [a1, a2]}).to_string(),
        KeyOrigin::Configured,
        "t",
    )
    .unwrap();
    let token = sign_jwt(&claims(), &strip_kid(a.clone()).to_string(), None).unwrap();
    assert!(verify(&token, &keys)
        .unwrap_err()
        .message
        .contains("several"));
}

#[test]
fn key_alg_use_and_key_ops_are_honoured() {
    let private = generate_jwk("RS256").unwrap();
    let token_ps = sign_jwt(&claims(), &private.to_string(), Some("PS256")).unwrap();
    let keys = keyset_for(&private); // the key says alg RS256
    assert!(verify(&token_ps, &keys)
        .unwrap_err()
        .message
        .contains("not allowed"));
    for (member, value) in [("use", json!("enc")), ("key_ops", json!(["encrypt"]))] {
        let mut public = public_jwk(&private).unwrap();
        public[member] = value;
        let mut keys = KeySet::new();
        keys.add_jwks(&public.to_string(), KeyOrigin::Configured, "t")
            .unwrap();
        let token = sign_jwt(&claims(), &private.to_string(), None).unwrap();
        assert!(
            verify(&token, &keys)
                .unwrap_err()
                .message
                .contains("may not verify"),
            "{member}"
        );
    }
}

#[test]
fn bad_key_configuration_is_a_config_error() {
    let ed = public_jwk(&generate_jwk("EdDSA").unwrap()).unwrap();
    let mut short_x = ed.clone();
    short_x["x"] = json!("AAAA");
    let mut with_private = generate_jwk("EdDSA").unwrap();
    with_private["kid"] = json!("k");
    let rsa_small = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xC5u8; 128]), "e": "AQAB"});
    let many: Vec<Value> = (0..1000)
        .map(|i| {
            let mut k = ed.clone();
            k["kid"] = json!(i.to_string());
            k
        })
        .collect();
    for (bad, what) in [
        ("not json".to_string(), "not valid JSON"),
        ("[]".to_string(), "JWK or a JWKS"),
        (json!({"keys": []}).to_string(), "no keys"),
        (json!({"keys": "x"}).to_string(), "array"),
        (
            json!({"kty": "oct", "k": "c2VjcmV0"}).to_string(),
            "symmetric",
        ),
        (with_private.to_string(), "private key material"),
        (short_x.to_string(), "32 bytes"),
        (
            json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}).to_string(),
            "wrong length",
        ),
        (
            json!({"kty": "OKP", "crv": "X25519", "x": ed["x"]}).to_string(),
            "Ed25519",
        ),
        (rsa_small.to_string(), "bits"),
        (json!({"kty": "XYZ"}).to_string(), "not"),
        (json!({"keys": many}).to_string(), "at most"),
        (
            json!({"keys": [ed.clone(), ed.clone()]}).to_string(),
            "used twice",
        ),
    ] {
        let err = KeySet::new()
            .add_jwks(&bad, KeyOrigin::Configured, "pg_rls_auth.jwks")
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadConfig, "{what}");
        assert!(
            err.message.starts_with("pg_rls_auth.jwks: "),
            "{}",
            err.message
        );
        assert!(
            err.message.contains(what),
            "expected {what:?} in {:?}",
            err.message
        );
    }
}

/// Malformed or hostile tokens, each refused as an invalid token, never echoed, never a panic.
#[test]
fn hostile_tokens_are_refused() {
    let private = generate_jwk("EdDSA").unwrap();
    let keys = keyset_for(&private);
    let (good, cases) = hostile_tokens(&private, NOW as i64);
    assert!(cases.len() >= 40);
    for (name, token) in &cases {
        let err = verify(token, &keys)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(err.kind, ErrorKind::InvalidToken, "{name}: {}", err.message);
        assert!(
            token.len() < 8 || !err.message.contains(&token[..8]),
            "{name}: token echoed"
        );
    }
    // An HMAC-only key set refuses an EdDSA token too (no RS/HS-style confusion).
    let mut hmac_keys = KeySet::new();
    hmac_keys.add_hmac_secret(SECRET, false, "secret").unwrap();
    assert_eq!(
        verify(&good, &hmac_keys).unwrap_err().kind,
        ErrorKind::InvalidToken
    );
}

#[test]
fn issuer_audience_leeway_and_size_policies() {
    let private = generate_jwk("ES256").unwrap();
    let keys = keyset_for(&private);
    let policy = VerifyPolicy {
        leeway_secs: 0,
        require_exp: true,
        issuer: Some("https://auth.example".into()),
        audiences: vec!["api".into()],
        ..VerifyPolicy::default()
    };
    let ok =
        json!({"sub":"a","exp": NOW as i64 + 10, "iss":"https://auth.example","aud":["web","api"]});
    let token = sign_jwt(&ok, &private.to_string(), None).unwrap();
    assert!(verify_token(&token, &keys, &policy, NOW).is_ok());
    assert!(verify_token(&token, &keys, &policy, NOW + 11.0).is_err());
    let mut wrong_aud = ok.clone();
    wrong_aud["aud"] = json!("web");
    let token2 = sign_jwt(&wrong_aud, &private.to_string(), None).unwrap();
    let err = verify_token(&token2, &keys, &policy, NOW).unwrap_err();
    assert!(err.message.contains("aud"));
    let small = VerifyPolicy {
        max_token_bytes: 100,
        ..policy.clone()
    };
    let err = verify_token(&token, &keys, &small, NOW).unwrap_err();
    assert!(err.message.contains("max_token_bytes"));
}

/// A token with exactly this header, signed by an EdDSA private JWK.
/// An issuer's tokens verify only with its own keys, and its keys only its tokens: a key of
/// another source (pasted, a URL's, the HMAC secret) cannot issue in its name, whether or not
/// the issuer's keys have been fetched yet.
#[test]
fn a_reserved_issuer_is_issued_only_by_its_own_keys() {
    let issuer = "https://tenant-a.example";
    let own = generate_jwk("EdDSA").unwrap();
    let other = generate_jwk("ES256").unwrap();
    let token = |private: &Value, iss: Option<&str>| {
        let mut c = claims();
        if let Some(iss) = iss {
            c["iss"] = json!(iss);
        }
        sign_jwt(&c, &private.to_string(), None).unwrap()
    };
    for fetched in [true, false] {
        let mut keys = KeySet::new();
        keys.reserve_issuer(issuer);
        if fetched {
            let jwks = json!({ "keys": [public_jwk(&own).unwrap()] }).to_string();
            keys.add_managed_jwks(&jwks, Some(issuer), "the issuer's keys")
                .unwrap();
        }
        keys.add_jwks(
            &public_jwk(&other).unwrap().to_string(),
            KeyOrigin::Configured,
            "pasted",
        )
        .unwrap();
        keys.add_hmac_secret(SECRET, false, "secret").unwrap();
        assert_eq!(verify(&token(&own, Some(issuer)), &keys).is_ok(), fetched);
        for forged in [
            token(&other, Some(issuer)),
            sign_jwt(
                &json!({"sub": "alice", "iss": issuer}),
                SECRET,
                Some("HS256"),
            )
            .unwrap(),
        ] {
            let err = verify(&forged, &keys).unwrap_err();
            assert!(
                err.message.contains("not of that issuer"),
                "{}",
                err.message
            );
        }
        // Other issuers' names, a near miss and none at all stay open to the other keys.
        for iss in [
            Some("https://tenant-b.example"),
            Some("https://tenant-a.example/"),
            None,
        ] {
            assert!(verify(&token(&other, iss), &keys).is_ok(), "{iss:?}");
        }
    }
}

fn with_header(private: &Value, header: Value) -> String {
    use ed25519_dalek::Signer;
    let d = URL_SAFE_NO_PAD
        .decode(private["d"].as_str().unwrap())
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&d.try_into().unwrap());
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes())
    )
}

#[test]
fn a_proxy_key_ignores_kid_and_implies_alg_while_configured_keys_stay_strict() {
    let proxy = generate_jwk("EdDSA").unwrap();
    let configured = generate_jwk("ES256").unwrap();
    let mut keys = keyset_for(&configured);
    let mut bare = public_jwk(&proxy).unwrap();
    for member in ["kid", "alg", "use"] {
        bare.as_object_mut().unwrap().remove(member);
    }
    keys.add_jwks(&bare.to_string(), KeyOrigin::TrustedProxy, "proxy")
        .unwrap();
    for header in [
        json!({"kid": 1}),
        json!({"kid": 1.5, "alg": "EdDSA"}),
        json!({"kid": "unknown"}),
        json!({"kid": [1]}),
        json!({}),
    ] {
        let verified = verify(&with_header(&proxy, header.clone()), &keys)
            .unwrap_or_else(|e| panic!("{header}: {}", e.message));
        assert_eq!(verified.key_origin, KeyOrigin::TrustedProxy, "{header}");
    }
    // An alg that contradicts the proxy's key is refused; one that fits another key goes to it.
    for header in [json!({"kid": 1, "alg": "ES384"}), json!({"alg": "PS256"})] {
        let err = verify(&with_header(&proxy, header.clone()), &keys).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidToken, "{header}");
    }
    let strict = sign_jwt(&claims(), &configured.to_string(), None).unwrap();
    assert_eq!(
        verify(&strict, &keys).unwrap().key_origin,
        KeyOrigin::Configured
    );
    // Without the proxy's key, the same headers are refused.
    let keys = keyset_for(&generate_jwk("EdDSA").unwrap());
    for (header, message) in [
        (json!({"kid": 1, "alg": "EdDSA"}), "kid must be a string"),
        (json!({"kid": 1}), "has no alg"),
        (json!({}), "has no alg"),
    ] {
        let err = verify(&with_header(&proxy, header.clone()), &keys).unwrap_err();
        assert!(err.message.contains(message), "{header}: {}", err.message);
    }
}

#[test]
fn oversized_keys_are_refused_before_any_arithmetic() {
    let b64 = |bytes: usize| URL_SAFE_NO_PAD.encode(vec![0xabu8; bytes]);
    let jwk = |n: usize, e: usize| json!({"kty": "RSA", "n": b64(n), "e": b64(e)}).to_string();
    for (n, e, message) in [(513, 3, "over 4096 bits"), (256, 9, "over 64 bits")] {
        let err = KeySet::new()
            .add_jwks(&jwk(n, e), KeyOrigin::Configured, "t")
            .unwrap_err();
        assert!(err.message.contains(message), "{}", err.message);
    }
    let huge = format!("{{\"keys\":[],\"x\":\"{}\"}}", "a".repeat(2 << 20));
    let err = KeySet::new()
        .add_jwks(&huge, KeyOrigin::Configured, "t")
        .unwrap_err();
    assert!(err.message.contains("bytes; at most"), "{}", err.message);
    // Signing: the key text, the modulus and each private part are bounded.
    let private = |n: usize, p: usize| {
        json!({"kty": "RSA", "n": b64(n), "e": "AQAB", "d": b64(n), "p": b64(p), "q": b64(p)})
            .to_string()
    };
    for (key, message) in [
        ("x".repeat(70_000), "at most 65536"),
        (private(600, 100), "over 4096 bits"),
        (private(256, 300), "longer than its modulus"),
    ] {
        let err = sign_jwt(&claims(), &key, Some("RS256")).unwrap_err();
        assert!(err.message.contains(message), "{}", err.message);
    }
}
