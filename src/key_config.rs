//! Where keys are loaded: every key and claim check the settings name (`pg_rls_auth.jwks`, the
//! HMAC secret or its file, a trusted proxy's key, issuer, audience, leeway, ...), read and
//! parsed into one `Config` per configuration change. Anything present but unreadable is an
//! error kept in the `Config`, so every auth.* call fails closed with it.

use crate::guc;
use crate::secret_file;
use pg_rls_auth_core::claims::parse_audiences;
use pg_rls_auth_core::keys::KeyOrigin;
use pg_rls_auth_core::session_rules::{KeySources, SessionMode};
use pg_rls_auth_core::{AuthError, KeySet, VerifyPolicy};

/// Everything the verification settings say, parsed once per change.
pub struct Config {
    pub generation: u64,
    /// The managed keys' shared version the keys were read at, when sources are configured.
    pub managed_version: Option<u64>,
    pub keys: Result<KeySet, AuthError>,
    pub mode: SessionMode,
    pub policy: VerifyPolicy,
    /// The secret file as it was read, to notice a replaced file at the next verification.
    pub secret_file: Option<secret_file::Stamp>,
}

/// Every key the settings name, with the claim checks: an error when any of them cannot be
/// read, parsed or trusted.
fn load_verifier(
    compatible: bool,
) -> Result<(KeySet, VerifyPolicy, Option<secret_file::Stamp>), AuthError> {
    let mut keys = KeySet::new();
    if let Some(jwks) = guc::string_value(&guc::JWKS, "pg_rls_auth.jwks")? {
        keys.add_jwks(jwks, KeyOrigin::Configured, "pg_rls_auth.jwks")?;
    }
    crate::managed_keys::add_keys(&mut keys)?;
    let secret = guc::string_value(&guc::JWT_SECRET, "pg_rls_auth.jwt_secret")?;
    let secret_path = guc::string_value(&guc::JWT_SECRET_FILE, "pg_rls_auth.jwt_secret_file")?;
    let mut stamp = None;
    match (secret, secret_path) {
        (Some(_), Some(_)) => {
            return Err(AuthError::bad_config(
                "pg_rls_auth.jwt_secret and pg_rls_auth.jwt_secret_file are both set; set one",
            ))
        }
        (Some(secret), None) => keys.add_hmac_secret(
            secret,
            guc::JWT_SECRET_IS_BASE64.get(),
            "pg_rls_auth.jwt_secret",
        )?,
        (None, Some(path)) => {
            let (secret, file_stamp) = secret_file::read(path)?;
            keys.add_hmac_secret(
                &secret,
                guc::JWT_SECRET_IS_BASE64.get(),
                "pg_rls_auth.jwt_secret_file",
            )?;
            stamp = Some(file_stamp);
        }
        (None, None) => {}
    }
    if guc::TRUSTED_PROXY.get() {
        for (setting, name) in [
            (&guc::SESSION_JWK, "pg_rls_auth.session_jwk"),
            (&guc::NEON_SESSION_JWK, "pg_session_jwt.jwk"),
        ] {
            if let Some(jwk) = guc::string_value(setting, name)? {
                keys.add_jwks(jwk, KeyOrigin::TrustedProxy, name)?;
            }
        }
    }
    let audiences = guc::string_value(&guc::AUDIENCE, "pg_rls_auth.audience")?
        .map(parse_audiences)
        .unwrap_or_default();
    let policy = VerifyPolicy {
        max_token_bytes: guc::MAX_TOKEN_BYTES.get() as usize,
        leeway_secs: i64::from(guc::LEEWAY.get()),
        require_exp: guc::REQUIRE_EXP.get(),
        issuer: guc::string_value(&guc::ISSUER, "pg_rls_auth.issuer")?.map(String::from),
        audiences,
        proxy_exp_optional: compatible,
    };
    Ok((keys, policy, stamp))
}

/// The settings' presence, before anything is parsed (see `KeySources`).
fn key_sources() -> KeySources {
    KeySources {
        configured: guc::bytes_value(&guc::JWKS).is_some()
            || guc::bytes_value(&guc::JWT_SECRET).is_some()
            || guc::bytes_value(&guc::JWT_SECRET_FILE).is_some()
            || crate::managed_keys::configured(),
        trusted_proxy: guc::TRUSTED_PROXY.get(),
        proxy_key_sent: guc::bytes_value(&guc::SESSION_JWK).is_some()
            || guc::bytes_value(&guc::NEON_SESSION_JWK).is_some(),
        trust_request_claims: guc::TRUST_REQUEST_CLAIMS.get(),
        trust_request_claims_explicit: guc::explicitly_set(c"pg_rls_auth.trust_request_claims"),
    }
}

pub fn load(generation: u64) -> Config {
    let mode = key_sources().mode();
    // Read before the keys: a change while they load makes the next use load again.
    let managed_version = crate::managed_keys::configured()
        .then(crate::managed_keys::version)
        .flatten();
    let (keys, policy, secret_file) = match load_verifier(mode.pg_session_jwt) {
        Ok((keys, policy, stamp)) => (Ok(keys), policy, stamp),
        Err(e) => (Err(e), VerifyPolicy::default(), None),
    };
    Config {
        generation,
        managed_version,
        keys,
        mode,
        policy,
        secret_file,
    }
}

pub fn no_key() -> AuthError {
    AuthError::not_configured(
        "no key is configured: set pg_rls_auth.jwks or pg_rls_auth.jwt_secret_file",
    )
}
