//! The core's hostile tokens, at the server: each raises SQLSTATE 28000 from
//! auth.jwt_session_init and leaves no session behind (the verified session before it is gone).

use pg_rls_auth_it::*;

#[path = "../../core/tests/common/hostile_tokens.rs"]
#[allow(dead_code)]
mod common;

#[test]
fn hostile_tokens_raise_28000_and_leave_no_session() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    let private = pg_rls_auth_core::token_kit::generate_jwk("EdDSA").unwrap();
    let public = pg_rls_auth_core::token_kit::public_jwk(&private).unwrap();
    cluster.set_system("pg_rls_auth.jwks", &public.to_string());
    let (good, cases) = common::hostile_tokens(&private, now());
    let mut alice = cluster.connect("alice", "app", "");
    let mut checked = 0;
    for (name, token) in &cases {
        if token.contains('\0') {
            continue; // a text value cannot hold a NUL byte: PostgreSQL refuses it before us
        }
        init(&mut alice, &good, false).unwrap();
        assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));
        let err = init(&mut alice, token, false).unwrap_err();
        assert_eq!(
            sqlstate(&err).as_deref(),
            Some("28000"),
            "{name}: {}",
            describe(&err)
        );
        assert!(
            token.len() < 16 || !describe(&err).contains(&token[..16]),
            "{name}: the token is echoed"
        );
        assert_eq!(user_id(&mut alice), None, "{name}: a session remains");
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} hostile tokens");
}
