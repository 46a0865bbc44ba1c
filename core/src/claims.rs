//! Claims: the payload of a verified token (or PostgREST's `request.jwt.claims`), the checks an
//! administrator configures, and the lookups the SQL API answers from.

use crate::error::{AuthError, Result};
use crate::verify::VerifyPolicy;
use serde_json::{Map, Value};

/// A JSON object of claims. `exp`/`nbf` are kept as numbers so a cached token's time window
/// can be re-checked without parsing again.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    map: Map<String, Value>,
    exp: Option<f64>,
    nbf: Option<f64>,
}

fn numeric_date(map: &Map<String, Value>, name: &str) -> Result<Option<f64>> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(AuthError::invalid_token(format!(
            "the {name} claim must be a number"
        ))),
    }
}

impl Claims {
    /// Parses a token payload and checks the types of the registered claims.
    pub fn from_payload(bytes: &[u8]) -> Result<Self> {
        if has_escaped_nul(bytes) {
            return Err(AuthError::invalid_token(
                "token payload contains a NUL character (\\u0000), which PostgreSQL text cannot hold",
            ));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            AuthError::invalid_token(format!(
                "token payload is not valid JSON ({})",
                e.classify_str()
            ))
        })?;
        let Value::Object(map) = value else {
            return Err(AuthError::invalid_token(
                "token payload is not a JSON object",
            ));
        };
        if map.get("sub").is_some_and(|s| !s.is_string()) {
            return Err(AuthError::invalid_token("the sub claim must be a string"));
        }
        if map.get("iss").is_some_and(|s| !s.is_string()) {
            return Err(AuthError::invalid_token("the iss claim must be a string"));
        }
        match map.get("aud") {
            None | Some(Value::String(_)) => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(_) => {
                return Err(AuthError::invalid_token(
                    "the aud claim must be a string or an array of strings",
                ))
            }
        }
        numeric_date(&map, "iat")?;
        let exp = numeric_date(&map, "exp")?;
        let nbf = numeric_date(&map, "nbf")?;
        Ok(Self { map, exp, nbf })
    }

    /// Claims that need no checks: PostgREST's `request.jwt.claims`, or a session the extension
    /// itself verified and stored.
    pub fn from_trusted_json(json: &str) -> Result<Self> {
        if has_escaped_nul(json.as_bytes()) {
            return Err(AuthError::invalid_argument(
                "claims contain a NUL character (\\u0000), which PostgreSQL text cannot hold",
            ));
        }
        let value: Value = serde_json::from_str(json).map_err(|e| {
            AuthError::invalid_argument(format!("claims are not valid JSON ({})", e.classify_str()))
        })?;
        let Value::Object(map) = value else {
            return Err(AuthError::invalid_argument("claims are not a JSON object"));
        };
        Ok(Self {
            exp: None,
            nbf: None,
            map,
        })
    }

    pub fn from_map(map: Map<String, Value>) -> Self {
        Self {
            map,
            exp: None,
            nbf: None,
        }
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.map).expect("a JSON map always serializes")
    }

    /// Whether `aud` (a string, or an array of strings) names one of `audiences`, exactly.
    pub fn names_audience(&self, audiences: &[String]) -> bool {
        let accepted = |a: &str| audiences.iter().any(|p| p == a);
        match self.map.get("aud") {
            Some(Value::String(a)) => accepted(a),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(accepted),
            _ => false,
        }
    }

    /// Every configured check: time window, issuer, audience.
    pub fn check(&self, policy: &VerifyPolicy, now: f64) -> Result<()> {
        self.check_times(policy, now)?;
        if let Some(issuer) = &policy.issuer {
            if self.map.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(AuthError::invalid_token(
                    "the iss claim does not match pg_rls_auth.issuer",
                ));
            }
        }
        if !policy.audiences.is_empty() && !self.names_audience(&policy.audiences) {
            return Err(AuthError::invalid_token(
                "the aud claim does not include pg_rls_auth.audience",
            ));
        }
        Ok(())
    }

    /// `exp` and `nbf` against `now` (Unix seconds) with the policy's leeway.
    pub fn check_times(&self, policy: &VerifyPolicy, now: f64) -> Result<()> {
        let leeway = policy.leeway_secs as f64;
        match self.exp {
            None if policy.require_exp => {
                return Err(AuthError::invalid_token(
                    "the token has no exp claim (pg_rls_auth.require_exp is on)",
                ))
            }
            Some(exp) if now > exp + leeway => {
                return Err(AuthError::invalid_token(format!(
                    "the token expired at {}",
                    format_unix_time(exp)
                )))
            }
            _ => {}
        }
        if let Some(nbf) = self.nbf.filter(|nbf| now + leeway < *nbf) {
            return Err(AuthError::invalid_token(format!(
                "the token is not valid before {}",
                format_unix_time(nbf)
            )));
        }
        Ok(())
    }

    /// `sub` as text: a string as it is, any other JSON value as JSON text.
    pub fn subject(&self) -> Option<String> {
        self.map.get("sub").and_then(value_as_text)
    }

    /// A claim by dotted path: `"app_metadata.tenant_id"` reaches into nested objects. A name
    /// that itself contains dots is found too, as its whole.
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        if let Some(v) = self.map.get(path) {
            return Some(v);
        }
        let mut parts = path.split('.');
        let mut current = self.map.get(parts.next()?)?;
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current)
    }

    /// Neon Auth's organization claim `"o"`, when it is an object.
    pub fn organization(&self) -> Option<&Map<String, Value>> {
        self.map.get("o").and_then(Value::as_object)
    }

    /// An integer `jti`, for the trusted-proxy replay rule.
    pub fn jti_integer(&self) -> Option<i64> {
        self.map.get("jti").and_then(Value::as_i64)
    }
}

/// `pg_rls_auth.audience`: comma-separated audiences, white space around each ignored, empty
/// entries dropped (so an empty list means `aud` is not checked).
pub fn parse_audiences(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect()
}

/// Claims as SQL text: strings unquoted, null as SQL NULL, anything else as JSON text.
pub fn value_as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A `\u0000` escape anywhere (a raw NUL is not valid JSON). PostgreSQL text ends at a NUL, so
/// `"<uuid>\u0000x"` would read as `<uuid>` in a cast; jsonb refuses it outright.
fn has_escaped_nul(json: &[u8]) -> bool {
    json.windows(6).any(|w| w == b"\\u0000")
}

/// A UUID in any form PostgreSQL's uuid input accepts commonly (hyphenated, plain hex, braces).
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    uuid::Uuid::try_parse(text).ok().map(|u| *u.as_bytes())
}

/// A UUID's text as PostgreSQL's uuid output writes it (lower-case, hyphenated), so that a uuid
/// and its text name one rate-limit key. Encodes directly: formatting machinery costs a
/// third of a memory-store check.
pub fn uuid_text(bytes: [u8; 16]) -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Uuid::from_bytes(bytes)
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    // The category only: serde's full message can quote parts of the input.
    fn classify_str(&self) -> &'static str {
        use serde_json::error::Category;
        if self.to_string().contains("recursion limit") {
            return "nested too deeply";
        }
        match self.classify() {
            Category::Io => "I/O error",
            Category::Syntax => "syntax error",
            Category::Data => "unexpected data",
            Category::Eof => "truncated",
        }
    }
}

/// `2026-11-24 03:35:33 UTC` for a Unix time, without a date library.
pub fn format_unix_time(secs: f64) -> String {
    if !secs.is_finite() || secs.abs() > 1e14 {
        return format!("{secs} (Unix time)");
    }
    let secs = secs.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_are_comma_separated_and_trimmed() {
        assert_eq!(parse_audiences(" api , web,,"), vec!["api", "web"]);
        assert!(parse_audiences(" , ").is_empty());
        assert_eq!(parse_audiences("urn:a b"), vec!["urn:a b"]);
    }

    fn claims(json: &str) -> Claims {
        Claims::from_payload(json.as_bytes()).unwrap()
    }

    #[test]
    fn formats_unix_time() {
        assert_eq!(format_unix_time(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix_time(1_795_923_333.0), "2026-11-29 03:35:33 UTC");
        assert_eq!(format_unix_time(-1.0), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn exp_and_nbf_honour_leeway() {
        let p = VerifyPolicy {
            leeway_secs: 60,
            ..Default::default()
        };
        let c = claims(r#"{"exp": 1000, "nbf": 900}"#);
        assert!(c.check(&p, 1059.0).is_ok());
        assert!(c
            .check(&p, 1061.0)
            .unwrap_err()
            .message
            .contains("expired at 1970-01-01 00:16:40"));
        assert!(c.check(&p, 841.0).is_ok());
        assert!(c
            .check(&p, 839.0)
            .unwrap_err()
            .message
            .contains("not valid before"));
    }

    #[test]
    fn exp_required_unless_disabled() {
        let c = claims(r#"{"sub": "a"}"#);
        assert!(c
            .check(&VerifyPolicy::default(), 0.0)
            .unwrap_err()
            .message
            .contains("no exp"));
        let p = VerifyPolicy {
            require_exp: false,
            ..Default::default()
        };
        assert!(c.check(&p, 0.0).is_ok());
    }

    #[test]
    fn wrong_claim_types_are_refused() {
        for bad in [
            r#"{"exp": "1000"}"#,
            r#"{"nbf": true}"#,
            r#"{"iat": []}"#,
            r#"{"sub": 42}"#,
            r#"{"aud": 1}"#,
            r#"{"aud": ["a", 2]}"#,
            r#"{"iss": {}}"#,
            r#"[1, 2]"#,
            r#""x""#,
        ] {
            let err = Claims::from_payload(bad.as_bytes()).unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::InvalidToken, "{bad}");
        }
    }

    #[test]
    fn exp_is_optional_for_proxy_tokens_only_when_asked() {
        use crate::keys::KeyOrigin;
        let c = claims(r#"{"sub": "a", "exp": 1000}"#);
        let no_exp = claims(r#"{"sub": "a"}"#);
        let p = VerifyPolicy {
            proxy_exp_optional: true,
            ..Default::default()
        };
        assert!(no_exp
            .check(&p.for_origin(KeyOrigin::TrustedProxy), 0.0)
            .is_ok());
        assert!(no_exp
            .check(&p.for_origin(KeyOrigin::Configured), 0.0)
            .is_err());
        assert!(no_exp
            .check(&p.for_origin(KeyOrigin::HmacSecret), 0.0)
            .is_err());
        // Present, it is still checked.
        assert!(c
            .check(&p.for_origin(KeyOrigin::TrustedProxy), 2000.0)
            .is_err());
        let strict = VerifyPolicy::default();
        assert!(no_exp
            .check(&strict.for_origin(KeyOrigin::TrustedProxy), 0.0)
            .is_err());
    }

    #[test]
    fn issuer_and_audience() {
        let p = VerifyPolicy {
            require_exp: false,
            issuer: Some("https://issuer".into()),
            audiences: vec!["api".into(), "web".into()],
            ..Default::default()
        };
        assert!(claims(r#"{"iss":"https://issuer","aud":"web"}"#)
            .check(&p, 0.0)
            .is_ok());
        assert!(claims(r#"{"iss":"https://issuer","aud":["x","api"]}"#)
            .check(&p, 0.0)
            .is_ok());
        assert!(claims(r#"{"iss":"https://issuer","aud":["x"]}"#)
            .check(&p, 0.0)
            .is_err());
        assert!(claims(r#"{"iss":"https://issuer"}"#)
            .check(&p, 0.0)
            .is_err());
        assert!(claims(r#"{"iss":"https://other","aud":"api"}"#)
            .check(&p, 0.0)
            .is_err());
    }

    #[test]
    fn dotted_paths_and_text() {
        let c = claims(
            r#"{"a.b": 1, "app_metadata": {"tenant_id": "t1", "n": {"x": [1]}}, "z": null}"#,
        );
        assert_eq!(c.get_path("a.b"), Some(&Value::from(1)));
        assert_eq!(
            value_as_text(c.get_path("app_metadata.tenant_id").unwrap()).as_deref(),
            Some("t1")
        );
        assert_eq!(
            value_as_text(c.get_path("app_metadata.n").unwrap()).as_deref(),
            Some(r#"{"x":[1]}"#)
        );
        assert_eq!(c.get_path("app_metadata.missing"), None);
        assert_eq!(c.get_path("z").and_then(value_as_text), None);
    }

    /// Found by fuzzing (fuzz/regressions/claims): without correctly rounded parsing, a large
    /// number came back different after the JSON round trip parallel workers rely on.
    #[test]
    fn numbers_survive_the_json_round_trip() {
        let claims = Claims::from_payload(br#"{"n": 122222222222222222222222, "f": 0.1}"#).unwrap();
        let again = Claims::from_trusted_json(&claims.to_json()).unwrap();
        assert_eq!(again.as_map(), claims.as_map());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let json = format!(r#"{{"x": {deep}}}"#);
        let err = Claims::from_payload(json.as_bytes()).unwrap_err();
        assert!(err.message.contains("nested too deeply"), "{}", err.message);
    }

    #[test]
    fn uuids() {
        assert!(parse_uuid("6f1c3a3e-9a53-4c59-8a3f-3f5e1f2b9c10").is_some());
        assert!(parse_uuid("user-1").is_none());
        // PostgreSQL's uuid output for these bytes.
        let bytes = parse_uuid("6F1C3A3E9A534C598A3F3F5E1F2B9C10").unwrap();
        assert_eq!(uuid_text(bytes), "6f1c3a3e-9a53-4c59-8a3f-3f5e1f2b9c10");
    }

    proptest::proptest! {
        #[test]
        fn uuid_text_is_canonical_and_round_trips(bytes: [u8; 16]) {
            let text = uuid_text(bytes);
            proptest::prop_assert_eq!(text.len(), 36);
            proptest::prop_assert!(text.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            proptest::prop_assert_eq!(parse_uuid(&text), Some(bytes));
        }
    }
}
