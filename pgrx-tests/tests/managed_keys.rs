//! Managed keys against a real HTTPS server on loopback, whose CA the test makes and passes
//! through `pg_rls_auth.http_ca_file`: the first key verifies; a rotated key verifies on its
//! first try; outages, garbage and oversized answers keep the last good keys; a flood of
//! unknown kids causes at most one fetch; issuer-bound keys refuse other issuers; a source
//! that never answered verifies nothing; without preload the error names the cause.

#[path = "../../core/tests/common/https_server.rs"]
mod https_server;

use https_server::{HttpsServer, Reply, TestCa};
use pg_rls_auth_it::postgres::Client;
use pg_rls_auth_it::serde_json::{json, Value};
use pg_rls_auth_it::*;
use std::time::{Duration, Instant};

fn jwks(keys: &[&Key]) -> String {
    let keys: Vec<Value> = keys.iter().map(|k| serde_json_value(&k.public)).collect();
    json!({ "keys": keys }).to_string()
}

fn serde_json_value(text: &str) -> Value {
    pg_rls_auth_it::serde_json::from_str(text).expect("JSON")
}

fn kid(key: &Key) -> String {
    serde_json_value(&key.public)["kid"]
        .as_str()
        .expect("a kid")
        .to_string()
}

/// A way to break the key server, for the failure cases.
type Breakage<'a> = Box<dyn Fn(&mut HttpsServer) + 'a>;

/// Makes `cluster` trust the test's CA (`pg_rls_auth.http_ca_file`).
fn trust_ca(cluster: &Cluster, ca: &TestCa) {
    let ca_file = cluster.write_server_file("test-ca.pem", ca.ca_pem.as_bytes(), 0o644);
    cluster.set_system("pg_rls_auth.http_ca_file", ca_file.to_str().unwrap());
}

/// A preloaded cluster with database `app`, role `alice`, and the test's CA trusted.
fn cluster_trusting(ca: &TestCa) -> Cluster {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    trust_ca(&cluster, ca);
    cluster
}

/// One status row: (url, keys, kids, last_error, last_success is set, next_refresh > now).
type Status = (Option<String>, i32, Vec<String>, Option<String>, bool, bool);

fn status(client: &mut Client, function: &str) -> Vec<Status> {
    client
        .query(
            &format!(
                "SELECT url, keys, kids, last_error, last_success IS NOT NULL, \
                 coalesce(next_refresh > now(), false) FROM auth.{function}()"
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("auth.{function}(): {}", describe(&e)))
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

/// Waits (at most 30 s) until `auth.jwks_status()`, read on `client`, satisfies `done`.
fn wait_for_status(client: &mut Client, done: impl Fn(&[Status]) -> bool) -> Vec<Status> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = status(client, "jwks_status");
        if done(&rows) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "the status never got there: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the worker has fetched `keys` keys for the only source.
fn wait_for_keys(cluster: &Cluster, keys: i32) -> Status {
    let rows = wait_for_status(&mut cluster.superuser("app"), |rows| {
        rows.len() == 1 && rows[0].1 == keys
    });
    rows[0].clone()
}

fn user_after_init(cluster: &Cluster, token: &str) -> Result<Option<String>, String> {
    let mut client = cluster.connect("alice", "app", "");
    init(&mut client, token, false).map_err(|e| describe(&e))?;
    Ok(user_id(&mut client))
}

#[test]
fn url_keys_rotate_without_downtime_and_failures_keep_the_last_good_set() {
    let ca = TestCa::new();
    let mut server = HttpsServer::start(&ca);
    let first = Key::new();
    server.set("/jwks.json", Reply::json(jwks(&[&first])));
    let cluster = cluster_trusting(&ca);
    cluster.set_system("pg_rls_auth.jwks_urls", &server.url("/jwks.json"));
    let row = wait_for_keys(&cluster, 1);
    assert_eq!(row.0.as_deref(), Some(server.url("/jwks.json").as_str()));
    assert_eq!(row.2, [kid(&first)]);
    assert!(row.3.is_none() && row.4 && row.5, "{row:?}");
    assert_eq!(
        user_after_init(&cluster, &first.token_for("u1")).unwrap(),
        Some("u1".into())
    );

    // Rotation: the provider publishes a new key; its first token verifies at once.
    let second = Key::new();
    server.set("/jwks.json", Reply::json(jwks(&[&first, &second])));
    let before = server.hits("/jwks.json");
    assert_eq!(
        user_after_init(&cluster, &second.token_for("u2")).unwrap(),
        Some("u2".into())
    );
    assert_eq!(server.hits("/jwks.json"), before + 1);

    // A flood of forged kids right after: no fetch at all (one per 30 s, just spent), and no
    // token waits for one.
    let forger = Key::new();
    let before = server.hits("/jwks.json");
    let started = Instant::now();
    for i in 0..20 {
        let token = forger.token_with_header(
            json!({ "alg": "EdDSA", "typ": "JWT", "kid": format!("forged-{i}") }),
            json!({ "sub": "mallory", "exp": now() + 600 }),
        );
        let mut client = cluster.connect("alice", "app", "");
        assert_eq!(err_code(init(&mut client, &token, false)), "28000");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits("/jwks.json"), before);

    // Ordinary roles read the status but cannot force fetches.
    let mut alice = cluster.connect("alice", "app", "");
    assert_eq!(status(&mut alice, "jwks_status").len(), 1);
    assert_eq!(
        err_code(alice.query("SELECT * FROM auth.refresh_jwks()", &[])),
        "42501"
    );

    // Failures keep the last good keys and say what happened.
    let mut admin = cluster.superuser("app");
    let cases: Vec<(&str, Breakage)> = vec![
        (
            "connection failed",
            Box::new(|s: &mut HttpsServer| s.stop()),
        ),
        (
            "not valid JSON",
            Box::new(|s: &mut HttpsServer| {
                s.restart(&ca);
                s.set("/jwks.json", Reply::json("<html>maintenance</html>"));
            }),
        ),
        (
            "larger than",
            Box::new(|s: &mut HttpsServer| {
                s.set(
                    "/jwks.json",
                    Reply::json(format!("{{\"keys\":[],\"x\":\"{}\"}}", "a".repeat(2 << 20))),
                )
            }),
        ),
        (
            "no signature key",
            Box::new(|s: &mut HttpsServer| s.set("/jwks.json", Reply::json(r#"{"keys":[]}"#))),
        ),
        (
            "500",
            Box::new(|s: &mut HttpsServer| s.set("/jwks.json", Reply::status(500))),
        ),
    ];
    for (expected, break_it) in cases {
        break_it(&mut server);
        let rows = status(&mut admin, "refresh_jwks");
        let error = rows[0].3.clone().unwrap_or_default();
        assert!(error.contains(expected), "{expected}: {rows:?}");
        assert_eq!(rows[0].1, 2, "{rows:?}");
        for (key, sub) in [(&first, "u1"), (&second, "u2")] {
            assert_eq!(
                user_after_init(&cluster, &key.token_for(sub)).unwrap(),
                Some(sub.into()),
                "{expected}"
            );
        }
    }

    // A withdrawn key stops verifying once the provider's set no longer has it.
    server.set("/jwks.json", Reply::json(jwks(&[&second])));
    let rows = status(&mut admin, "refresh_jwks");
    assert_eq!((rows[0].1, &rows[0].3), (1, &None), "{rows:?}");
    let err = user_after_init(&cluster, &first.token_for("u1")).unwrap_err();
    assert!(err.contains("28000"), "{err}");
}

#[test]
fn issuer_keys_are_discovered_and_verify_only_that_issuers_tokens() {
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    let issuer = server.url("/tenant-a");
    let key = Key::new();
    server.set(
        "/tenant-a/.well-known/openid-configuration",
        Reply::json(
            json!({
                "issuer": issuer,
                "jwks_uri": server.url("/tenant-a/keys"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
            })
            .to_string(),
        ),
    );
    server.set("/tenant-a/keys", Reply::json(jwks(&[&key])));
    let cluster = cluster_trusting(&ca);
    cluster.set_system("pg_rls_auth.oidc_issuers", &issuer);
    let row = wait_for_keys(&cluster, 1);
    assert_eq!(
        row.0.as_deref(),
        Some(server.url("/tenant-a/keys").as_str())
    );

    let token = |iss: Option<&str>| {
        let mut claims = json!({ "sub": "ann", "exp": now() + 600 });
        if let Some(iss) = iss {
            claims["iss"] = json!(iss);
        }
        key.token(claims)
    };
    assert_eq!(
        user_after_init(&cluster, &token(Some(&issuer))).unwrap(),
        Some("ann".into())
    );
    for other in [
        Some("https://tenant-b.example"),
        Some(&*format!("{issuer}/")),
        None,
    ] {
        let err = user_after_init(&cluster, &token(other)).unwrap_err();
        assert!(
            err.contains("28000") && err.contains("another issuer"),
            "{err}"
        );
    }

    // A flood of unknown kids from a fresh start: exactly one fetch of the keys.
    let forger = Key::new();
    let before = server.hits("/tenant-a/keys");
    for i in 0..30 {
        let forged = forger.token_with_header(
            json!({ "alg": "EdDSA", "kid": format!("unknown-{i}") }),
            json!({ "sub": "mallory", "iss": issuer, "exp": now() + 600 }),
        );
        assert!(user_after_init(&cluster, &forged).is_err());
    }
    assert_eq!(server.hits("/tenant-a/keys"), before + 1);

    // A pasted key verifies its own tokens, but cannot issue in the issuer's name.
    let pasted = Key::new();
    cluster.set_system("pg_rls_auth.jwks", &pasted.public);
    let signed = |iss: &str| pasted.token(json!({ "sub": "ann", "iss": iss, "exp": now() + 600 }));
    let err = user_after_init(&cluster, &signed(&issuer)).unwrap_err();
    assert!(
        err.contains("28000") && err.contains("not of that issuer"),
        "{err}"
    );
    assert_eq!(
        user_after_init(&cluster, &signed("https://tenant-b.example")).unwrap(),
        Some("ann".into())
    );
}

/// `pg_rls_auth.http_ca_file` naming something other than a regular file (a FIFO, which a
/// plain open would wait on for ever) is a configuration error the status shows at once; the
/// worker goes on, and fetches once the setting names a CA file again.
#[test]
fn a_ca_file_that_is_not_a_regular_file_is_refused_without_waiting() {
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    let key = Key::new();
    server.set("/jwks.json", Reply::json(jwks(&[&key])));
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    let fifo = cluster.make_server_fifo("ca.fifo");
    cluster.set_system("pg_rls_auth.http_ca_file", fifo.to_str().unwrap());
    cluster.set_system("pg_rls_auth.jwks_urls", &server.url("/jwks.json"));
    let mut admin = cluster.superuser("app");
    wait_for_status(&mut admin, |rows| {
        rows.first()
            .and_then(|r| r.3.as_deref())
            .is_some_and(|e| e.contains("not a regular file"))
    });
    trust_ca(&cluster, &ca);
    let rows = status(&mut admin, "refresh_jwks");
    assert_eq!(rows[0].1, 1, "{rows:?}");
}

#[test]
fn a_source_that_never_answered_verifies_nothing_and_trusts_no_claims_but_pasted_keys_work() {
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    let cluster = cluster_trusting(&ca);
    cluster.set_system("pg_rls_auth.jwks_urls", &server.url("/missing"));
    let rows = wait_for_status(&mut cluster.superuser("app"), |rows| {
        rows[0].3.as_deref().is_some_and(|e| e.contains("404"))
    });
    assert_eq!(rows[0].1, 0);
    let key = Key::new();
    let err = user_after_init(&cluster, &key.token_for("u1")).unwrap_err();
    assert!(
        err.contains("28000") && err.contains("fetched yet"),
        "{err}"
    );
    // PostgREST's claims are not a key source's substitute.
    let mut client = cluster.connect("alice", "app", "");
    client
        .batch_execute("SELECT set_config('request.jwt.claims', '{\"sub\":\"forged\"}', false)")
        .unwrap();
    assert_eq!(user_id(&mut client), None);
    // Keys from the settings work beside it.
    let pasted = Key::new();
    cluster.set_system("pg_rls_auth.jwks", &pasted.public);
    assert_eq!(
        user_after_init(&cluster, &pasted.token_for("p")).unwrap(),
        Some("p".into())
    );
    assert!(user_after_init(&cluster, &key.token_for("u1")).is_err());
}

#[test]
fn without_preload_managed_keys_name_the_missing_setting() {
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    server.set("/jwks.json", Reply::json(jwks(&[&Key::new()])));
    let cluster = Cluster::start_without_preload(&[]);
    cluster.setup("app", &["alice"]);
    cluster.set_system("pg_rls_auth.jwks_urls", &server.url("/jwks.json"));
    let err = user_after_init(&cluster, &Key::new().token_for("u")).unwrap_err();
    assert!(
        err.contains("55000") && err.contains("shared_preload_libraries"),
        "{err}"
    );
    let mut admin = cluster.superuser("app");
    let err = admin
        .query("SELECT * FROM auth.jwks_status()", &[])
        .unwrap_err();
    assert!(
        describe(&err).contains("shared_preload_libraries"),
        "{}",
        describe(&err)
    );
    assert_eq!(server.hits("/jwks.json"), 0);
}

#[test]
fn sources_keep_their_keys_across_reloads_and_refuse_each_others_kids() {
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    let (a, b) = (Key::new(), Key::new());
    server.set("/a.json", Reply::json(jwks(&[&a])));
    server.set("/b.json?api_key=hunter2", Reply::json(jwks(&[&b])));
    let cluster = cluster_trusting(&ca);
    let (url_a, url_b) = (server.url("/a.json"), server.url("/b.json?api_key=hunter2"));
    cluster.set_system("pg_rls_auth.jwks_urls", &format!("{url_a},{url_b}"));
    let mut admin = cluster.superuser("app");
    wait_for_status(&mut admin, |rows| rows.iter().all(|r| r.1 == 1));
    // The status shows no URL's query: it may carry a key of the provider's.
    let mut alice = cluster.connect("alice", "app", "");
    let sources: Vec<String> = alice
        .query("SELECT source || ' ' || url FROM auth.jwks_status()", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        sources.iter().all(|s| !s.contains("hunter2")),
        "{sources:?}"
    );

    // B publishes A's key as well: refused, B keeps its last good set, A is untouched.
    server.set("/b.json?api_key=hunter2", Reply::json(jwks(&[&b, &a])));
    let rows = status(&mut admin, "refresh_jwks");
    assert!(
        rows[1]
            .3
            .as_deref()
            .is_some_and(|e| e.contains("also published")),
        "{rows:?}"
    );
    assert_eq!((rows[0].1, rows[1].1), (1, 1), "{rows:?}");
    for (key, sub) in [(&a, "a"), (&b, "b")] {
        assert_eq!(
            user_after_init(&cluster, &key.token_for(sub)).unwrap(),
            Some(sub.into())
        );
    }

    // A goes from the setting: B keeps its slot and keys, even while its server fails.
    server.set("/b.json?api_key=hunter2", Reply::status(503));
    cluster.set_system("pg_rls_auth.jwks_urls", &url_b);
    let rows = status(&mut admin, "refresh_jwks");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, 1, "{rows:?}");
    assert!(
        rows[0].3.as_deref().is_some_and(|e| e.contains("503")),
        "{rows:?}"
    );
    assert_eq!(
        user_after_init(&cluster, &b.token_for("b")).unwrap(),
        Some("b".into())
    );
    let err = user_after_init(&cluster, &a.token_for("a")).unwrap_err();
    assert!(err.contains("28000"), "{err}");
}

#[test]
fn a_source_moving_from_one_setting_to_the_other_in_one_reload_becomes_the_new_kind() {
    // One URL that serves a JWKS and is also an issuer whose discovery names that JWKS.
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    let url = server.url("/idp");
    let key = Key::new();
    server.set("/idp", Reply::json(jwks(&[&key])));
    server.set(
        "/idp/.well-known/openid-configuration",
        Reply::json(json!({ "issuer": url, "jwks_uri": url }).to_string()),
    );
    let cluster = cluster_trusting(&ca);
    cluster.set_system("pg_rls_auth.jwks_urls", &url);
    wait_for_keys(&cluster, 1);
    // Both settings change in one reload: the JWKS URL's slot must go, not be kept beside
    // the issuer's (whose identical kid it would then refuse).
    cluster.sql("postgres", "ALTER SYSTEM RESET pg_rls_auth.jwks_urls");
    cluster.sql(
        "postgres",
        &format!(
            "ALTER SYSTEM SET pg_rls_auth.oidc_issuers = {}",
            quote(&url)
        ),
    );
    cluster.sql("postgres", "SELECT pg_reload_conf()");
    let mut admin = cluster.superuser("app");
    wait_for_status(&mut admin, |rows| rows.len() == 1 && rows[0].4);
    let rows = status(&mut admin, "refresh_jwks");
    assert_eq!(
        (rows.len(), rows[0].1, &rows[0].3),
        (1, 1, &None),
        "{rows:?}"
    );
    // The key now verifies only its issuer's tokens.
    let token = key.token(json!({ "sub": "u", "iss": url, "exp": now() + 600 }));
    assert_eq!(user_after_init(&cluster, &token).unwrap(), Some("u".into()));
    let err = user_after_init(&cluster, &key.token_for("u")).unwrap_err();
    assert!(err.contains("another issuer"), "{err}");
}

#[test]
fn the_database_owner_can_neither_force_fetches_nor_grant_them() {
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    server.set("/jwks.json", Reply::json(jwks(&[&Key::new()])));
    let cluster = Cluster::start(&[]);
    cluster.database_owned_by("shop", "shop_owner");
    cluster.sql("postgres", "CREATE ROLE mallory LOGIN");
    trust_ca(&cluster, &ca);
    cluster.set_system("pg_rls_auth.jwks_urls", &server.url("/jwks.json"));
    let mut owner = cluster.connect("shop_owner", "shop", "");
    owner.batch_execute("CREATE EXTENSION pg_rls_auth").unwrap();
    wait_for_status(&mut owner, |rows| rows[0].1 == 1);
    let before = server.hits("/jwks.json");
    for grant in [
        "GRANT EXECUTE ON FUNCTION auth.refresh_jwks() TO PUBLIC",
        "GRANT EXECUTE ON FUNCTION AUTH.REFRESH_JWKS() TO mallory",
        "ALTER FUNCTION auth.refresh_jwks() SECURITY DEFINER",
    ] {
        assert_eq!(err_code(owner.batch_execute(grant)), "42501", "{grant}");
    }
    for (role, client) in [
        ("shop_owner", &mut owner),
        ("mallory", &mut cluster.connect("mallory", "shop", "")),
    ] {
        let result = client.query("SELECT * FROM auth.refresh_jwks()", &[]);
        assert_eq!(err_code(result), "42501", "{role}");
    }
    assert_eq!(server.hits("/jwks.json"), before);
    // A superuser may delegate it.
    cluster.sql(
        "shop",
        "GRANT EXECUTE ON FUNCTION auth.refresh_jwks() TO mallory",
    );
    let rows = status(&mut cluster.connect("mallory", "shop", ""), "refresh_jwks");
    assert_eq!(rows[0].1, 1, "{rows:?}");
    assert!(server.hits("/jwks.json") > before);
}

#[test]
fn while_the_worker_is_down_nothing_waits_for_it() {
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    let key = Key::new();
    server.set("/jwks.json", Reply::json(jwks(&[&key])));
    let cluster = cluster_trusting(&ca);
    cluster.set_system("pg_rls_auth.jwks_refresh_wait", "5s");
    cluster.set_system("pg_rls_auth.jwks_urls", &server.url("/jwks.json"));
    wait_for_keys(&cluster, 1);
    let mut admin = cluster.superuser("app");
    let stopped: bool = admin
        .query_one(
            "SELECT bool_and(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE backend_type = 'pg_rls_auth key refresher'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(stopped);
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        match admin.query("SELECT * FROM auth.refresh_jwks()", &[]) {
            Err(e) => break describe(&e),
            Ok(_) => assert!(Instant::now() < deadline, "the worker never stopped"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(err.contains("not running"), "{err}");
    // The keys in force still verify; an unknown kid fails at once instead of waiting 5 s.
    assert_eq!(
        user_after_init(&cluster, &key.token_for("u")).unwrap(),
        Some("u".into())
    );
    let started = Instant::now();
    assert!(user_after_init(&cluster, &Key::new().token_for("u")).is_err());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The worker comes back (after 10 s) and fetches again.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Ok(rows) = admin.query("SELECT keys FROM auth.refresh_jwks()", &[]) {
            assert_eq!(rows[0].get::<_, i32>(0), 1);
            break;
        }
        assert!(Instant::now() < deadline, "the worker never came back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_postgresql_18_oauth_login_verifies_with_the_issuers_fetched_keys() {
    if pg_major() < 18 {
        eprintln!(
            "PostgreSQL {}: no OAuth login before 18; not tested here",
            pg_major()
        );
        return;
    }
    use pg_rls_auth_it::oauth_client::OAuthConn;
    let ca = TestCa::new();
    let server = HttpsServer::start(&ca);
    let issuer = server.url("/idp");
    let key = Key::new();
    server.set(
        "/idp/.well-known/openid-configuration",
        Reply::json(json!({ "issuer": issuer, "jwks_uri": server.url("/idp/keys") }).to_string()),
    );
    server.set("/idp/keys", Reply::json(jwks(&[&key])));
    let cluster = Cluster::start(&[
        "oauth_validator_libraries = 'pg_rls_auth'",
        "pg_rls_auth.audience = 'db-api'",
    ]);
    cluster.setup("app", &["alice"]);
    trust_ca(&cluster, &ca);
    cluster.set_system("pg_rls_auth.oidc_issuers", &issuer);
    cluster.set_hba(
        &format!(
            "local all postgres trust\n\
             local app all oauth issuer=\"{issuer}\" scope=\"openid\" delegate_ident_mapping=1\n"
        ),
        "",
    );
    wait_for_keys(&cluster, 1);
    let login = |token: &str| {
        OAuthConn::connect(cluster.socket_dir(), cluster.port(), "alice", "app", token)
            .map_err(|e| format!("{} {}", e.code, e.message))
    };
    let claims = |iss: &str| json!({ "iss": iss, "sub": "user-1", "role": "alice", "scope": "openid", "aud": "db-api", "exp": now() + 600 });
    let mut alice = login(&key.token(claims(&issuer))).unwrap();
    assert_eq!(
        alice.one("SELECT auth.user_id()").as_deref(),
        Some("user-1")
    );
    // Another key, or the same key vouching for another issuer, does not log in.
    assert!(login(&Key::new().token(claims(&issuer))).is_err());
    assert!(login(&key.token(claims("https://other.example/idp"))).is_err());
}
