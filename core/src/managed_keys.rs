//! Managed keys: the rules for key sets fetched from URLs (`pg_rls_auth.jwks_urls`, and
//! `pg_rls_auth.oidc_issuers` through OpenID Connect discovery). Which URLs may be fetched,
//! what a discovery document must say, which published keys are kept, and when a source is
//! fetched again. The fetching itself is `http_fetch`; the background worker and shared memory
//! are the extension's.

use crate::error::{AuthError, Result};
use crate::keys::{parse_algorithm, printable, KeyOrigin, KeySet};
use serde_json::{Map, Value};

/// Sources (URLs and issuers together) one cluster may configure: each costs a slot of
/// shared memory.
pub const MAX_SOURCES: usize = 8;
/// Longest URL accepted in a setting or a discovery document.
pub const MAX_URL_BYTES: usize = 1000;
/// Longest kept key set (the public members only), as stored in shared memory: 100 RSA-4096
/// keys need about 75 kB.
pub const MAX_KEPT_JWKS_BYTES: usize = 96 * 1024;
/// Bounds on a `Cache-Control: max-age` the worker honours, in seconds.
pub const MIN_MAX_AGE_SECS: u64 = 60;
pub const MAX_MAX_AGE_SECS: u64 = 24 * 60 * 60;
/// A source is fetched because of an unknown `kid` at most this often.
pub const UNKNOWN_KID_REFRESH_SECS: u64 = 30;
/// After a failed fetch the source is tried again this soon (or at its interval, if sooner).
pub const RETRY_AFTER_FAILURE_SECS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A URL from `pg_rls_auth.jwks_urls`, serving a JWKS.
    JwksUrl,
    /// An issuer from `pg_rls_auth.oidc_issuers`: its keys verify only its own tokens.
    OidcIssuer,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::JwksUrl => "jwks_url",
            SourceKind::OidcIssuer => "oidc_issuer",
        }
    }

    pub fn setting(self) -> &'static str {
        match self {
            SourceKind::JwksUrl => "pg_rls_auth.jwks_urls",
            SourceKind::OidcIssuer => "pg_rls_auth.oidc_issuers",
        }
    }
}

/// One configured source: the URL or issuer exactly as the setting names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    pub configured: String,
}

impl Source {
    /// The issuer whose tokens alone this source's keys verify.
    pub fn bound_issuer(&self) -> Option<&str> {
        (self.kind == SourceKind::OidcIssuer).then_some(self.configured.as_str())
    }

    /// The first URL fetched: the JWKS itself, or the issuer's discovery document (OpenID
    /// Connect Discovery 1.0, 4: a terminating `/` is removed before the path is appended).
    pub fn first_url(&self) -> String {
        match self.kind {
            SourceKind::JwksUrl => self.configured.clone(),
            SourceKind::OidcIssuer => format!(
                "{}/.well-known/openid-configuration",
                self.configured.trim_end_matches('/')
            ),
        }
    }
}

/// The sources two settings name, in order, each URL checked by `check_url`.
pub fn parse_sources(jwks_urls: Option<&str>, oidc_issuers: Option<&str>) -> Result<Vec<Source>> {
    let mut sources: Vec<Source> = Vec::new();
    for (kind, value) in [
        (SourceKind::JwksUrl, jwks_urls),
        (SourceKind::OidcIssuer, oidc_issuers),
    ] {
        for item in value.unwrap_or("").split(',') {
            let url = item.trim();
            if url.is_empty() {
                continue;
            }
            check_url(url)
                .map_err(|e| AuthError::bad_config(format!("{}: {e}", kind.setting())))?;
            let source = Source {
                kind,
                configured: url.to_string(),
            };
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
    }
    if sources.len() > MAX_SOURCES {
        return Err(AuthError::bad_config(format!(
            "pg_rls_auth.jwks_urls and pg_rls_auth.oidc_issuers name {} sources; at most \
             {MAX_SOURCES} are supported",
            sources.len()
        )));
    }
    Ok(sources)
}

/// Where a URL points, as far as the fetch rules care.
#[derive(Debug, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub https: bool,
    pub host: &'a str,
}

/// A URL may be fetched when it is `https`, or `http` to a loopback address (tests, a sidecar),
/// and carries no credentials: anything else is refused before any connection.
pub fn check_url(url: &str) -> std::result::Result<UrlParts<'_>, String> {
    let shown = shown_url(url);
    if url.len() > MAX_URL_BYTES {
        return Err(format!("a URL is longer than {MAX_URL_BYTES} bytes"));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "URL \"{shown}\" contains spaces or characters that are not printable ASCII"
        ));
    }
    let lower = url.to_ascii_lowercase();
    let (https, rest) = if lower.starts_with("https://") {
        (true, &url[8..])
    } else if lower.starts_with("http://") {
        (false, &url[7..])
    } else {
        return Err(format!("URL \"{shown}\" is not an https:// URL"));
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err(format!(
            "URL \"{shown}\" carries credentials, which are not allowed"
        ));
    }
    if url.contains('#') {
        return Err(format!("URL \"{shown}\" has a fragment"));
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        match bracketed.find(']') {
            Some(end) => &authority[..end + 2],
            None => return Err(format!("URL \"{shown}\" has a malformed host")),
        }
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let port = &authority[host.len()..];
    if host.is_empty() || !(port.is_empty() || is_port(port)) {
        return Err(format!("URL \"{shown}\" has a malformed host or port"));
    }
    if !https && !is_loopback(host) {
        return Err(format!(
            "URL \"{shown}\" is plain http; only https is allowed, except to a loopback address"
        ));
    }
    Ok(UrlParts { https, host })
}

fn is_port(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") || host == "[::1]" {
        return true;
    }
    host.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A URL as messages and the status show it: without its query (which may carry a key of the
/// provider's), at most 200 bytes, printable ASCII only.
pub fn shown_url(url: &str) -> String {
    let without_query = match url.find('?') {
        Some(i) => format!("{}?…", &url[..i]),
        None => url.to_string(),
    };
    if without_query.len() <= 200 && url.bytes().all(|b| b.is_ascii_graphic()) {
        without_query
    } else {
        "(not shown)".to_string()
    }
}

/// Where a redirect from `from` may go: an absolute URL of the same scheme that `check_url`
/// accepts, or a path on the same origin. Returns the URL to fetch next.
pub fn redirect_target(from: &str, location: &str) -> std::result::Result<String, String> {
    let target = if location.starts_with('/') && !location.starts_with("//") {
        let scheme_end = from.find("://").map(|i| i + 3).unwrap_or(0);
        let origin_end = from[scheme_end..]
            .find(['/', '?'])
            .map(|i| scheme_end + i)
            .unwrap_or(from.len());
        format!("{}{location}", &from[..origin_end])
    } else {
        location.to_string()
    };
    let to = check_url(&target)?;
    let from_https = check_url(from).map(|p| p.https).unwrap_or(false);
    if to.https != from_https {
        return Err(format!(
            "a redirect to \"{}\" changes the scheme, which is not allowed",
            shown_url(&target)
        ));
    }
    Ok(target)
}

/// The `jwks_uri` of a discovery document, which must name `issuer` exactly (OpenID Connect
/// Discovery 1.0, 4.3): a document for another issuer vouches for nothing.
pub fn discovery_jwks_uri(document: &[u8], issuer: &str, discovery_url: &str) -> Result<String> {
    let bad = |what: &str| {
        AuthError::bad_config(format!(
            "the discovery document of issuer \"{}\" {what}",
            printable(issuer)
        ))
    };
    let value: Value = serde_json::from_slice(document).map_err(|_| bad("is not valid JSON"))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad("is not a JSON object"))?;
    match object.get("issuer").and_then(Value::as_str) {
        Some(i) if i == issuer => {}
        Some(_) => return Err(bad("names another issuer")),
        None => return Err(bad("has no \"issuer\"")),
    }
    let uri = object
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("has no \"jwks_uri\""))?;
    // An absolute URL (Discovery 1.0, 3: "URL of the OP's JWK Set"), fetched by the rule of a
    // redirect: an https document never sends the fetcher to plain http.
    check_url(uri)
        .and_then(|_| redirect_target(discovery_url, uri))
        .map_err(|e| bad(&format!("has an unusable jwks_uri: {e}")))?;
    Ok(uri.to_string())
}

/// A fetched JWKS reduced to what verifies tokens: every key that pg_rls_auth can use, with
/// its public members only (certificate chains and the like dropped), as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptKeys {
    pub jwks: String,
    pub kids: Vec<String>,
    pub count: usize,
}

/// The members a kept key keeps: what a verifier reads, nothing else.
const PUBLIC_MEMBERS: [&str; 10] = [
    "kty", "kid", "alg", "use", "key_ops", "crv", "x", "y", "n", "e",
];
/// Private members of RSA, EC and OKP keys (RFC 7518, 6.2.2 and 6.3.2; RFC 8037).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// Keeps the signature keys of a published JWKS. Keys meant for something else (`use` other
/// than `sig`, `key_ops` without `verify`), or of an algorithm, type or curve pg_rls_auth does
/// not verify, are skipped, as providers publish such keys beside their signing keys. A key
/// with private members, a symmetric key, or a signature key that does not parse refuses the
/// whole document: a source that publishes those is misconfigured, and nothing it says is
/// trusted.
pub fn keep_signature_keys(document: &[u8]) -> Result<KeptKeys> {
    let bad = |what: String| AuthError::bad_config(format!("the JWKS {what}"));
    if document.len() > crate::keys::MAX_JWKS_BYTES {
        return Err(bad(format!(
            "is {} bytes; at most {} are accepted",
            document.len(),
            crate::keys::MAX_JWKS_BYTES
        )));
    }
    let value: Value =
        serde_json::from_slice(document).map_err(|_| bad("is not valid JSON".into()))?;
    let keys = value
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad("is not a JSON object with a \"keys\" array".into()))?;
    if keys.len() > crate::keys::MAX_KEYS {
        return Err(bad(format!(
            "has {} keys; at most {} are supported",
            keys.len(),
            crate::keys::MAX_KEYS
        )));
    }
    let mut kept = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let object = key
            .as_object()
            .ok_or_else(|| bad(format!("key {} is not a JSON object", i + 1)))?;
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
            return Err(bad(format!(
                "key {} contains private key material (\"{member}\")",
                i + 1
            )));
        }
        if object.get("kty").and_then(Value::as_str) == Some("oct") {
            return Err(bad(format!(
                "key {} is a symmetric (oct) key, which must never be published",
                i + 1
            )));
        }
        if is_signature_key_we_verify(object) {
            kept.push(Value::Object(
                object
                    .iter()
                    .filter(|(k, _)| PUBLIC_MEMBERS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Map<String, Value>>(),
            ));
        }
    }
    if kept.is_empty() {
        return Err(bad("has no signature key that pg_rls_auth can use".into()));
    }
    let jwks = serde_json::json!({ "keys": kept }).to_string();
    if jwks.len() > MAX_KEPT_JWKS_BYTES {
        return Err(bad(format!(
            "keeps {} bytes of keys; at most {MAX_KEPT_JWKS_BYTES} are supported",
            jwks.len()
        )));
    }
    // Every kept key must parse as it will in each backend.
    let mut check = KeySet::new();
    check.add_managed_jwks(&jwks, None, "the JWKS")?;
    Ok(KeptKeys {
        kids: kids_in(&kept),
        jwks,
        count: kept.len(),
    })
}

/// The `kid`s of a kept key set (`KeptKeys::jwks`), in order; none for text that is not one.
pub fn kept_kids(kept_jwks: &str) -> Vec<String> {
    serde_json::from_str::<Value>(kept_jwks)
        .ok()
        .and_then(|v| {
            v.get("keys")
                .and_then(Value::as_array)
                .map(|keys| kids_in(keys))
        })
        .unwrap_or_default()
}

fn kids_in(keys: &[Value]) -> Vec<String> {
    keys.iter()
        .filter_map(|k| k.get("kid").and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn is_signature_key_we_verify(key: &Map<String, Value>) -> bool {
    let text = |name: &str| key.get(name).and_then(Value::as_str);
    if key.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return false;
    }
    if let Some(ops) = key.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return false;
        }
    }
    if key
        .get("alg")
        .is_some_and(|a| a.as_str().is_none_or(|a| parse_algorithm(a).is_err()))
    {
        return false;
    }
    matches!(
        (text("kty"), text("crv")),
        (Some("RSA"), _) | (Some("EC"), Some("P-256" | "P-384")) | (Some("OKP"), Some("Ed25519"))
    )
}

/// When a source is next due: after `interval`, or after the response's `max-age` within
/// [`MIN_MAX_AGE_SECS`, `MAX_MAX_AGE_SECS`]; sooner after a failure.
pub fn next_refresh_secs(interval_secs: u64, max_age: Option<u64>, succeeded: bool) -> u64 {
    if !succeeded {
        return interval_secs.min(RETRY_AFTER_FAILURE_SECS);
    }
    match max_age {
        Some(age) => age.clamp(MIN_MAX_AGE_SECS, MAX_MAX_AGE_SECS),
        None => interval_secs,
    }
}

/// `max-age` of a `Cache-Control` header; `no-cache` and `no-store` count as the shortest.
pub fn parse_max_age(cache_control: &str) -> Option<u64> {
    let mut age = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return Some(0);
        }
        if name.eq_ignore_ascii_case("max-age") {
            age = value.trim().trim_matches('"').parse::<u64>().ok();
        }
    }
    age
}

impl KeySet {
    /// Adds the kept keys of one managed source; keys of an issuer's source verify only tokens
    /// whose `iss` is that issuer.
    pub fn add_managed_jwks(
        &mut self,
        kept_jwks: &str,
        issuer: Option<&str>,
        source: &str,
    ) -> Result<()> {
        self.add_jwks_bound(kept_jwks, KeyOrigin::Configured, source, issuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_or_loopback_http() {
        for ok in [
            "https://example.com/.well-known/jwks.json",
            "HTTPS://Example.com:8443/x?y=1",
            "http://127.0.0.1:8080/jwks",
            "http://127.9.9.9/jwks",
            "http://localhost/jwks",
            "http://LOCALHOST:1/jwks",
            "http://[::1]:9/jwks",
            "https://[2001:db8::1]/jwks",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/jwks",
            "http://127.0.0.1.example.com/jwks",
            "http://localhost.example.com/jwks",
            "http://[::2]/jwks",
            "ftp://example.com/jwks",
            "file:///etc/passwd",
            "https://user:pw@example.com/jwks",
            "https://example.com/jwks#frag",
            "https:///jwks",
            "https://example.com:/jwks",
            "https://example.com:99999999/jwks",
            "https://exa mple.com/jwks",
            "https://example.com/\u{e9}",
            "example.com/jwks",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("https://a/{}", "x".repeat(MAX_URL_BYTES))).is_err());
    }

    #[test]
    fn sources_come_from_both_settings_in_order_without_repeats() {
        let sources = parse_sources(
            Some(" https://a/jwks , ,https://b/jwks,https://a/jwks"),
            Some("https://issuer/"),
        )
        .unwrap();
        assert_eq!(
            sources
                .iter()
                .map(|s| s.configured.as_str())
                .collect::<Vec<_>>(),
            ["https://a/jwks", "https://b/jwks", "https://issuer/"]
        );
        assert_eq!(sources[2].bound_issuer(), Some("https://issuer/"));
        assert_eq!(sources[0].bound_issuer(), None);
        assert_eq!(
            sources[2].first_url(),
            "https://issuer/.well-known/openid-configuration"
        );
        assert!(parse_sources(None, None).unwrap().is_empty());
        let err = parse_sources(None, Some("http://example.com")).unwrap_err();
        assert!(
            err.message.starts_with("pg_rls_auth.oidc_issuers: "),
            "{err}"
        );
        let many = (0..=MAX_SOURCES)
            .map(|i| format!("https://s{i}/jwks"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_sources(Some(&many), None).is_err());
    }

    #[test]
    fn urls_are_shown_without_their_query() {
        assert_eq!(shown_url("https://a/jwks?key=secret"), "https://a/jwks?…");
        assert_eq!(shown_url("https://a/jwks"), "https://a/jwks");
        assert_eq!(
            shown_url(&format!("https://a/{}", "x".repeat(300))),
            "(not shown)"
        );
        assert_eq!(shown_url("https://a/\u{1}"), "(not shown)");
    }

    #[test]
    fn redirects_keep_the_scheme() {
        assert_eq!(
            redirect_target("https://a.example/x/y?z", "/jwks").unwrap(),
            "https://a.example/jwks"
        );
        assert_eq!(
            redirect_target("https://a.example/x", "https://b.example/k").unwrap(),
            "https://b.example/k"
        );
        assert!(redirect_target("https://a.example/x", "http://127.0.0.1/k").is_err());
        assert!(redirect_target("http://127.0.0.1/x", "https://b.example/k").is_err());
        assert!(redirect_target("https://a.example/x", "//evil.example/k").is_err());
        assert!(redirect_target("https://a.example/x", "file:///etc/passwd").is_err());
    }

    #[test]
    fn discovery_must_name_the_configured_issuer() {
        let doc = br#"{"issuer":"https://id.example/","jwks_uri":"https://id.example/keys",
            "authorization_endpoint":"https://id.example/auth","scopes_supported":["openid"]}"#;
        let at = "https://id.example/.well-known/openid-configuration";
        assert_eq!(
            discovery_jwks_uri(doc, "https://id.example/", at).unwrap(),
            "https://id.example/keys"
        );
        assert!(discovery_jwks_uri(doc, "https://id.example", at).is_err());
        assert!(discovery_jwks_uri(br#"{"issuer":"https://i/"}"#, "https://i/", at).is_err());
        for uri in [
            "http://evil.example/k",
            "http://127.0.0.1:5432/",
            "file:///etc/passwd",
            // A path is not a URL; it once passed (resolved as a redirect) and failed at fetch.
            "/keys",
            "/https://i/keys",
            "//i/keys",
            "keys",
        ] {
            let doc = format!(r#"{{"issuer":"https://i/","jwks_uri":"{uri}"}}"#);
            assert!(
                discovery_jwks_uri(doc.as_bytes(), "https://i/", at).is_err(),
                "{uri}"
            );
        }
        // A loopback http issuer (a sidecar, a test) may name a loopback http jwks_uri.
        let doc = br#"{"issuer":"http://127.0.0.1:8/i","jwks_uri":"http://127.0.0.1:8/k"}"#;
        assert!(discovery_jwks_uri(doc, "http://127.0.0.1:8/i", "http://127.0.0.1:8/i/d").is_ok());
        assert!(discovery_jwks_uri(b"[1]", "https://i/", at).is_err());
        assert!(discovery_jwks_uri(b"<html>", "https://i/", at).is_err());
    }

    #[test]
    fn max_age_is_clamped_and_failures_retry_sooner() {
        assert_eq!(
            parse_max_age("public, max-age=300, must-revalidate"),
            Some(300)
        );
        assert_eq!(parse_max_age("MAX-AGE=\"20\""), Some(20));
        assert_eq!(parse_max_age("no-store"), Some(0));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
        assert_eq!(next_refresh_secs(600, None, true), 600);
        assert_eq!(next_refresh_secs(600, Some(5), true), MIN_MAX_AGE_SECS);
        assert_eq!(
            next_refresh_secs(600, Some(1 << 40), true),
            MAX_MAX_AGE_SECS
        );
        assert_eq!(next_refresh_secs(600, Some(3600), true), 3600);
        assert_eq!(
            next_refresh_secs(600, Some(3600), false),
            RETRY_AFTER_FAILURE_SECS
        );
        assert_eq!(next_refresh_secs(30, None, false), 30);
    }
}
