//! Key sets: the keys an administrator configured (a JWK or JWKS, an HMAC secret) and, in
//! trusted-proxy mode, a key the proxy sent at connection start. Keys are checked once when
//! the setting is parsed, so a verification never meets a malformed key.

use crate::error::{AuthError, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// More keys than any real issuer publishes; bounds parse time and memory of a hostile JWKS.
pub const MAX_KEYS: usize = 100;
/// HS256 needs 256 bits of secret to be as strong as its hash (RFC 7518, 3.2).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted anywhere (keys, the token kit): real keys are 2048-4096
/// bits, and work grows with the cube of the size, so a bound keeps every operation short.
pub const MAX_RSA_BITS: usize = 4096;
/// Longest JWK or JWKS text parsed: 100 of the largest RSA keys fit several times over.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    P256,
    P384,
    Rsa,
    Hmac,
}

impl KeyType {
    /// The algorithm families a key of this type may verify: no RS/HS or curve confusion.
    pub fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyType::Ed25519, EdDSA)
                | (KeyType::P256, ES256)
                | (KeyType::P384, ES384)
                | (KeyType::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyType::Hmac, HS256 | HS384 | HS512)
        )
    }

    fn describe(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "an Ed25519 key",
            KeyType::P256 => "a P-256 key",
            KeyType::P384 => "a P-384 key",
            KeyType::Rsa => "an RSA key",
            KeyType::Hmac => "an HMAC secret",
        }
    }
}

/// Where a key came from; trusted-proxy keys carry the `jti` replay rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    Configured,
    HmacSecret,
    TrustedProxy,
}

pub struct Key {
    pub kid: Option<String>,
    pub alg: Option<Algorithm>,
    pub key_type: KeyType,
    pub origin: KeyOrigin,
    /// Set for keys of an OpenID Connect issuer: they verify only tokens it issued.
    pub issuer: Option<String>,
    can_verify: bool,
    decoding: DecodingKey,
}

impl Key {
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The algorithm a token without `alg` is verified with: the key's own, or the only one
    /// its type allows (RSA allows several, so an RSA key must name it).
    fn implied_alg(&self) -> Option<Algorithm> {
        self.alg.or(match self.key_type {
            KeyType::Ed25519 => Some(Algorithm::EdDSA),
            KeyType::P256 => Some(Algorithm::ES256),
            KeyType::P384 => Some(Algorithm::ES384),
            KeyType::Rsa | KeyType::Hmac => None,
        })
    }

    fn name(&self) -> String {
        match (&self.kid, self.origin) {
            (_, KeyOrigin::HmacSecret) => "pg_rls_auth.jwt_secret".to_string(),
            (Some(kid), _) => format!("key \"{}\"", printable(kid)),
            (None, _) => "the configured key".to_string(),
        }
    }
}

/// Parses a signature algorithm name as it appears in a JOSE header or a JWK.
pub fn parse_algorithm(name: &str) -> Result<Algorithm> {
    use Algorithm::*;
    Ok(match name {
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "EdDSA" => EdDSA,
        n if n.eq_ignore_ascii_case("none") => {
            return Err(AuthError::invalid_token(
                "algorithm \"none\" is not allowed",
            ))
        }
        n => {
            return Err(AuthError::invalid_token(format!(
                "algorithm \"{}\" is not supported",
                printable(n)
            )))
        }
    })
}

/// Shows attacker-controlled short strings (kid, alg) in messages only when they are short
/// printable ASCII, so messages stay readable and never carry a whole token.
pub fn printable(s: &str) -> String {
    if s.len() <= 64 && s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"') {
        s.to_string()
    } else {
        "(not shown)".to_string()
    }
}

/// A token header's `kid` as it came: Neon's proxy sends numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kid<'a> {
    Absent,
    Text(&'a str),
    /// A number, an object, ...: only a trusted proxy's key, which ignores it, accepts it.
    Other,
}

fn no_alg() -> AuthError {
    AuthError::invalid_token("the token header has no alg")
}

#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
    /// Issuers whose tokens only their own keys verify (`pg_rls_auth.oidc_issuers`), whether or
    /// not their keys have been fetched yet.
    reserved_issuers: Vec<String>,
}

impl KeySet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves `issuer`: a token whose `iss` names it verifies only with a key bound to it.
    pub fn reserve_issuer(&mut self, issuer: &str) {
        self.reserved_issuers.push(issuer.to_string());
    }

    /// Whether `issuer` is reserved to its own keys.
    pub fn reserves(&self, issuer: &str) -> bool {
        self.reserved_issuers.iter().any(|i| i == issuer)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Adds every key of a JWK or a JWKS. `setting` names the source in error messages.
    pub fn add_jwks(&mut self, json: &str, origin: KeyOrigin, setting: &str) -> Result<()> {
        self.add_jwks_bound(json, origin, setting, None)
    }

    /// `add_jwks`, with every key bound to `issuer` when one is given.
    pub(crate) fn add_jwks_bound(
        &mut self,
        json: &str,
        origin: KeyOrigin,
        setting: &str,
        issuer: Option<&str>,
    ) -> Result<()> {
        let bad = |what: String| AuthError::bad_config(format!("{setting}: {what}"));
        if json.len() > MAX_JWKS_BYTES {
            return Err(bad(format!(
                "{} bytes; at most {MAX_JWKS_BYTES} are accepted",
                json.len()
            )));
        }
        let value: Value =
            serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON ({e})")))?;
        let keys = match value {
            Value::Object(ref map) if map.contains_key("keys") => match map.get("keys") {
                Some(Value::Array(keys)) => keys.clone(),
                _ => return Err(bad("\"keys\" must be an array of JWKs".into())),
            },
            Value::Object(_) => vec![value],
            _ => return Err(bad("must be a JWK or a JWKS JSON object".into())),
        };
        if keys.is_empty() {
            return Err(bad("the JWKS has no keys".into()));
        }
        // Per document: bounds the parse; managed sources add up to MAX_SOURCES such sets.
        if keys.len() > MAX_KEYS {
            return Err(bad(format!(
                "{} keys given; at most {MAX_KEYS} are supported",
                keys.len()
            )));
        }
        for (i, raw) in keys.iter().enumerate() {
            let mut key = parse_jwk(raw, origin).map_err(|e| bad(format!("key {}: {e}", i + 1)))?;
            key.issuer = issuer.map(str::to_string);
            if let Some(kid) = &key.kid {
                if self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
                    return Err(bad(format!(
                        "key {}: kid \"{}\" is used twice",
                        i + 1,
                        printable(kid)
                    )));
                }
            }
            self.keys.push(key);
        }
        Ok(())
    }

    /// Adds the HMAC secret for HS256/384/512 (PostgREST's jwt-secret).
    pub fn add_hmac_secret(&mut self, secret: &str, is_base64: bool, setting: &str) -> Result<()> {
        let bytes = if is_base64 {
            STANDARD
                .decode(secret.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(secret.trim()))
                .map_err(|_| {
                    AuthError::bad_config(format!(
                        "{setting} is not valid base64 (pg_rls_auth.jwt_secret_is_base64 is on)"
                    ))
                })?
        } else {
            secret.as_bytes().to_vec()
        };
        if bytes.len() < MIN_HMAC_SECRET_BYTES {
            return Err(AuthError::bad_config(format!(
                "{setting} is {} bytes; at least {MIN_HMAC_SECRET_BYTES} are required",
                bytes.len()
            )));
        }
        self.keys.push(Key {
            kid: None,
            alg: None,
            key_type: KeyType::Hmac,
            origin: KeyOrigin::HmacSecret,
            issuer: None,
            can_verify: true,
            decoding: DecodingKey::from_secret(&bytes),
        });
        Ok(())
    }

    /// Picks the one key that may verify a token whose header says `alg` and `kid`, and the
    /// algorithm to verify it with.
    ///
    /// Configured keys are strict: the header must name the algorithm, and a `kid` must be a
    /// string naming a key (or be absent where one key fits). A trusted proxy's key follows
    /// pg_session_jwt's rules instead: it verifies a token whatever its `kid` (string, number or
    /// absent), and without `alg` the key's type decides; an `alg` that contradicts it is
    /// still refused.
    pub fn select(&self, alg: Option<Algorithm>, kid: Kid) -> Result<(&Key, Algorithm)> {
        let configured = || {
            self.keys
                .iter()
                .filter(|k| k.origin != KeyOrigin::TrustedProxy)
        };
        if let Kid::Text(kid) = kid {
            if let Some(key) = configured().find(|k| k.kid.as_deref() == Some(kid)) {
                let alg = alg.ok_or_else(no_alg)?;
                return check_usable(key, alg).map(|k| (k, alg));
            }
        }
        let mut proxy = self
            .keys
            .iter()
            .filter(|k| k.origin == KeyOrigin::TrustedProxy)
            .filter(|k| alg.is_none_or(|a| k.key_type.allows(a)));
        match (proxy.next(), proxy.next()) {
            (Some(key), None) => {
                let alg = match alg.or_else(|| key.implied_alg()) {
                    Some(alg) => alg,
                    None => {
                        return Err(AuthError::invalid_token(
                            "the token header has no alg, and the proxy's RSA key names none",
                        ))
                    }
                };
                return check_usable(key, alg).map(|k| (k, alg));
            }
            (Some(_), Some(_)) => {
                return Err(AuthError::invalid_token(
                    "several keys sent by the proxy could verify the token",
                ))
            }
            (None, _) => {}
        }
        let alg = alg.ok_or_else(no_alg)?;
        let kid = match kid {
            Kid::Absent => None,
            Kid::Text(kid) => Some(kid),
            Kid::Other => {
                return Err(AuthError::invalid_token(
                    "the token header's kid must be a string",
                ))
            }
        };
        if let Some(kid) = kid {
            // PostgREST-style HMAC secrets have no kid; HS tokens often carry one anyway.
            if let Some(secret) = self.hmac_secret().filter(|_| KeyType::Hmac.allows(alg)) {
                return Ok((secret, alg));
            }
            return Err(AuthError::unknown_key(format!(
                "unknown kid \"{}\": no configured key has it",
                printable(kid)
            )));
        }
        let mut candidates =
            configured().filter(|k| k.key_type.allows(alg) && k.alg.is_none_or(|a| a == alg));
        match (candidates.next(), candidates.next()) {
            (Some(key), None) => check_usable(key, alg).map(|k| (k, alg)),
            (None, _) => Err(AuthError::unknown_key(format!(
                "no configured key accepts algorithm {alg:?}"
            ))),
            (Some(_), Some(_)) => Err(AuthError::invalid_token(format!(
                "the token has no kid and several configured keys accept algorithm {alg:?}"
            ))),
        }
    }

    fn hmac_secret(&self) -> Option<&Key> {
        self.keys.iter().find(|k| k.origin == KeyOrigin::HmacSecret)
    }
}

fn check_usable(key: &Key, alg: Algorithm) -> Result<&Key> {
    if !key.key_type.allows(alg) {
        return Err(AuthError::invalid_token(format!(
            "algorithm {alg:?} is not allowed for {}, which is {}",
            key.name(),
            key.key_type.describe()
        )));
    }
    if let Some(key_alg) = key.alg.filter(|a| *a != alg) {
        return Err(AuthError::invalid_token(format!(
            "algorithm {alg:?} is not allowed for {}, which is for {key_alg:?}",
            key.name()
        )));
    }
    if !key.can_verify {
        return Err(AuthError::invalid_token(format!(
            "{} may not verify signatures (its \"use\" or \"key_ops\" forbid it)",
            key.name()
        )));
    }
    Ok(key)
}

/// The length of a big-endian number without its leading zero bytes.
pub fn significant_bytes(b: &[u8]) -> usize {
    b.len() - b.iter().take_while(|&&x| x == 0).count()
}

/// Refuses an RSA modulus over MAX_RSA_BITS or an exponent over 64 bits before any big-number
/// arithmetic runs on them.
pub fn check_rsa_size(n: &[u8], e: &[u8]) -> std::result::Result<(), String> {
    if significant_bytes(n) * 8 > MAX_RSA_BITS {
        return Err(format!(
            "RSA key is over {MAX_RSA_BITS} bits; at most {MAX_RSA_BITS} are supported"
        ));
    }
    if significant_bytes(e) > 8 {
        return Err("the RSA exponent \"e\" is over 64 bits".to_string());
    }
    Ok(())
}

fn b64_len(field: &str, value: &str) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| AuthError::bad_config(format!("\"{field}\" is not base64url")))
}

fn parse_jwk(raw: &Value, origin: KeyOrigin) -> Result<Key> {
    let obj = raw
        .as_object()
        .ok_or_else(|| AuthError::bad_config("not a JSON object"))?;
    let kty = obj.get("kty").and_then(Value::as_str).unwrap_or("");
    if kty == "oct" {
        return Err(AuthError::bad_config(
            "symmetric (oct) keys are not accepted here, where every role can read them; \
             put an HMAC secret in pg_rls_auth.jwt_secret",
        ));
    }
    if obj.contains_key("d") {
        return Err(AuthError::bad_config(
            "contains private key material (\"d\"); configure only the public key, e.g. auth.public_jwk(...)",
        ));
    }
    let text_field = |name: &str| -> Result<Option<&str>> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(AuthError::bad_config(format!(
                "\"{name}\" must be a string"
            ))),
        }
    };
    let kid = text_field("kid")?.map(str::to_owned);
    let alg = text_field("alg")?
        .map(|a| parse_algorithm(a).map_err(|e| AuthError::bad_config(e.message)))
        .transpose()?;
    let use_ok = text_field("use")?.is_none_or(|u| u == "sig");
    let ops_ok = match obj.get("key_ops") {
        None => true,
        Some(Value::Array(ops)) => ops.iter().any(|op| op.as_str() == Some("verify")),
        Some(_) => return Err(AuthError::bad_config("\"key_ops\" must be an array")),
    };
    // Only the public members matter to jsonwebtoken; unknown members are ignored.
    let jwk: Jwk = serde_json::from_value(raw.clone())
        .map_err(|e| AuthError::bad_config(format!("not a supported JWK ({e})")))?;
    let key_type = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err(AuthError::bad_config(
                    "only the Ed25519 curve is supported for OKP keys",
                ));
            }
            if b64_len("x", &p.x)?.len() != 32 {
                return Err(AuthError::bad_config("an Ed25519 \"x\" must be 32 bytes"));
            }
            ed25519_dalek::VerifyingKey::from_bytes(
                b64_len("x", &p.x)?
                    .as_slice()
                    .try_into()
                    .expect("length checked"),
            )
            .map_err(|_| AuthError::bad_config("\"x\" is not an Ed25519 public key"))?;
            KeyType::Ed25519
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (x, y) = (b64_len("x", &p.x)?, b64_len("y", &p.y)?);
            let mut sec1 = vec![4u8];
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            match p.curve {
                EllipticCurve::P256 if x.len() == 32 && y.len() == 32 => {
                    p256::PublicKey::from_sec1_bytes(&sec1)
                        .map_err(|_| AuthError::bad_config("not a point on P-256"))?;
                    KeyType::P256
                }
                EllipticCurve::P384 if x.len() == 48 && y.len() == 48 => {
                    p384::PublicKey::from_sec1_bytes(&sec1)
                        .map_err(|_| AuthError::bad_config("not a point on P-384"))?;
                    KeyType::P384
                }
                EllipticCurve::P256 | EllipticCurve::P384 => {
                    return Err(AuthError::bad_config(
                        "\"x\"/\"y\" have the wrong length for the curve",
                    ))
                }
                _ => {
                    return Err(AuthError::bad_config(
                        "only the P-256 and P-384 curves are supported",
                    ))
                }
            }
        }
        AlgorithmParameters::RSA(p) => {
            let n = b64_len("n", &p.n)?;
            let e = b64_len("e", &p.e)?;
            check_rsa_size(&n, &e).map_err(AuthError::bad_config)?;
            let public = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|e| AuthError::bad_config(format!("not a usable RSA public key ({e})")))?;
            let bits = rsa::traits::PublicKeyParts::n(&public).bits();
            if bits < MIN_RSA_BITS {
                return Err(AuthError::bad_config(format!(
                    "RSA key is {bits} bits; at least {MIN_RSA_BITS} are required"
                )));
            }
            KeyType::Rsa
        }
        _ => {
            return Err(AuthError::bad_config(format!(
                "key type \"{}\" is not supported (use OKP/Ed25519, EC P-256/P-384 or RSA)",
                printable(kty)
            )))
        }
    };
    if let Some(alg) = alg.filter(|a| !key_type.allows(*a)) {
        return Err(AuthError::bad_config(format!(
            "\"alg\" {alg:?} does not fit {}",
            key_type.describe()
        )));
    }
    let decoding = DecodingKey::from_jwk(&jwk)
        .map_err(|e| AuthError::bad_config(format!("not a usable key ({e})")))?;
    Ok(Key {
        kid,
        alg,
        key_type,
        origin,
        issuer: None,
        can_verify: use_ok && ops_ok,
        decoding,
    })
}
