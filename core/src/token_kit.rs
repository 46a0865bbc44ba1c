//! The token kit for tests and trusted server code: make a key pair, publish its public half,
//! sign a token. Signing needs the private key, so it grants nothing a caller did not have.

use crate::error::{AuthError, Result};
use crate::keys::{parse_algorithm, printable, significant_bytes};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::{json, Map, Value};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn random_kid() -> String {
    let mut id = [0u8; 8];
    OsRng.fill_bytes(&mut id);
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new private JWK for `alg` (EdDSA, ES256, ES384, RS256..PS512) or, for HS256/384/512, an
/// `oct` JWK holding a random secret.
pub fn generate_jwk(alg: &str) -> Result<Value> {
    let algorithm = parse_algorithm(alg).map_err(|e| AuthError::invalid_argument(e.message))?;
    let kid = random_kid();
    let mut jwk = match algorithm {
        Algorithm::EdDSA => {
            let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
            json!({"kty": "OKP", "crv": "Ed25519",
                   "x": b64(key.verifying_key().as_bytes()), "d": b64(&key.to_bytes())})
        }
        Algorithm::ES256 => {
            let key = p256::SecretKey::random(&mut OsRng);
            let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &key.public_key(),
                false,
            );
            json!({"kty": "EC", "crv": "P-256", "x": b64(point.x().expect("uncompressed")),
                   "y": b64(point.y().expect("uncompressed")), "d": b64(&key.to_bytes())})
        }
        Algorithm::ES384 => {
            let key = p384::SecretKey::random(&mut OsRng);
            let point = p384::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &key.public_key(),
                false,
            );
            json!({"kty": "EC", "crv": "P-384", "x": b64(point.x().expect("uncompressed")),
                   "y": b64(point.y().expect("uncompressed")), "d": b64(&key.to_bytes())})
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            use rsa::traits::{PrivateKeyParts, PublicKeyParts};
            let key = rsa::RsaPrivateKey::new(&mut OsRng, 2048).map_err(|e| {
                AuthError::invalid_argument(format!("RSA key generation failed ({e})"))
            })?;
            let primes = key.primes();
            json!({"kty": "RSA", "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
                   "d": b64(&key.d().to_bytes_be()), "p": b64(&primes[0].to_bytes_be()),
                   "q": b64(&primes[1].to_bytes_be())})
        }
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let mut secret = vec![0u8; hmac_secret_len(algorithm)];
            OsRng.fill_bytes(&mut secret);
            json!({"kty": "oct", "k": b64(&secret)})
        }
        other => {
            return Err(AuthError::invalid_argument(format!(
                "algorithm {other:?} is not supported"
            )))
        }
    };
    let obj = jwk.as_object_mut().expect("built as an object");
    obj.insert("alg".into(), Value::from(alg));
    obj.insert("kid".into(), Value::from(kid));
    obj.insert("use".into(), Value::from("sig"));
    Ok(jwk)
}

/// Longest key text `sign_jwt` parses: a private 4096-bit RSA JWK is about 3 kB.
pub const MAX_KEY_TEXT_BYTES: usize = 64 * 1024;

fn hmac_secret_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

const PUBLIC_MEMBERS: &[&str] = &["kty", "crv", "x", "y", "n", "e", "alg", "kid", "use"];

/// The public half of a private JWK, ready for `pg_rls_auth.jwks`.
pub fn public_jwk(private: &Value) -> Result<Value> {
    let obj = private
        .as_object()
        .ok_or_else(|| AuthError::invalid_argument("the key must be a JWK object"))?;
    if obj.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err(AuthError::invalid_argument(
            "a symmetric (oct) key has no public half; configure its \"k\" as pg_rls_auth.jwt_secret",
        ));
    }
    let public: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| PUBLIC_MEMBERS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let public = Value::Object(public);
    // Only a key pg_rls_auth.jwks would accept is worth returning.
    crate::KeySet::new()
        .add_jwks(
            &public.to_string(),
            crate::keys::KeyOrigin::Configured,
            "the public half",
        )
        .map_err(|e| AuthError::invalid_argument(e.message))?;
    Ok(public)
}

fn member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| AuthError::invalid_argument(format!("the private JWK has no \"{name}\"")))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| AuthError::invalid_argument(format!("the JWK's \"{name}\" is not base64url")))
}

/// Signs `claims` with `key`: a private JWK (JSON) or, as text, an HMAC secret. `alg` defaults
/// to the JWK's `alg` (HS256 for a plain secret).
pub fn sign_jwt(claims: &Value, key: &str, alg: Option<&str>) -> Result<String> {
    if !claims.is_object() {
        return Err(AuthError::invalid_argument("claims must be a JSON object"));
    }
    if key.len() > MAX_KEY_TEXT_BYTES {
        return Err(AuthError::invalid_argument(format!(
            "the key is {} bytes; at most {MAX_KEY_TEXT_BYTES} are accepted",
            key.len()
        )));
    }
    let jwk: Option<Map<String, Value>> = match serde_json::from_str::<Value>(key) {
        Ok(Value::Object(map)) if map.contains_key("kty") => Some(map),
        _ => None,
    };
    let alg_name = match (alg, &jwk) {
        (Some(a), _) => a.to_string(),
        (None, Some(j)) => j
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::invalid_argument("the JWK has no \"alg\"; pass alg"))?
            .to_string(),
        (None, None) => "HS256".to_string(),
    };
    let algorithm =
        parse_algorithm(&alg_name).map_err(|e| AuthError::invalid_argument(e.message))?;
    let mut header = json!({"alg": alg_name, "typ": "JWT"});
    if let Some(kid) = jwk
        .as_ref()
        .and_then(|j| j.get("kid"))
        .and_then(Value::as_str)
    {
        header["kid"] = Value::from(kid);
    }
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = match &jwk {
        Some(j) => sign_with_jwk(j, algorithm, signing_input.as_bytes())?,
        None => sign_hmac(key.as_bytes(), algorithm, signing_input.as_bytes())?,
    };
    Ok(format!("{signing_input}.{}", b64(&signature)))
}

fn sign_hmac(secret: &[u8], alg: Algorithm, msg: &[u8]) -> Result<Vec<u8>> {
    use hmac::{Hmac, Mac};
    macro_rules! mac {
        ($digest:ty) => {{
            let mut m = Hmac::<$digest>::new_from_slice(secret).expect("HMAC takes any key length");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }};
    }
    Ok(match alg {
        Algorithm::HS256 => mac!(sha2::Sha256),
        Algorithm::HS384 => mac!(sha2::Sha384),
        Algorithm::HS512 => mac!(sha2::Sha512),
        other => {
            return Err(AuthError::invalid_argument(format!(
                "algorithm {other:?} needs a private JWK, not a secret"
            )))
        }
    })
}

fn sign_with_jwk(jwk: &Map<String, Value>, alg: Algorithm, msg: &[u8]) -> Result<Vec<u8>> {
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or("");
    let mismatch = || {
        AuthError::invalid_argument(format!(
            "algorithm {alg:?} does not fit a \"{}\" key",
            printable(kty)
        ))
    };
    let bad_key = |what: &str| {
        AuthError::invalid_argument(format!("the private JWK is not a valid {what} key"))
    };
    match (kty, alg) {
        ("oct", _) => sign_hmac(&member(jwk, "k")?, alg, msg),
        ("OKP", Algorithm::EdDSA) => {
            use ed25519_dalek::Signer;
            let d: [u8; 32] = member(jwk, "d")?
                .try_into()
                .map_err(|_| bad_key("Ed25519"))?;
            Ok(ed25519_dalek::SigningKey::from_bytes(&d)
                .sign(msg)
                .to_bytes()
                .to_vec())
        }
        ("EC", Algorithm::ES256) => {
            use p256::ecdsa::signature::Signer;
            let key = p256::ecdsa::SigningKey::from_slice(&member(jwk, "d")?)
                .map_err(|_| bad_key("P-256"))?;
            let sig: p256::ecdsa::Signature = key.sign(msg);
            Ok(sig.to_bytes().to_vec())
        }
        ("EC", Algorithm::ES384) => {
            use p384::ecdsa::signature::Signer;
            let key = p384::ecdsa::SigningKey::from_slice(&member(jwk, "d")?)
                .map_err(|_| bad_key("P-384"))?;
            let sig: p384::ecdsa::Signature = key.sign(msg);
            Ok(sig.to_bytes().to_vec())
        }
        ("RSA", _) => sign_rsa(jwk, alg, msg).map_err(|e| match e {
            Some(e) => e,
            None => mismatch(),
        }),
        _ => Err(mismatch()),
    }
}

fn sign_rsa(
    jwk: &Map<String, Value>,
    alg: Algorithm,
    msg: &[u8],
) -> std::result::Result<Vec<u8>, Option<AuthError>> {
    use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
    use rsa::BigUint;
    let (n, e) = (
        member(jwk, "n").map_err(Some)?,
        member(jwk, "e").map_err(Some)?,
    );
    crate::keys::check_rsa_size(&n, &e).map_err(|m| Some(AuthError::invalid_argument(m)))?;
    // No private component is longer than the modulus; bound them before any arithmetic.
    let num = |name: &str| {
        let bytes = member(jwk, name).map_err(Some)?;
        if significant_bytes(&bytes) > significant_bytes(&n) {
            return Err(Some(AuthError::invalid_argument(format!(
                "the JWK's \"{name}\" is longer than its modulus"
            ))));
        }
        Ok(BigUint::from_bytes_be(&bytes))
    };
    let key = rsa::RsaPrivateKey::from_components(
        BigUint::from_bytes_be(&n),
        BigUint::from_bytes_be(&e),
        num("d")?,
        vec![num("p")?, num("q")?],
    )
    .map_err(|_| {
        Some(AuthError::invalid_argument(
            "the private JWK is not a valid RSA key",
        ))
    })?;
    let mut rng = OsRng;
    Ok(match alg {
        Algorithm::RS256 => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)
            .sign(msg)
            .to_vec(),
        Algorithm::RS384 => rsa::pkcs1v15::SigningKey::<sha2::Sha384>::new(key)
            .sign(msg)
            .to_vec(),
        Algorithm::RS512 => rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(key)
            .sign(msg)
            .to_vec(),
        Algorithm::PS256 => rsa::pss::SigningKey::<sha2::Sha256>::new(key)
            .sign_with_rng(&mut rng, msg)
            .to_vec(),
        Algorithm::PS384 => rsa::pss::SigningKey::<sha2::Sha384>::new(key)
            .sign_with_rng(&mut rng, msg)
            .to_vec(),
        Algorithm::PS512 => rsa::pss::SigningKey::<sha2::Sha512>::new(key)
            .sign_with_rng(&mut rng, msg)
            .to_vec(),
        _ => return Err(None),
    })
}
