//! Verification end to end: every algorithm round-trips through the token kit, and a long list
//! of malformed or hostile tokens is refused with InvalidToken, never a panic.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pg_rls_auth_core::keys::KeyOrigin;
use pg_rls_auth_core::token_kit::{generate_jwk, public_jwk, sign_jwt};
use pg_rls_auth_core::{
    verify_token, AuthError, ClaimPolicy, ErrorKind, KeySet, VerifiedToken, DEFAULT_MAX_TOKEN_BYTES,
};
use serde_json::{json, Value};

const NOW: f64 = 1_800_000_000.0;
const SECRET: &str = "0123456789abcdef0123456789abcdef-hs";

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
    verify_token(
        token,
        keys,
        &ClaimPolicy::default(),
        DEFAULT_MAX_TOKEN_BYTES,
        NOW,
    )
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
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

fn signed_raw(private: &Value, payload: &str) -> String {
    use ed25519_dalek::Signer;
    let d = URL_SAFE_NO_PAD
        .decode(private["d"].as_str().unwrap())
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&d.try_into().unwrap());
    let header = json!({"alg": "EdDSA", "kid": private["kid"]}).to_string();
    let input = format!("{}.{}", b64(&header), b64(payload));
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes())
    )
}

/// Malformed or hostile tokens, each refused as an invalid token, never echoed, never a panic.
#[test]
fn hostile_tokens_are_refused() {
    let private = generate_jwk("EdDSA").unwrap();
    let keys = keyset_for(&private);
    let good = sign_jwt(&claims(), &private.to_string(), None).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let kid = private["kid"].as_str().unwrap().to_string();
    let header = |alg: &str| b64(&json!({"alg": alg, "kid": kid}).to_string());
    let signed = |c: Value| sign_jwt(&c, &private.to_string(), None).unwrap();
    let exp = NOW as i64 + 600;
    let public_text = public_jwk(&private).unwrap().to_string();
    let deep = format!(
        "{{\"sub\":\"a\",\"exp\":{exp},\"x\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let mut other_same_kid = generate_jwk("EdDSA").unwrap();
    other_same_kid["kid"] = json!(kid);
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("one part", "abc".into()),
        ("two parts", format!("{h}.{p}")),
        ("four parts", format!("{good}.x")),
        ("JWE", "a.b.c.d.e".into()),
        ("truncated signature", good[..good.len() - 5].to_string()),
        (
            "truncated payload",
            format!("{h}.{}.{s}", &p[..p.len() - 3]),
        ),
        ("bad base64 header", format!("!!!.{p}.{s}")),
        ("bad base64 payload", format!("{h}.@@@.{s}")),
        ("bad base64 signature", format!("{h}.{p}.***")),
        ("padded base64", format!("{h}=.{p}.{s}")),
        ("header not JSON", format!("{}.{p}.{s}", b64("not json"))),
        ("header a JSON array", format!("{}.{p}.{s}", b64("[1,2]"))),
        (
            "header without alg",
            format!("{}.{p}.{s}", b64("{\"typ\":\"JWT\"}")),
        ),
        (
            "alg not a string",
            format!("{}.{p}.{s}", b64("{\"alg\":5}")),
        ),
        ("alg none", format!("{}.{p}.", b64("{\"alg\":\"none\"}"))),
        ("alg NONE", format!("{}.{p}.", b64("{\"alg\":\"NONE\"}"))),
        (
            "alg unknown",
            format!("{}.{p}.{s}", b64("{\"alg\":\"XX999\"}")),
        ),
        (
            "kid not a string",
            format!("{}.{p}.{s}", b64("{\"alg\":\"EdDSA\",\"kid\":1}")),
        ),
        (
            "crit header",
            format!(
                "{}.{p}.{s}",
                b64(&json!({"alg":"EdDSA","kid":kid,"crit":["x"]}).to_string())
            ),
        ),
        (
            "alg swapped to ES256",
            format!("{}.{p}.{s}", header("ES256")),
        ),
        (
            "alg swapped to HS256",
            format!("{}.{p}.{s}", header("HS256")),
        ),
        (
            "alg swapped to RS256",
            format!("{}.{p}.{s}", header("RS256")),
        ),
        (
            "HS256 with the public key as secret",
            sign_jwt(
                &claims(),
                &format!("{public_text}padding-padding"),
                Some("HS256"),
            )
            .unwrap(),
        ),
        (
            "claims of another token",
            format!(
                "{h}.{}.{s}",
                b64(&json!({"sub":"mallory","exp":exp}).to_string())
            ),
        ),
        (
            "signed by another key with the same kid",
            sign_jwt(&claims(), &other_same_kid.to_string(), None).unwrap(),
        ),
        (
            "unknown kid",
            sign_jwt(&claims(), &generate_jwk("EdDSA").unwrap().to_string(), None).unwrap(),
        ),
        ("empty signature", format!("{h}.{p}.")),
        ("payload not JSON", signed_raw(&private, "not json")),
        ("payload a JSON array", signed_raw(&private, "[1,2,3]")),
        ("payload a string", signed_raw(&private, "\"sub\"")),
        ("payload nested 10000 deep", signed_raw(&private, &deep)),
        (
            "expired",
            signed(json!({"sub":"a","exp": NOW as i64 - 3600})),
        ),
        (
            "expired just past leeway",
            signed(json!({"sub":"a","exp": NOW as i64 - 61})),
        ),
        (
            "not yet valid",
            signed(json!({"sub":"a","exp": exp, "nbf": NOW as i64 + 3600})),
        ),
        ("no exp", signed(json!({"sub":"a"}))),
        ("exp a string", signed(json!({"sub":"a","exp":"tomorrow"}))),
        ("exp a boolean", signed(json!({"sub":"a","exp":true}))),
        (
            "nbf a string",
            signed(json!({"sub":"a","exp": exp, "nbf": "now"})),
        ),
        ("sub a number", signed(json!({"sub": 42,"exp": exp}))),
        (
            "sub an object",
            signed(json!({"sub": {"id": 1},"exp": exp})),
        ),
        (
            "aud a number",
            signed(json!({"sub":"a","exp": exp, "aud": 7})),
        ),
        (
            "aud array with a number",
            signed(json!({"sub":"a","exp": exp, "aud": ["a", 7]})),
        ),
        (
            "iss a number",
            signed(json!({"sub":"a","exp": exp, "iss": 1})),
        ),
        ("1 MB token", format!("{h}.{}.{s}", "A".repeat(1 << 20))),
        ("NUL byte", format!("{h}\0.{p}.{s}")),
        ("non-ASCII", format!("{h}.{p}é.{s}")),
        ("leading whitespace", format!(" {good}")),
        (
            "HS256 against an EdDSA-only key set",
            sign_jwt(&claims(), SECRET, None).unwrap(),
        ),
    ];
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
    let policy = ClaimPolicy {
        leeway_secs: 0,
        require_exp: true,
        issuer: Some("https://auth.example".into()),
        audiences: vec!["api".into()],
    };
    let ok =
        json!({"sub":"a","exp": NOW as i64 + 10, "iss":"https://auth.example","aud":["web","api"]});
    let token = sign_jwt(&ok, &private.to_string(), None).unwrap();
    assert!(verify_token(&token, &keys, &policy, DEFAULT_MAX_TOKEN_BYTES, NOW).is_ok());
    assert!(verify_token(&token, &keys, &policy, DEFAULT_MAX_TOKEN_BYTES, NOW + 11.0).is_err());
    let mut wrong_aud = ok.clone();
    wrong_aud["aud"] = json!("web");
    let token2 = sign_jwt(&wrong_aud, &private.to_string(), None).unwrap();
    let err = verify_token(&token2, &keys, &policy, DEFAULT_MAX_TOKEN_BYTES, NOW).unwrap_err();
    assert!(err.message.contains("aud"));
    let err = verify_token(&token, &keys, &policy, 100, NOW).unwrap_err();
    assert!(err.message.contains("max_token_bytes"));
}
