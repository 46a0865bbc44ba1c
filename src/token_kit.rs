//! The token kit: auth.generate_jwk(), auth.public_jwk(), auth.sign_jwt(). For tests and
//! trusted server code; private keys never belong in tables clients can read.

use crate::errors::{OrReport, Raise};
use crate::fmgr::{arg, text_arg, text_datum};
use crate::v1_function;
use pg_rls_auth_core::token_kit;
use pgrx::prelude::*;
use pgrx::JsonB;

/// A new private JWK (with a kid) for EdDSA, ES256, ES384, RS256..PS512; an oct JWK with a
/// random secret for HS256/384/512.
#[pg_extern(volatile, parallel_safe)]
fn generate_jwk(alg: default!(&str, "'EdDSA'")) -> JsonB {
    pgrx::check_for_interrupts!();
    JsonB(token_kit::generate_jwk(alg).or_report())
}

// public_jwk and sign_jwt take a private key or secret as an argument: when they fail, the
// statement (which carries it) stays out of the server log.

/// The public half of a private JWK, for pg_rls_auth.jwks.
///
/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread, with a valid `fcinfo` for `auth.public_jwk(private jsonb)`.
unsafe fn public_jwk(fcinfo: pg_sys::FunctionCallInfo) -> Result<Option<pg_sys::Datum>, Raise> {
    // SAFETY: valid `fcinfo` whose argument 0 is jsonb (caller's obligation, per the SQL
    // declaration below). JsonB's conversion (detoast, jsonb_out) uses guarded calls: an ERROR
    // there is a panic for the guard, and nothing needing drop is live yet.
    let Some(private) = (unsafe { arg::<JsonB>(fcinfo, 0) }) else {
        return Ok(None);
    };
    Ok(JsonB(token_kit::public_jwk(&private.0)?).into_datum())
}
v1_function!(
    auth_public_jwk,
    pg_finfo_auth_public_jwk,
    public_jwk,
    hide_statement = true
);

/// Signs claims with a private JWK or an HMAC secret; alg defaults to the key's.
///
/// # Safety
/// A `fmgr::Body`: called only through `fmgr::call`, inside its pgrx guard, on the main
/// thread, with a valid `fcinfo` for `auth.sign_jwt(claims jsonb, key text, alg text)`.
unsafe fn sign_jwt(fcinfo: pg_sys::FunctionCallInfo) -> Result<Option<pg_sys::Datum>, Raise> {
    // SAFETY: valid `fcinfo` whose arguments 0 and 1 are jsonb and text (caller's obligation,
    // per the SQL declaration below); `key` is used only during this call. A conversion ERROR
    // is a panic (guarded calls) that unwinds, dropping `claims` if already built.
    let (Some(claims), Some(key)) = (unsafe { arg::<JsonB>(fcinfo, 0) }, unsafe {
        text_arg(fcinfo, 1)
    }) else {
        return Ok(None);
    };
    // SAFETY: as above; argument 2 is text (NULL by default).
    let alg = unsafe { text_arg(fcinfo, 2) };
    // Key sizes are bounded (a few hundred ms at most for the largest RSA key); a statement
    // cancelled before that starts is honoured here.
    pgrx::check_for_interrupts!();
    text_datum(&token_kit::sign_jwt(&claims.0, key, alg)?).map(Some)
}
v1_function!(
    auth_sign_jwt,
    pg_finfo_auth_sign_jwt,
    sign_jwt,
    hide_statement = true
);

pgrx::extension_sql!(
    r#"
CREATE FUNCTION auth.public_jwk(private jsonb) RETURNS jsonb
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_public_jwk';
COMMENT ON FUNCTION auth.public_jwk(jsonb) IS 'The public half of a private JWK, for pg_rls_auth.jwks';
CREATE FUNCTION auth.sign_jwt(claims jsonb, key text, alg text DEFAULT NULL) RETURNS text
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_sign_jwt';
COMMENT ON FUNCTION auth.sign_jwt(jsonb, text, text) IS
    'Signs claims with a private JWK or an HMAC secret (for tests and trusted server code)';
"#,
    name = "token_kit",
);
