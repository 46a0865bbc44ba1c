//! Revocation rules: which recorded revocations refuse a token. The extension stores
//! revocations in a table and looks up those naming a token's `sub` or `jti`; the decision is
//! made here.

use crate::claims::{value_as_text, Claims};

/// Longest `sub` or `jti` a revocation may name (the table indexes them).
pub const MAX_VALUE_BYTES: usize = 1024;

/// What a revocation can match in a token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenIdentity {
    pub sub: Option<String>,
    pub jti: Option<String>,
    /// `iat` in seconds since the Unix epoch; a token without one counts as issued at the
    /// epoch, so "everything issued before t" includes it.
    pub issued_at: f64,
}

impl TokenIdentity {
    pub fn of(claims: &Claims) -> Self {
        let map = claims.as_map();
        Self {
            sub: claims.subject(),
            jti: map.get("jti").and_then(value_as_text),
            issued_at: map
                .get("iat")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0),
        }
    }
}

/// Why `token` cannot be checked against revocations, if it cannot: its `sub` or `jti` is
/// longer than any revocation may name, so it could never be revoked. Such a token is refused,
/// never let through unchecked.
pub fn uncheckable(token: &TokenIdentity) -> Option<String> {
    [("sub", &token.sub), ("jti", &token.jti)]
        .into_iter()
        .find_map(|(what, value)| {
            let len = value.as_deref().map_or(0, str::len);
            (len > MAX_VALUE_BYTES).then(|| {
                format!(
                    "the token's {what} is {len} bytes; revocations can name at most \
                     {MAX_VALUE_BYTES}, so it cannot be checked"
                )
            })
        })
}

/// One recorded revocation, times in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Revocation {
    /// Every token of a `sub` issued before `issued_before`; kept until `expires_at` (None:
    /// until withdrawn).
    Sessions {
        issued_before: f64,
        expires_at: Option<f64>,
    },
    /// One token, until it would have expired anyway.
    Token { expires_at: f64 },
}

impl Revocation {
    /// Whether it is still in force at `now`.
    pub fn in_force(&self, now: f64) -> bool {
        match *self {
            Revocation::Sessions { expires_at, .. } => expires_at.is_none_or(|e| now < e),
            Revocation::Token { expires_at } => now < expires_at,
        }
    }
}

/// Whether `found` (the revocations recorded for the token's `sub`, as `Sessions`, and for
/// its `jti`, as `Token`) refuses the token at `now`.
pub fn refuses(token: &TokenIdentity, found: &[Revocation], now: f64) -> bool {
    found.iter().any(|r| {
        r.in_force(now)
            && match *r {
                Revocation::Sessions { issued_before, .. } => {
                    token.sub.is_some() && token.issued_at < issued_before
                }
                Revocation::Token { .. } => token.jti.is_some(),
            }
    })
}

/// Checks a `sub` or `jti` given to a revocation function.
pub fn check_value(what: &str, value: Option<&str>) -> Result<String, String> {
    match value {
        None => Err(format!("{what} must not be NULL")),
        Some("") => Err(format!("{what} must not be empty")),
        Some(v) if v.len() > MAX_VALUE_BYTES => Err(format!(
            "{what} is {} bytes; at most {MAX_VALUE_BYTES} are allowed",
            v.len()
        )),
        Some(v) => Ok(v.to_string()),
    }
}

/// When a backend last found its session not revoked: the shared revocation epoch then (with
/// the library preloaded, on a primary), else the statement it checked in. A check is due
/// when the current stamp differs, or the session changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Epoch(u64),
    Statement(i64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn token(sub: Option<&str>, jti: Option<&str>, iat: Option<f64>) -> TokenIdentity {
        let mut map = serde_json::Map::new();
        if let Some(s) = sub {
            map.insert("sub".into(), s.into());
        }
        if let Some(j) = jti {
            map.insert("jti".into(), j.into());
        }
        if let Some(i) = iat {
            map.insert("iat".into(), i.into());
        }
        TokenIdentity::of(&Claims::from_map(map))
    }

    #[test]
    fn a_numeric_jti_is_matched_as_auth_claim_prints_it() {
        let jti = |json: &str| {
            let claims = Claims::from_trusted_json(&format!(r#"{{"jti":{json}}}"#)).unwrap();
            let printed = value_as_text(&claims.as_map()["jti"]);
            let identity = TokenIdentity::of(&claims).jti;
            assert_eq!(identity, printed, "{json}");
            identity
        };
        assert_eq!(jti("42").as_deref(), Some("42"));
        assert_eq!(jti("42.0").as_deref(), Some("42.0"));
        assert_eq!(jti("4.2e1").as_deref(), Some("42.0"));
        assert_eq!(jti(r#""4.2e1""#).as_deref(), Some("4.2e1"));
    }

    #[test]
    fn a_sub_or_jti_no_revocation_can_name_is_uncheckable() {
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        let most = "x".repeat(MAX_VALUE_BYTES);
        assert!(uncheckable(&token(Some(&most), Some(&most), None)).is_none());
        assert!(uncheckable(&token(None, None, None)).is_none());
        let why = uncheckable(&token(Some(&long), None, None)).unwrap();
        assert!(why.contains("sub is 1025 bytes"), "{why}");
        let why = uncheckable(&token(Some("u"), Some(&long), None)).unwrap();
        assert!(why.contains("jti is 1025 bytes"), "{why}");
        // Every value uncheckable() lets through, a revocation may name.
        assert!(check_value("sub", Some(&most)).is_ok());
    }

    #[test]
    fn a_token_without_iat_counts_as_issued_at_the_epoch() {
        let t = token(Some("u"), None, None);
        assert_eq!(t.issued_at, 0.0);
        let all = Revocation::Sessions {
            issued_before: 1.0,
            expires_at: None,
        };
        assert!(refuses(&t, &[all], 100.0));
    }

    #[test]
    fn sessions_refuse_only_tokens_issued_before() {
        let r = Revocation::Sessions {
            issued_before: 1000.0,
            expires_at: None,
        };
        assert!(refuses(&token(Some("u"), None, Some(999.0)), &[r], 2000.0));
        assert!(!refuses(
            &token(Some("u"), None, Some(1000.0)),
            &[r],
            2000.0
        ));
        assert!(!refuses(
            &token(Some("u"), None, Some(1001.0)),
            &[r],
            2000.0
        ));
    }

    #[test]
    fn expired_revocations_refuse_nothing() {
        let t = token(Some("u"), Some("j"), Some(10.0));
        let sessions = Revocation::Sessions {
            issued_before: 100.0,
            expires_at: Some(50.0),
        };
        let one = Revocation::Token { expires_at: 50.0 };
        assert!(refuses(&t, &[sessions], 49.0));
        assert!(!refuses(&t, &[sessions], 50.0));
        assert!(refuses(&t, &[one], 49.9));
        assert!(!refuses(&t, &[one], 50.0));
    }

    #[test]
    fn values_are_checked() {
        assert!(check_value("sub", None).is_err());
        assert!(check_value("sub", Some("")).is_err());
        assert!(check_value("sub", Some(&"x".repeat(MAX_VALUE_BYTES + 1))).is_err());
        assert_eq!(check_value("sub", Some("a")).unwrap(), "a");
    }

    proptest! {
        /// A revocation in force refuses exactly the tokens it names; nothing refuses a token
        /// once every revocation found for it has expired.
        #[test]
        fn refusal_follows_the_rules(
            iat in proptest::option::of(0.0f64..1e9),
            before in 0.0f64..1e9,
            expires in proptest::option::of(0.0f64..2e9),
            now in 0.0f64..2e9,
        ) {
            let t = token(Some("u"), None, iat);
            let r = Revocation::Sessions { issued_before: before, expires_at: expires };
            let expected = expires.is_none_or(|e| now < e) && iat.unwrap_or(0.0) < before;
            prop_assert_eq!(refuses(&t, &[r], now), expected);
            let gone = Revocation::Token { expires_at: now };
            prop_assert!(!refuses(&t, &[gone], now));
        }
    }
}
