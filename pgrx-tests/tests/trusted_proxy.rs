//! Trusted-proxy mode: a JWK sent in the startup packet (`-c pg_rls_auth.session_jwk=…` or
//! Neon's `-c pg_session_jwt.jwk=…`) verifies tokens for that backend only when the
//! administrator turned `pg_rls_auth.trusted_proxy` on; such tokens need a strictly increasing
//! integer `jti`. The key is accepted only from the startup packet.

use pg_rls_auth_it::serde_json::json;
use pg_rls_auth_it::*;

const NAMES: [&str; 2] = ["pg_rls_auth.session_jwk", "pg_session_jwt.jwk"];

fn jwk_option(name: &str, key: &Key) -> String {
    format!("-c {name}={}", key.public)
}

#[test]
fn connection_key_is_ignored_while_proxy_mode_is_off() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    let proxy = Key::new();
    let token = proxy.token(json!({"sub": "alice", "jti": 1}));
    for name in NAMES {
        // The parameter itself is accepted (it is the startup packet), and then ignored.
        let mut alice = cluster.connect("alice", "app", &jwk_option(name, &proxy));
        let sent: String = alice
            .query_one(&format!("SHOW {name}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(sent, proxy.public);
        // No key configured at all: the connection's key does not count, so there is nothing
        // to verify with (55000), not a bad token.
        assert_eq!(err_code(init(&mut alice, &token, false)), "55000", "{name}");
        assert_eq!(user_id(&mut alice), None);
    }
    // Once a key is configured, the proxy's token is signed by an unknown key: 28000.
    let configured = Key::new();
    cluster.set_system("pg_rls_auth.jwks", &configured.public);
    for name in NAMES {
        let mut alice = cluster.connect("alice", "app", &jwk_option(name, &proxy));
        assert_eq!(err_code(init(&mut alice, &token, false)), "28000", "{name}");
        assert_eq!(user_id(&mut alice), None);
        init(&mut alice, &configured.token_for("alice"), false).unwrap();
        assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));
    }
}

#[test]
fn connection_key_verifies_with_increasing_jti_when_proxy_mode_is_on() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice", "bob"]);
    cluster.set_system("pg_rls_auth.trusted_proxy", "on");
    let proxy = Key::new();
    let tok = |sub: &str, jti: i64| proxy.token(json!({"sub": sub, "jti": jti}));
    for name in NAMES {
        let mut alice = cluster.connect("alice", "app", &jwk_option(name, &proxy));
        init(&mut alice, &tok("alice", 5), false).unwrap();
        assert_eq!(user_id(&mut alice).as_deref(), Some("alice"), "{name}");
        // The same jti again (the very same token too) and a lower one are replays.
        assert_eq!(err_code(init(&mut alice, &tok("alice", 5), false)), "28000");
        assert_eq!(user_id(&mut alice), None, "a refused init ends the session");
        init(&mut alice, &tok("alice", 6), false).unwrap();
        assert_eq!(err_code(init(&mut alice, &tok("alice", 6), false)), "28000");
        assert_eq!(err_code(init(&mut alice, &tok("alice", 4), false)), "28000");
        // A token without jti, or with a non-integer one, fails.
        for claims in [
            json!({"sub": "alice"}),
            json!({"sub": "alice", "jti": "7"}),
            json!({"sub": "alice", "jti": 7.5}),
        ] {
            assert_eq!(
                err_code(init(&mut alice, &proxy.token(claims.clone()), false)),
                "28000",
                "{claims}"
            );
            assert_eq!(user_id(&mut alice), None);
        }
        init(&mut alice, &tok("bob", 100), false).unwrap();
        assert_eq!(user_id(&mut alice).as_deref(), Some("bob"));
        // The key is this backend's: another connection without it has nothing to verify with,
        // and one with another proxy key refuses this key's tokens.
        let mut plain = cluster.connect("bob", "app", "");
        assert_eq!(err_code(init(&mut plain, &tok("bob", 101), false)), "55000");
        let other = Key::new();
        let mut other_conn = cluster.connect("bob", "app", &jwk_option(name, &other));
        assert_eq!(
            err_code(init(&mut other_conn, &tok("bob", 102), false)),
            "28000"
        );
        // A new backend starts its own jti sequence.
        let mut again = cluster.connect("alice", "app", &jwk_option(name, &proxy));
        init(&mut again, &tok("alice", 1), false).unwrap();
        assert_eq!(user_id(&mut again).as_deref(), Some("alice"));
    }
    // Tokens of the configured key need no jti, next to a proxy key.
    let configured = Key::new();
    cluster.set_system("pg_rls_auth.jwks", &configured.public);
    let mut alice = cluster.connect("alice", "app", &jwk_option(NAMES[0], &proxy));
    init(&mut alice, &configured.token_for("carol"), false).unwrap();
    init(&mut alice, &configured.token_for("carol"), false).unwrap();
    assert_eq!(user_id(&mut alice).as_deref(), Some("carol"));
    init(&mut alice, &tok("alice", 1), false).unwrap();
    assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));
    // A malformed or private connection key fails closed (22023), it is not skipped.
    let private = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#;
    for bad in ["not-json", private] {
        let mut conn = cluster.connect("alice", "app", &format!("-c {}={bad}", NAMES[0]));
        assert_eq!(
            err_code(init(&mut conn, &tok("alice", 1), false)),
            "22023",
            "{bad}"
        );
        assert_eq!(
            err_code(conn.query_one("SELECT auth.user_id()", &[])),
            "22023",
            "{bad}"
        );
    }
}

#[test]
fn proxy_mode_can_be_enabled_for_the_proxy_role_only() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice", "proxy"]);
    cluster.sql("app", "ALTER ROLE proxy SET pg_rls_auth.trusted_proxy = on");
    let key = Key::new();
    let token = key.token(json!({"sub": "alice", "jti": 1}));
    let mut via_proxy = cluster.connect("proxy", "app", &jwk_option(NAMES[1], &key));
    init(&mut via_proxy, &token, false).unwrap();
    assert_eq!(user_id(&mut via_proxy).as_deref(), Some("alice"));
    // alice connecting directly with her own key gets nothing from it, and cannot turn the
    // mode on for herself.
    let mut alice = cluster.connect("alice", "app", &jwk_option(NAMES[1], &key));
    assert_eq!(err_code(init(&mut alice, &token, false)), "55000");
    let options = format!(
        "{} -c pg_rls_auth.trusted_proxy=on",
        jwk_option(NAMES[1], &key)
    );
    match cluster.try_connect("alice", "app", &options) {
        Ok(_) => panic!("alice turned trusted_proxy on in her startup packet"),
        Err(e) => assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}"),
    }
}

#[test]
fn session_jwk_is_accepted_only_from_the_startup_packet() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    cluster.set_system("pg_rls_auth.trusted_proxy", "on");
    let key = Key::new();
    let mut admin = cluster.superuser("app");
    for name in NAMES {
        let value = quote(&key.public);
        // Even a superuser cannot store it where someone other than the proxy put it: the
        // setting is fixed at connection start (PGC_BACKEND), 55P02.
        for sql in [
            format!("ALTER ROLE alice SET {name} = {value}"),
            format!("ALTER DATABASE app SET {name} = {value}"),
            format!("SET {name} = {value}"),
        ] {
            assert_eq!(err_code(admin.batch_execute(&sql)), "55P02", "{sql}");
        }
        // ALTER SYSTEM is refused by the setting's check (22023, "invalid value").
        let sql = format!("ALTER SYSTEM SET {name} = {value}");
        assert_eq!(err_code(admin.batch_execute(&sql)), "22023", "{sql}");
        let mut alice = cluster.connect("alice", "app", "");
        assert_eq!(
            err_code(alice.batch_execute(&format!("SET {name} = {value}"))),
            "55P02"
        );
        let shown: String = alice
            .query_one(&format!("SHOW {name}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(shown, "", "{name} took a value from somewhere else");
        let token = key.token(json!({"sub": "alice", "jti": 1}));
        assert_eq!(err_code(init(&mut alice, &token, false)), "55000");
    }
    let auto_conf: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_file_settings WHERE name IN ('pg_rls_auth.session_jwk', 'pg_session_jwt.jwk')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(auto_conf, 0);
}

#[test]
fn proxy_mode_without_a_key_never_trusts_request_claims() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    cluster.set_system("pg_rls_auth.trusted_proxy", "on");
    // No key configured and none sent: the claims any client can SET are still not trusted,
    // and init says no key is there (55000).
    let mut alice = cluster.connect("alice", "app", "");
    alice
        .batch_execute(r#"SET request.jwt.claims = '{"sub":"mallory"}'; SET request.jwt.claim.sub = 'mallory'"#)
        .unwrap();
    assert_eq!(user_id(&mut alice), None);
    assert_eq!(
        err_code(init(
            &mut alice,
            &Key::new().token(json!({"sub": "mallory", "jti": 1})),
            false
        )),
        "55000"
    );
    assert_eq!(user_id(&mut alice), None);
}
