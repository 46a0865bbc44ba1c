//! The token kit: auth.generate_jwk(), auth.public_jwk(), auth.sign_jwt(). For tests and
//! trusted server code; private keys never belong in tables clients can read.

use crate::errors::OrReport;
use crate::fmgr::{Answer, Datum, Jsonb, Text};
use crate::sql_function;
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
fn public_jwk(private: Option<JsonB>) -> Answer<Jsonb> {
    let Some(private) = private else {
        return Ok(None);
    };
    Ok(Some(Datum::from_json(token_kit::public_jwk(&private.0)?)))
}
sql_function! {
    symbol = auth_public_jwk, finfo = pg_finfo_auth_public_jwk, name = "auth_public_jwk",
    body = public_jwk(private: Jsonb) -> Jsonb,
    hide_statement = true,
    sql = r#"
CREATE FUNCTION auth.public_jwk(private jsonb) RETURNS jsonb
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_public_jwk';
COMMENT ON FUNCTION auth.public_jwk(jsonb) IS 'The public half of a private JWK, for pg_rls_auth.jwks';
"#,
}

/// Signs claims with a private JWK or an HMAC secret; alg defaults to the key's.
fn sign_jwt(claims: Option<JsonB>, key: Option<&str>, alg: Option<&str>) -> Answer<Text> {
    let (Some(claims), Some(key)) = (claims, key) else {
        return Ok(None);
    };
    // Key sizes are bounded (a few hundred ms at most for the largest RSA key); a statement
    // cancelled before that starts is honoured here.
    pgrx::check_for_interrupts!();
    Datum::text(&token_kit::sign_jwt(&claims.0, key, alg)?).map(Some)
}
sql_function! {
    symbol = auth_sign_jwt, finfo = pg_finfo_auth_sign_jwt, name = "auth_sign_jwt",
    body = sign_jwt(claims: Jsonb, key: Text, alg: Text) -> Text,
    hide_statement = true,
    sql = r#"
CREATE FUNCTION auth.sign_jwt(claims jsonb, key text, alg text DEFAULT NULL) RETURNS text
    LANGUAGE c VOLATILE PARALLEL SAFE AS 'MODULE_PATHNAME', 'auth_sign_jwt';
COMMENT ON FUNCTION auth.sign_jwt(jsonb, text, text) IS
    'Signs claims with a private JWK or an HMAC secret (for tests and trusted server code)';
"#,
}
