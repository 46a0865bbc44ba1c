//! Rules for PostgreSQL 18 OAuth logins (`oauth` in pg_hba.conf) validated by pg_rls_auth: on
//! top of every check a session token gets, the token's issuer must be the pg_hba line's, it
//! must carry every scope the line requires, and, when the validator also authorizes the role
//! (`delegate_ident_mapping=1`), name that role in a claim.
//!
//! A login token is also always an access token for this database: it must name one of the
//! configured audiences and carry `exp` (RFC 9068 §2.2 and §4), whatever `require_exp` says
//! for session tokens. Without an audience, any token the issuer mints for another of its
//! services, an ID token included, would log in wherever its scopes happen to match.

use crate::claims::{value_as_text, Claims};
use serde_json::Value;

/// What the connection's pg_hba line and the settings ask of a login token.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginRules<'a> {
    /// pg_hba's `issuer`: an issuer URL, or its discovery document's URL.
    pub issuer: &'a str,
    /// pg_hba's `scope`: space-separated scopes, all required.
    pub scope: &'a str,
    /// The role the client asked to log in as, and the claim that must name it; None when
    /// pg_hba maps identities itself (pg_ident) instead of delegating to the validator.
    pub role: Option<(&'a str, &'a str)>,
    /// The claim whose value becomes the connection's authenticated identity.
    pub authn_claim: &'a str,
    /// `pg_rls_auth.audience`: the token's `aud` must name one; none configured refuses
    /// every login.
    pub audiences: &'a [String],
}

/// Why a login was refused: for the server log only (the client learns nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal(pub String);

/// The issuer a pg_hba `issuer` names: a discovery URL (containing `/.well-known/`) stands for
/// the part before it, as PostgreSQL itself builds discovery URLs from issuers.
pub fn issuer_of(hba_issuer: &str) -> &str {
    match hba_issuer.find("/.well-known/") {
        Some(i) => &hba_issuer[..i],
        None => hba_issuer,
    }
}

/// The token's scopes: `scope` (a space-separated string, RFC 8693) or `scp` (an array of
/// strings, or a string, as some providers send).
fn granted_scopes(claims: &Claims) -> Vec<&str> {
    let map = claims.as_map();
    let mut scopes = Vec::new();
    for name in ["scope", "scp"] {
        match map.get(name) {
            Some(Value::String(s)) => scopes.extend(s.split_ascii_whitespace()),
            Some(Value::Array(items)) => scopes.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    scopes
}

/// Checks a verified token's claims against `rules`; the authenticated identity when it may
/// log in.
pub fn check(claims: &Claims, rules: &LoginRules<'_>) -> Result<String, Refusal> {
    let map = claims.as_map();
    if rules.audiences.is_empty() {
        return Err(Refusal(
            "pg_rls_auth.audience is not set: an OAuth login must name this database's audience"
                .into(),
        ));
    }
    if !claims.names_audience(rules.audiences) {
        return Err(Refusal(
            "the token's aud does not include pg_rls_auth.audience".into(),
        ));
    }
    if !map.get("exp").is_some_and(Value::is_number) {
        return Err(Refusal(
            "the token has no exp claim, which an OAuth login always needs".into(),
        ));
    }
    let expected = issuer_of(rules.issuer);
    match map.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == expected => {}
        Some(_) => return Err(Refusal("the token's iss is not the pg_hba issuer".into())),
        None => return Err(Refusal("the token has no iss claim".into())),
    }
    let granted = granted_scopes(claims);
    if let Some(missing) = rules
        .scope
        .split_ascii_whitespace()
        .find(|s| !granted.contains(s))
    {
        return Err(Refusal(format!(
            "the token lacks the scope {missing:?} that pg_hba requires"
        )));
    }
    if let Some((role, claim)) = rules.role {
        match claims.get_path(claim).and_then(value_as_text) {
            Some(r) if r == role => {}
            _ => {
                return Err(Refusal(format!(
                    "the token's {claim:?} claim does not name the role {role:?}"
                )))
            }
        }
    }
    match claims.get_path(rules.authn_claim).and_then(value_as_text) {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(Refusal(format!(
            "the token has no {:?} claim to authenticate as",
            rules.authn_claim
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        Claims::from_map(v.as_object().unwrap().clone())
    }

    fn audiences() -> &'static [String] {
        static AUDIENCES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        AUDIENCES.get_or_init(|| vec!["db-api".into(), "reports".into()])
    }

    fn rules<'a>(role: Option<(&'a str, &'a str)>) -> LoginRules<'a> {
        LoginRules {
            issuer: "https://issuer.example/realms/app",
            scope: "openid db",
            role,
            authn_claim: "sub",
            audiences: audiences(),
        }
    }

    #[test]
    fn a_token_with_the_issuer_and_every_scope_logs_in_as_its_sub() {
        let c = claims(
            json!({"iss": "https://issuer.example/realms/app", "sub": "u1", "scope": "openid profile db", "aud": "db-api", "exp": 2e9}),
        );
        assert_eq!(check(&c, &rules(None)), Ok("u1".into()));
        let c = claims(
            json!({"iss": "https://issuer.example/realms/app", "sub": "u1", "scp": ["db", "openid"], "aud": ["web", "reports"], "exp": 2e9}),
        );
        assert_eq!(check(&c, &rules(None)), Ok("u1".into()));
    }

    #[test]
    fn a_discovery_url_stands_for_its_issuer() {
        assert_eq!(
            issuer_of("https://issuer.example/realms/app/.well-known/openid-configuration"),
            "https://issuer.example/realms/app"
        );
        assert_eq!(
            issuer_of("https://issuer.example"),
            "https://issuer.example"
        );
    }

    #[test]
    fn each_check_refuses() {
        let base = json!({"iss": "https://issuer.example/realms/app", "sub": "u1", "scope": "openid db", "role": "authenticated", "aud": "db-api", "exp": 2e9});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            claims(b)
        };
        // Another issuer, one differing only in case or a trailing slash, none.
        for iss in [
            "https://evil.example",
            "https://ISSUER.example/realms/app",
            "https://issuer.example/realms/app/",
        ] {
            assert!(
                check(&with("iss", json!(iss)), &rules(None)).is_err(),
                "{iss}"
            );
        }
        let mut no_iss = base.clone();
        no_iss.as_object_mut().unwrap().remove("iss");
        assert!(check(&claims(no_iss), &rules(None)).is_err());
        // A missing scope, a scope that only contains the required one as a substring.
        assert!(check(&with("scope", json!("openid")), &rules(None)).is_err());
        assert!(check(&with("scope", json!("openid dbx")), &rules(None)).is_err());
        // The role claim must name the requested role exactly.
        let role = Some(("authenticated", "role"));
        assert!(check(&claims(base.clone()), &rules(role)).is_ok());
        assert!(check(&with("role", json!("anon")), &rules(role)).is_err());
        assert!(check(&with("role", json!("Authenticated")), &rules(role)).is_err());
        // No identity to authenticate as.
        assert!(check(&with("sub", json!("")), &rules(None)).is_err());
    }

    #[test]
    fn a_login_token_is_an_access_token_for_this_database() {
        let base = json!({"iss": "https://issuer.example/realms/app", "sub": "u1", "scope": "openid db", "aud": "db-api", "exp": 2e9});
        let without = |k: &str| {
            let mut b = base.clone();
            b.as_object_mut().unwrap().remove(k);
            claims(b)
        };
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            claims(b)
        };
        assert!(check(&claims(base.clone()), &rules(None)).is_ok());
        // No audience configured refuses even a token that names one, saying why.
        let unset = LoginRules {
            audiences: &[],
            ..rules(None)
        };
        let refusal = check(&claims(base.clone()), &unset).unwrap_err();
        assert!(
            refusal.0.contains("pg_rls_auth.audience is not set"),
            "{refusal:?}"
        );
        // Another service's token, an ID token (aud = a client id), near misses, no aud, an
        // aud that is not text.
        for aud in [
            json!("other-api"),
            json!("my-client-id"),
            json!("DB-API"),
            json!("db-api "),
            json!(["web", "other"]),
            json!([]),
            json!(null),
            json!({"db-api": true}),
            json!([["db-api"]]),
        ] {
            assert!(
                check(&with("aud", aud.clone()), &rules(None)).is_err(),
                "{aud}"
            );
        }
        assert!(check(&without("aud"), &rules(None)).is_err());
        // exp is required of a login whatever pg_rls_auth.require_exp says, and must be a
        // NumericDate.
        let refusal = check(&without("exp"), &rules(None)).unwrap_err();
        assert!(refusal.0.contains("exp"), "{refusal:?}");
        assert!(check(&with("exp", json!("2000000000")), &rules(None)).is_err());
    }

    proptest! {
        /// Whatever the token grants, a login passes only when every required scope is granted.
        #[test]
        fn scopes_are_all_required(granted in proptest::collection::vec("[a-c]{1,2}", 0..4),
                                   required in proptest::collection::vec("[a-c]{1,2}", 0..3)) {
            let c = claims(json!({"iss": "https://i", "sub": "u", "scope": granted.join(" "), "aud": "db-api", "exp": 2e9}));
            let scope = required.join(" ");
            let r = LoginRules { issuer: "https://i", scope: &scope, role: None, authn_claim: "sub", audiences: audiences() };
            prop_assert_eq!(check(&c, &r).is_ok(), required.iter().all(|s| granted.contains(s)));
        }
    }
}
