//! The token kit: auth.generate_jwk(), auth.public_jwk(), auth.sign_jwt(). For tests and
//! trusted server code; private keys never belong in tables clients can read.

use crate::errors::OrReport;
use pg_rls_auth_core::token_kit;
use pgrx::prelude::*;
use pgrx::JsonB;

/// A new private JWK (with a kid) for EdDSA, ES256, ES384, RS256..PS512; an oct JWK with a
/// random secret for HS256/384/512.
#[pg_extern(volatile, parallel_safe)]
fn generate_jwk(alg: default!(&str, "'EdDSA'")) -> JsonB {
    JsonB(token_kit::generate_jwk(alg).or_report())
}

/// The public half of a private JWK, for pg_rls_auth.jwks.
#[pg_extern(immutable, parallel_safe)]
fn public_jwk(private: JsonB) -> JsonB {
    JsonB(token_kit::public_jwk(&private.0).or_report())
}

/// Signs claims with a private JWK or an HMAC secret; alg defaults to the key's.
#[pg_extern(volatile, parallel_safe)]
fn sign_jwt(claims: JsonB, key: &str, alg: default!(Option<&str>, "NULL")) -> String {
    token_kit::sign_jwt(&claims.0, key, alg).or_report()
}
