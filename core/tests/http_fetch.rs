//! The managed keys' fetch against a real HTTPS server on loopback: documents shaped as
//! providers publish them, discovery, and every way a fetch must fail.

#[path = "common/https_server.rs"]
mod https_server;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use https_server::{HttpsServer, Reply, TestCa};
use pg_rls_auth_core::http_fetch::Fetcher;
use pg_rls_auth_core::keys::KeyOrigin;
use pg_rls_auth_core::managed_keys::{parse_sources, Source};
use pg_rls_auth_core::token_kit::{generate_jwk, public_jwk, sign_jwt};
use pg_rls_auth_core::{verify_token, KeySet, VerifyPolicy};
use serde_json::{json, Value};
use std::time::Duration;

fn public(private: &Value) -> Value {
    public_jwk(private).expect("public half")
}

/// A JWKS as Auth0, Keycloak, Clerk, Supabase and Google publish them: RSA keys with a
/// certificate chain and thumbprint, an EC key with `key_ops`, an OKP key, a key without
/// `alg`, and keys for encryption that must be ignored.
fn provider_jwks(ca: &TestCa, rsa: &Value, ec: &Value, okp: &Value) -> String {
    let mut rsa = public(rsa);
    rsa["use"] = json!("sig");
    rsa["x5c"] = json!([STANDARD.encode(ca.cert_der())]);
    rsa["x5t"] = json!(URL_SAFE_NO_PAD.encode([7u8; 20]));
    rsa["x5t#S256"] = json!(URL_SAFE_NO_PAD.encode([9u8; 32]));
    let mut ec = public(ec);
    ec["key_ops"] = json!(["verify"]);
    ec["ext"] = json!(true);
    let mut okp = public(okp);
    okp.as_object_mut().unwrap().remove("alg");
    let mut enc = public(&generate_jwk("RS256").unwrap());
    enc["kid"] = json!("encryption-key");
    enc["use"] = json!("enc");
    enc["alg"] = json!("RSA-OAEP");
    let mut wrap = public(&generate_jwk("ES256").unwrap());
    wrap["kid"] = json!("wrapping-key");
    wrap["key_ops"] = json!(["wrapKey"]);
    json!({ "keys": [rsa, enc, ec, wrap, okp] }).to_string()
}

fn fetcher(ca: &TestCa) -> Fetcher {
    Fetcher::new(Some(ca.ca_pem.as_bytes())).expect("a client")
}

fn jwks_source(url: &str) -> Source {
    parse_sources(Some(url), None).unwrap().remove(0)
}

#[test]
fn provider_shaped_documents_keep_their_signature_keys_only() {
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    let (rsa, ec, okp) = (
        generate_jwk("RS256").unwrap(),
        generate_jwk("ES256").unwrap(),
        generate_jwk("EdDSA").unwrap(),
    );
    server.set(
        "/.well-known/jwks.json",
        Reply::json(provider_jwks(&ca, &rsa, &ec, &okp))
            .with_header("Cache-Control", "public, max-age=900"),
    );
    let fetched = fetcher(&ca)
        .fetch(&jwks_source(&server.url("/.well-known/jwks.json")))
        .expect("fetch");
    assert_eq!(fetched.keys.count, 3, "{}", fetched.keys.jwks);
    assert_eq!(fetched.max_age, Some(900));
    let kid = |k: &Value| k["kid"].as_str().unwrap().to_string();
    assert_eq!(fetched.keys.kids, [kid(&rsa), kid(&ec), kid(&okp)]);
    // Member names, not a substring search: random key material can spell "ext".
    let kept: Value = serde_json::from_str(&fetched.keys.jwks).expect("kept JWKS is JSON");
    for key in kept["keys"].as_array().expect("a keys array") {
        let members = key.as_object().expect("a key object");
        for dropped in ["x5c", "x5t", "x5t#S256", "ext"] {
            assert!(!members.contains_key(dropped), "{dropped} kept in {key}");
        }
    }
    assert_eq!(
        pg_rls_auth_core::managed_keys::kept_kids(&fetched.keys.jwks),
        fetched.keys.kids
    );
    let mut keys = KeySet::new();
    keys.add_managed_jwks(&fetched.keys.jwks, None, "test")
        .unwrap();
    let claims = json!({ "sub": "u1", "exp": 4_000_000_000u64 });
    for private in [&rsa, &ec, &okp] {
        let token = sign_jwt(&claims, &private.to_string(), None).unwrap();
        verify_token(&token, &keys, &VerifyPolicy::default(), 1_000.0).expect("verifies");
    }
}

#[test]
fn an_issuer_is_discovered_and_its_keys_verify_only_its_tokens() {
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    let issuer = server.url("/realms/app/");
    let key = generate_jwk("ES256").unwrap();
    server.set(
        "/realms/app/.well-known/openid-configuration",
        Reply::json(
            json!({
                "issuer": issuer,
                "jwks_uri": server.url("/realms/app/protocol/openid-connect/certs"),
                "authorization_endpoint": server.url("/auth"),
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "claims_supported": ["sub", "iss"],
            })
            .to_string(),
        ),
    );
    server.set(
        "/realms/app/protocol/openid-connect/certs",
        Reply::json(json!({ "keys": [public(&key)] }).to_string()),
    );
    let source = parse_sources(None, Some(&issuer)).unwrap().remove(0);
    let fetched = fetcher(&ca).fetch(&source).expect("fetch");
    assert_eq!(
        fetched.jwks_url,
        server.url("/realms/app/protocol/openid-connect/certs")
    );
    let mut keys = KeySet::new();
    keys.add_managed_jwks(&fetched.keys.jwks, source.bound_issuer(), "test")
        .unwrap();
    let sign = |iss: &str| {
        sign_jwt(
            &json!({ "sub": "u", "iss": iss, "exp": 4_000_000_000u64 }),
            &key.to_string(),
            None,
        )
        .unwrap()
    };
    let policy = VerifyPolicy::default();
    verify_token(&sign(&issuer), &keys, &policy, 1_000.0).expect("its own issuer");
    for other in [issuer.trim_end_matches('/'), "https://evil.example/", ""] {
        let err = verify_token(&sign(other), &keys, &policy, 1_000.0).unwrap_err();
        assert!(err.message.contains("another issuer"), "{err}");
    }
    // A discovery document for another issuer vouches for nothing.
    let other = parse_sources(None, Some(&server.url("/realms/app")))
        .unwrap()
        .remove(0);
    let err = fetcher(&ca).fetch(&other).unwrap_err();
    assert!(err.message.contains("names another issuer"), "{err}");
}

#[test]
fn every_failure_is_an_error_never_an_empty_key_set() {
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    let good = json!({ "keys": [public(&generate_jwk("EdDSA").unwrap())] }).to_string();
    let mut private = generate_jwk("ES256").unwrap();
    private["use"] = json!("sig");
    let cases: Vec<(&str, Reply, &str)> = vec![
        (
            "/garbage",
            Reply::json("<html>oops</html>"),
            "not valid JSON",
        ),
        ("/empty", Reply::json(r#"{"keys":[]}"#), "no signature key"),
        ("/not-found", Reply::status(404), "404"),
        ("/server-error", Reply::status(503), "503"),
        (
            "/huge",
            Reply::json(format!(
                "{{\"keys\":[],\"pad\":\"{}\"}}",
                "x".repeat(1 << 20)
            )),
            "larger than",
        ),
        (
            "/private",
            Reply::json(json!({ "keys": [private] }).to_string()),
            "private key material",
        ),
        (
            "/secret",
            Reply::json(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
            "symmetric",
        ),
        (
            "/to-http",
            Reply::redirect("http://127.0.0.1:1/jwks"),
            "changes the scheme",
        ),
        ("/loop", Reply::redirect("/loop"), "redirects"),
        (
            "/stalled",
            Reply::json(good.clone()).delayed(Duration::from_secs(7)),
            "within 5 s",
        ),
    ];
    for (path, reply, _) in &cases {
        server.set(path, reply.clone());
    }
    let fetcher = fetcher(&ca);
    for (path, _, expected) in &cases {
        let err = fetcher.fetch(&jwks_source(&server.url(path))).unwrap_err();
        assert!(err.message.contains(expected), "{path}: {err}");
    }
    // A redirect that keeps the scheme is followed.
    server.set("/good", Reply::json(good));
    server.set("/moved", Reply::redirect("/good"));
    assert_eq!(
        fetcher
            .fetch(&jwks_source(&server.url("/moved")))
            .unwrap()
            .keys
            .count,
        1
    );
    // Without the test's CA, the server is not trusted.
    let err = Fetcher::new(None)
        .unwrap()
        .fetch(&jwks_source(&server.url("/good")))
        .unwrap_err();
    assert!(err.message.contains("GET https://127.0.0.1"), "{err}");
    assert!(Fetcher::new(Some(b"not a PEM")).is_err());
    // A closed port fails as a connection error.
    let mut down = HttpsServer::start(&ca);
    let url = down.url("/good");
    down.stop();
    let err = fetcher.fetch(&jwks_source(&url)).unwrap_err();
    assert!(err.message.contains("connection failed"), "{err}");
}

#[test]
fn kept_keys_parse_as_the_backends_parse_them() {
    let key = public(&generate_jwk("EdDSA").unwrap());
    let kept = pg_rls_auth_core::managed_keys::keep_signature_keys(
        json!({ "keys": [key] }).to_string().as_bytes(),
    )
    .unwrap();
    let mut set = KeySet::new();
    set.add_jwks(&kept.jwks, KeyOrigin::Configured, "pg_rls_auth.jwks")
        .unwrap();
    assert_eq!(set.len(), 1);
}
