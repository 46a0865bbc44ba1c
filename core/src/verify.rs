//! Verifying a compact JWS: size limit, header, key choice, signature, then claims.

use crate::claims::Claims;
use crate::error::{AuthError, Result};
use crate::keys::{parse_algorithm, KeyOrigin, KeySet, Kid};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// `pg_rls_auth.max_token_bytes`' default: well above real access tokens (1-4 kB).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Every verification setting an administrator configures (`pg_rls_auth.max_token_bytes`,
/// `.leeway`, `.require_exp`, `.issuer`, `.audience`), in one value, as jsonwebtoken's
/// `Validation`: the keys say who may sign, this says what a signed token must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Longer tokens are refused before any parsing.
    pub max_token_bytes: usize,
    pub leeway_secs: i64,
    pub require_exp: bool,
    pub issuer: Option<String>,
    /// Accepted audiences; empty means `aud` is not checked.
    pub audiences: Vec<String>,
    /// Tokens a trusted proxy's key verified need no `exp` (pg_session_jwt's rule; it is
    /// still checked when present).
    pub proxy_exp_optional: bool,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self {
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            leeway_secs: 60,
            require_exp: true,
            issuer: None,
            audiences: Vec::new(),
            proxy_exp_optional: false,
        }
    }
}

impl VerifyPolicy {
    /// The policy for a token verified by a key of `origin`.
    pub fn for_origin(&self, origin: crate::keys::KeyOrigin) -> std::borrow::Cow<'_, VerifyPolicy> {
        use std::borrow::Cow;
        if origin == crate::keys::KeyOrigin::TrustedProxy && self.proxy_exp_optional {
            Cow::Owned(VerifyPolicy {
                require_exp: false,
                ..self.clone()
            })
        } else {
            Cow::Borrowed(self)
        }
    }
}

#[derive(Debug)]
pub struct VerifiedToken {
    pub claims: Claims,
    pub key_origin: KeyOrigin,
}

fn decode_part(part: &str, what: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::invalid_token(format!("the token {what} is not valid base64url")))
}

/// Verifies `token` against `keys` and `policy` at `now` (Unix seconds).
pub fn verify_token(
    token: &str,
    keys: &KeySet,
    policy: &VerifyPolicy,
    now: f64,
) -> Result<VerifiedToken> {
    let max_token_bytes = policy.max_token_bytes;
    if token.is_empty() {
        return Err(AuthError::invalid_token("the token is empty or NULL"));
    }
    if token.len() > max_token_bytes {
        return Err(AuthError::invalid_token(format!(
            "the token is {} bytes; pg_rls_auth.max_token_bytes allows {max_token_bytes}",
            token.len()
        )));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        let hint = if parts.len() == 5 {
            "; encrypted tokens (JWE) are not supported"
        } else {
            ""
        };
        return Err(AuthError::invalid_token(format!(
            "the token is not a signed JWT (expected 3 dot-separated parts, found {}{hint})",
            parts.len()
        )));
    }
    let (header_b64, payload_b64, signature_b64) = (parts[0], parts[1], parts[2]);
    let header: Value = serde_json::from_slice(&decode_part(header_b64, "header")?)
        .map_err(|_| AuthError::invalid_token("the token header is not valid JSON"))?;
    let header = header
        .as_object()
        .ok_or_else(|| AuthError::invalid_token("the token header is not a JSON object"))?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => Some(parse_algorithm(alg)?),
        Some(_) => {
            return Err(AuthError::invalid_token(
                "the token header's alg must be a string",
            ))
        }
        None => None,
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => Kid::Absent,
        Some(Value::String(kid)) => Kid::Text(kid.as_str()),
        Some(_) => Kid::Other,
    };
    if header.contains_key("crit") {
        return Err(AuthError::invalid_token(
            "the token header lists critical extensions (crit), which are not supported",
        ));
    }
    if keys.is_empty() {
        return Err(AuthError::not_configured(
            "no key is configured to verify tokens",
        ));
    }
    let (key, alg) = keys.select(alg, kid)?;
    let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
    let valid =
        jsonwebtoken::crypto::verify(signature_b64, signed.as_bytes(), key.decoding_key(), alg)
            .map_err(|_| AuthError::invalid_token("the token signature is malformed"))?;
    if !valid {
        return Err(AuthError::invalid_token(
            "the token signature does not verify",
        ));
    }
    let claims = Claims::from_payload(&decode_part(payload_b64, "payload")?)?;
    // An issuer's keys verify only its tokens, and its tokens only its keys: another key (a
    // pasted JWKS, a URL's, the HMAC secret) cannot issue in its name.
    let iss = claims.as_map().get("iss").and_then(Value::as_str);
    match &key.issuer {
        Some(issuer) if iss != Some(issuer.as_str()) => {
            return Err(AuthError::invalid_token(format!(
                "the token was signed by a key of issuer \"{}\", and its iss claim names \
                 another issuer",
                crate::keys::printable(issuer)
            )));
        }
        None if iss.is_some_and(|iss| keys.reserves(iss)) => {
            return Err(AuthError::invalid_token(format!(
                "the token's iss claim names issuer \"{}\", and it was signed by a key not \
                 of that issuer (only keys fetched from pg_rls_auth.oidc_issuers verify its \
                 tokens)",
                crate::keys::printable(iss.unwrap_or_default())
            )));
        }
        _ => {}
    }
    claims.check(&policy.for_origin(key.origin), now)?;
    Ok(VerifiedToken {
        claims,
        key_origin: key.origin,
    })
}
