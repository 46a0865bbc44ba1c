//! PostgreSQL 18 OAuth logins validated by pg_rls_auth: a client speaking SASL OAUTHBEARER
//! logs in with a JWT; the connection then answers auth.* from that token without any
//! jwt_session_init, in parallel workers too, and never comes to answer as anyone else unless
//! another token verifies. Every check refuses, without telling the client which; password
//! logins on the same server are unaffected. PostgreSQL 15 and 17 have no OAuth: there the
//! tests say so and return.

use pg_rls_auth_it::oauth_client::OAuthConn;
use pg_rls_auth_it::serde_json::{json, Value};
use pg_rls_auth_it::*;

const ISSUER: &str = "https://issuer.test/realms/app";

fn oauth_available() -> bool {
    if pg_major() < 18 {
        eprintln!(
            "PostgreSQL {}: no OAuth login before 18; not tested here",
            pg_major()
        );
        return false;
    }
    true
}

/// A PostgreSQL 18 server that validates OAuth logins with pg_rls_auth for audience `db-api`:
/// database `app` delegates role checks to the validator (the token's `role` claim), database
/// `mapped` maps identities with pg_ident; role `pw` logs in with a password.
fn oauth_cluster(extra: &[&str]) -> (Cluster, Key) {
    let mut conf = vec![
        "oauth_validator_libraries = 'pg_rls_auth'",
        "pg_rls_auth.audience = 'db-api'",
    ];
    conf.extend_from_slice(extra);
    let (cluster, key) = Cluster::start(&conf).with_key(&["alice", "bob"]);
    cluster.sql("postgres", "CREATE DATABASE mapped");
    cluster.sql("mapped", "CREATE EXTENSION pg_rls_auth");
    cluster.sql(
        "postgres",
        "SET password_encryption = 'scram-sha-256'; CREATE ROLE pw LOGIN PASSWORD 'secret-pw'",
    );
    cluster.set_hba(
        &format!(
            "local all postgres trust\n\
             local all pw scram-sha-256\n\
             local app all oauth issuer=\"{ISSUER}\" scope=\"openid db\" delegate_ident_mapping=1\n\
             local mapped all oauth issuer=\"{ISSUER}/.well-known/openid-configuration\" scope=\"db\" map=users\n"
        ),
        "users user-1 alice\n",
    );
    (cluster, key)
}

fn claims(sub: &str, role: &str) -> Value {
    json!({"iss": ISSUER, "sub": sub, "role": role, "scope": "openid db", "aud": "db-api", "iat": now()})
}

fn login(cluster: &Cluster, user: &str, db: &str, token: &str) -> Result<OAuthConn, String> {
    OAuthConn::connect(cluster.socket_dir(), cluster.port(), user, db, token)
        .map_err(|e| format!("{} {}", e.code, e.message))
}

#[test]
fn a_verified_login_is_the_session() {
    if !oauth_available() {
        return;
    }
    let (cluster, key) = oauth_cluster(&[]);
    let mut alice = login(
        &cluster,
        "alice",
        "app",
        &key.token(claims("user-1", "alice")),
    )
    .unwrap();
    assert_eq!(
        alice.one("SELECT auth.user_id()").as_deref(),
        Some("user-1")
    );
    assert_eq!(
        alice.one("SELECT SYSTEM_USER").as_deref(),
        Some("oauth:user-1")
    );
    assert_eq!(alice.one("SELECT current_user").as_deref(), Some("alice"));
    assert_eq!(
        alice.one("SELECT auth.jwt() ->> 'scope'").as_deref(),
        Some("openid db")
    );
    // Parallel workers answer from the same login.
    alice.query(&force_parallel_sql()).unwrap();
    assert_eq!(
        alice
            .one("SELECT max(auth.user_id()) FROM generate_series(1, 10)")
            .as_deref(),
        Some("user-1")
    );
    // Ending the session, DISCARD ALL and RESET ALL come back to the login, never to nothing
    // or to request.jwt.claims; the client cannot set the login's setting.
    for sql in [
        "SELECT auth.end_session()",
        "DISCARD ALL",
        "RESET ALL",
        "SET request.jwt.claims = '{\"sub\":\"mallory\"}'",
    ] {
        alice.query(sql).unwrap();
        assert_eq!(
            alice.one("SELECT auth.user_id()").as_deref(),
            Some("user-1"),
            "{sql}"
        );
    }
    let err = alice
        .query("SET pg_rls_auth.login_session = '{\"sub\":\"mallory\"}'")
        .unwrap_err();
    assert_eq!(err.code, "42501");
    // Another token that verifies becomes the session; ending it returns to the login. One
    // that fails leaves the login.
    let other = key.token(json!({"sub": "user-2", "aud": "db-api"}));
    alice
        .query(&format!("SELECT auth.jwt_session_init('{other}')"))
        .unwrap();
    assert_eq!(
        alice.one("SELECT auth.user_id()").as_deref(),
        Some("user-2")
    );
    alice.query("SELECT auth.end_session()").unwrap();
    assert_eq!(
        alice.one("SELECT auth.user_id()").as_deref(),
        Some("user-1")
    );
    let forged = Key::new().token(json!({"sub": "mallory"}));
    let err = alice
        .query(&format!("SELECT auth.jwt_session_init('{forged}')"))
        .unwrap_err();
    assert_eq!(err.code, "28000");
    assert_eq!(
        alice.one("SELECT auth.user_id()").as_deref(),
        Some("user-1")
    );

    // Even with no key configured any more (where PostgREST's claims would be read), the
    // login answers, not request.jwt.claims.
    cluster.sql("postgres", "ALTER SYSTEM RESET pg_rls_auth.jwks");
    cluster.sql("postgres", "SELECT pg_reload_conf()");
    // Alice's backend takes the reload between her statements.
    wait_until(
        std::time::Duration::from_secs(20),
        "alice's backend never saw the key removed",
        || alice.one("SHOW pg_rls_auth.jwks").as_deref() == Some(""),
    );
    alice
        .query("SET request.jwt.claims = '{\"sub\":\"mallory\"}'")
        .unwrap();
    assert_eq!(
        alice.one("SELECT auth.user_id()").as_deref(),
        Some("user-1")
    );
    cluster.set_system("pg_rls_auth.jwks", &key.public);

    // pg_ident maps the identity, and a discovery URL in pg_hba stands for its issuer.
    let mut mapped = login(
        &cluster,
        "alice",
        "mapped",
        &key.token(claims("user-1", "x")),
    )
    .unwrap();
    assert_eq!(
        mapped.one("SELECT auth.user_id()").as_deref(),
        Some("user-1")
    );
    assert!(login(&cluster, "bob", "mapped", &key.token(claims("user-1", "x"))).is_err());

    // Password logins are unaffected; they have no login session.
    let mut config = cluster.config("pw", "app", "");
    config.password("secret-pw");
    let mut pw = config.connect(pg_rls_auth_it::postgres::NoTls).unwrap();
    assert_eq!(user_id(&mut pw), None);
}

#[test]
fn every_check_refuses_the_login_without_saying_which() {
    if !oauth_available() {
        return;
    }
    let (cluster, key) = oauth_cluster(&["pg_rls_auth.max_token_bytes = 2048"]);
    let good = |extra: Value| {
        let mut c = claims("user-1", "alice");
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    assert!(login(&cluster, "alice", "app", &key.token(good(json!({})))).is_ok());
    let header = json!({"alg": "EdDSA", "typ": "JWT"});
    let genuine = key.token(good(json!({})));
    let tampered = {
        // Another sub under the genuine token's signature.
        let parts: Vec<&str> = genuine.split('.').collect();
        let payload = base64_url(&good(json!({"sub": "user-2"})).to_string());
        format!("{}.{}.{}", parts[0], payload, parts[2])
    };
    // (case, token, the reason the server log gives)
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            key.token(good(json!({"exp": now() - 3600}))),
            "expired",
        ),
        (
            "not yet valid",
            key.token(good(json!({"nbf": now() + 3600}))),
            "not valid before",
        ),
        (
            "another issuer",
            key.token(good(json!({"iss": "https://evil.test"}))),
            "iss",
        ),
        (
            "the issuer in another case",
            key.token(good(json!({"iss": ISSUER.to_uppercase()}))),
            "iss",
        ),
        (
            "another audience",
            key.token(good(json!({"aud": "other"}))),
            "aud",
        ),
        (
            "an ID token (its aud a client id)",
            key.token(good(
                json!({"aud": ["app-client-id"], "azp": "app-client-id"}),
            )),
            "aud",
        ),
        (
            "no aud",
            {
                let mut c = good(json!({}));
                c.as_object_mut().unwrap().remove("aud");
                key.token(c)
            },
            "aud",
        ),
        (
            "a scope missing",
            key.token(good(json!({"scope": "openid"}))),
            "scope \"db\"",
        ),
        (
            "signed by another key",
            Key::new().token(good(json!({}))),
            "kid",
        ),
        ("a payload changed after signing", tampered, "signature"),
        (
            "a role claim for another role",
            key.token(good(json!({"role": "bob"}))),
            "role",
        ),
        (
            "no role claim",
            {
                let mut c = good(json!({}));
                c.as_object_mut().unwrap().remove("role");
                key.token(c)
            },
            "role",
        ),
        (
            "alg none",
            {
                let token = key.token_with_header(header, good(json!({"exp": now() + 600})));
                let parts: Vec<&str> = token.split('.').collect();
                format!(
                    "{}.{}.",
                    base64_url(&json!({"alg": "none"}).to_string()),
                    parts[1]
                )
            },
            "none",
        ),
        (
            "over max_token_bytes",
            key.token(good(json!({"pad": "x".repeat(3000)}))),
            "max_token_bytes",
        ),
    ];
    for (case, token, reason) in &cases {
        let before = cluster.log().matches("OAuth login refused").count();
        let err = login(&cluster, "alice", "app", token).unwrap_err();
        assert!(
            err.contains("28000") && err.contains("OAuth bearer authentication failed"),
            "{case}: {err}"
        );
        // The reason is in the server log (one line per refusal), the token is not.
        let log = cluster.log();
        let refusals: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("OAuth login refused"))
            .collect();
        assert_eq!(refusals.len(), before + 1, "{case}");
        assert!(
            refusals[before].contains(reason),
            "{case}: {}",
            refusals[before]
        );
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            signature.is_empty() || !log.contains(signature),
            "{case}: token in the log"
        );
    }
}

#[test]
fn a_revoked_login_ends_at_its_first_statement() {
    if !oauth_available() {
        return;
    }
    let (cluster, key) = oauth_cluster(&[]);
    let token = key.token(claims("user-1", "alice"));
    let mut alice = login(&cluster, "alice", "app", &token).unwrap();
    assert_eq!(
        alice.one("SELECT auth.user_id()").as_deref(),
        Some("user-1")
    );
    cluster.sql(
        "app",
        "SELECT auth.revoke_sessions('user-1', now() + interval '1 minute')",
    );
    let err = alice.query("SELECT auth.user_id()").unwrap_err();
    assert_eq!(err.code, "28000");
    // A new login with the token passes authentication (no table can be read then) and ends
    // at its first statement.
    // Its first statement carries a token: the FATAL does not log the statement.
    let mut again = login(&cluster, "alice", "app", &token).unwrap();
    let carried = key.token(claims("user-9", "alice"));
    let statement = format!("SELECT auth.jwt_session_init('{carried}')");
    assert_eq!(again.query(&statement).unwrap_err().code, "28000");
    let signature = carried.rsplit('.').next().unwrap();
    assert!(
        !cluster.log().contains(signature),
        "the statement, with its token, is logged"
    );
    // Another user's login is unaffected.
    let mut bob = login(&cluster, "bob", "app", &key.token(claims("user-3", "bob"))).unwrap();
    assert_eq!(bob.one("SELECT auth.user_id()").as_deref(), Some("user-3"));
}

#[test]
fn a_login_needs_an_audience_and_exp_whatever_sessions_may_do() {
    if !oauth_available() {
        return;
    }
    // Sessions may go without exp here; logins may not.
    let (cluster, key) = oauth_cluster(&["pg_rls_auth.require_exp = off"]);
    let refusals = || {
        cluster
            .log()
            .lines()
            .filter(|l| l.contains("OAuth login refused"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let refused_because = |token: &str, reason: &str| {
        let before = refusals().len();
        let err = login(&cluster, "alice", "app", token).unwrap_err();
        assert!(err.contains("28000"), "{reason}: {err}");
        let after = refusals();
        assert_eq!(after.len(), before + 1, "{reason}");
        assert!(after[before].contains(reason), "{}", after[before]);
    };
    let header = json!({"alg": "EdDSA", "typ": "JWT"});
    let no_exp = key.token_with_header(header, claims("user-1", "alice"));
    refused_because(&no_exp, "no exp claim, which an OAuth login always needs");
    // The same token is a session token under these settings.
    let mut superuser = cluster.superuser("app");
    superuser
        .batch_execute(&format!("SELECT auth.jwt_session_init('{no_exp}')"))
        .unwrap();
    let row = superuser.query_one("SELECT auth.user_id()", &[]).unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("user-1"));
    // With no audience configured (empty, or a list that names none), no login verifies,
    // even a token that names the audience it used to be.
    let good = key.token(claims("user-1", "alice"));
    assert!(login(&cluster, "alice", "app", &good).is_ok());
    for setting in [
        "ALTER SYSTEM SET pg_rls_auth.audience = ''",
        "ALTER SYSTEM SET pg_rls_auth.audience = ' , '",
    ] {
        cluster.sql("postgres", setting);
        cluster.sql("postgres", "SELECT pg_reload_conf()");
        wait_until(
            std::time::Duration::from_secs(20),
            "the reload never reached new logins",
            || {
                let before = refusals().len();
                login(&cluster, "alice", "app", &good).is_err() && refusals().len() > before
            },
        );
        refused_because(&good, "pg_rls_auth.audience is not set");
    }
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
