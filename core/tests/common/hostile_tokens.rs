//! Malformed and hostile tokens, shared by the core's tests and the server's
//! (pgrx-tests/tests/hostile_tokens.rs): every one must be refused as an invalid token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pg_rls_auth_core::token_kit::{generate_jwk, public_jwk, sign_jwt};
use serde_json::{json, Value};

/// An HMAC secret no key set in these tests holds.
pub const UNKNOWN_SECRET: &str = "0123456789abcdef0123456789abcdef-hs";

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

pub fn signed_raw(private: &Value, payload: &str) -> String {
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

/// (name, token) pairs, built against `private` (an EdDSA key whose public half is the one
/// configured) at time `now` (Unix seconds). Only `good` among them verifies.
pub fn hostile_tokens(private: &Value, now: i64) -> (String, Vec<(&'static str, String)>) {
    let claims = || json!({"sub": "alice", "exp": now + 600, "role": "authenticated"});
    let good = sign_jwt(&claims(), &private.to_string(), None).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let kid = private["kid"].as_str().unwrap().to_string();
    let header = |alg: &str| b64(&json!({"alg": alg, "kid": kid}).to_string());
    let signed = |c: Value| sign_jwt(&c, &private.to_string(), None).unwrap();
    let exp = now + 600;
    let public_text = public_jwk(private).unwrap().to_string();
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
        ("payload not JSON", signed_raw(private, "not json")),
        ("payload a JSON array", signed_raw(private, "[1,2,3]")),
        ("payload a string", signed_raw(private, "\"sub\"")),
        ("payload nested 10000 deep", signed_raw(private, &deep)),
        ("expired", signed(json!({"sub":"a","exp": now - 3600}))),
        (
            "expired just past leeway",
            signed(json!({"sub":"a","exp": now - 61})),
        ),
        (
            "not yet valid",
            signed(json!({"sub":"a","exp": exp, "nbf": now + 3600})),
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
            "NUL in a claim",
            signed(json!({"sub": "a\u{0}x", "exp": exp})),
        ),
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
            sign_jwt(&claims(), UNKNOWN_SECRET, None).unwrap(),
        ),
    ];
    (good, cases)
}
