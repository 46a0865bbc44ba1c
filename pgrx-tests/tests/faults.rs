//! Faults and hostile input at the server: a backend killed mid-work, a bad configuration at
//! start-up, and inputs built to exhaust memory or time. The extension must fail closed, say
//! what failed, and never take the server down.

use pg_rls_auth_it::postgres::{self, Client};
use pg_rls_auth_it::serde_json::json;
use pg_rls_auth_it::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const YEAR: i32 = 86_400 * 365;
const LIMIT: i32 = 1_000_000;

/// One admitted-or-refused check; any other error is returned (the crash ends connections).
fn try_check(c: &mut Client, key: &str) -> Result<bool, postgres::Error> {
    c.query_one(
        "SELECT auth.check_write_rate($1::text, $2, $3, 'crash')",
        &[&key, &LIMIT, &YEAR],
    )
    .map(|r| r.get::<_, bool>(0))
}

fn remaining(c: &mut Client, key: &str) -> i64 {
    c.query_one(
        "SELECT remaining FROM auth.write_rate_status($1, $2, $3, 'crash')",
        &[&key, &LIMIT, &YEAR],
    )
    .unwrap()
    .get::<_, i32>(0)
    .into()
}

#[test]
fn a_killed_backend_leaves_a_working_limiter_and_a_consistent_table_store() {
    let (cluster, key) = Cluster::start(&[]).with_key(&["mem", "tab", "victim"]);
    cluster.sql(
        "app",
        "ALTER ROLE tab SET pg_rls_auth.rate_limit_store = 'table'",
    );
    let stop = AtomicBool::new(false);
    // Checks the clients saw admitted, per store: the table store must hold at least these.
    let acknowledged = [AtomicU64::new(0), AtomicU64::new(0)];
    let victim_pid: i32 = std::thread::scope(|scope| {
        for (i, role) in ["mem", "tab", "mem", "tab"].into_iter().enumerate() {
            let (stop, acknowledged, token) = (&stop, &acknowledged, key.token_for(role));
            let cluster = &cluster;
            scope.spawn(move || {
                let mut c = cluster.connect(role, "app", "-c statement_timeout=30000");
                while !stop.load(Ordering::Relaxed) {
                    if init(&mut c, &token, false).is_err() {
                        break; // the crash restart ends every connection
                    }
                    match try_check(&mut c, "shared") {
                        Ok(true) => {
                            acknowledged[i % 2].fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => panic!("refused below the limit"),
                        Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "PT429") => {
                            panic!("refused below the limit")
                        }
                        Err(_) => break,
                    }
                }
            });
        }
        // The victim works too, and is killed mid-loop.
        let mut victim = cluster.connect("victim", "app", "");
        let pid: i32 = victim
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        let token = key.token_for("victim");
        let victim_thread = scope.spawn(move || {
            for _ in 0..1_000_000 {
                if init(&mut victim, &token, false).is_err() || try_check(&mut victim, "v").is_err()
                {
                    return;
                }
            }
        });
        std::thread::sleep(Duration::from_secs(2));
        cluster.kill_backend(pid);
        victim_thread.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        pid
    });

    // The postmaster restarted every backend and re-created shared memory.
    cluster.wait_ready();
    let mut admin = cluster.superuser("app");
    assert!(cluster
        .log()
        .contains(&format!("PID {victim_pid}) was terminated by signal 9")));

    // The limiter works, in both stores, and nothing waits on a lock left behind.
    for role in ["mem", "tab"] {
        let mut c = cluster.connect(
            role,
            "app",
            "-c statement_timeout=10000 -c lock_timeout=5000",
        );
        let bucket_key = format!("after-{role}");
        for _ in 0..3 {
            assert!(c
                .query_one(
                    "SELECT auth.check_write_rate($1::text, 3, 60)",
                    &[&bucket_key]
                )
                .unwrap()
                .get::<_, bool>(0));
        }
        let err = c
            .query_one(
                "SELECT auth.check_write_rate($1::text, 3, 60)",
                &[&bucket_key],
            )
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("PT429"));
        assert_eq!(
            init(&mut c, &key.token_for(role), false)
                .map(|_| user_id(&mut c))
                .unwrap(),
            Some(role.to_string())
        );
    }
    // The memory store started over with the new shared memory.
    let mut mem = cluster.connect("mem", "app", "");
    assert_eq!(remaining(&mut mem, "shared"), i64::from(LIMIT));
    // The table store holds every check a client saw admitted, plus at most the few that were
    // committed while their connection died (one per client).
    let mut tab = cluster.connect("tab", "app", "");
    let used = i64::from(LIMIT) - remaining(&mut tab, "shared");
    let acked = acknowledged[1].load(Ordering::Relaxed) as i64;
    assert!(acked > 0, "the table-store clients made no checks");
    assert!(
        (acked..=acked + 2).contains(&used),
        "table store used {used}, clients saw {acked} admitted"
    );
    let rows: i64 = admin
        .query_one(
            "SELECT count(*) FROM _pg_rls_auth.write_rate_state WHERE id = $1",
            &[&pg_rls_auth_core::key_id::durable_key_id("crash", "shared").as_slice()],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "one row for the one table-store key");
}

#[test]
fn a_malformed_configuration_does_not_stop_the_server() {
    let cluster = Cluster::start(&[
        "pg_rls_auth.jwks = '{\"keys\": [{\"kty\": \"OKP\", \"crv\": \"Ed25519\"'",
        "pg_rls_auth.jwt_secret = 'too-short'",
    ]);
    cluster.setup("app", &["alice"]);
    let mut alice = cluster.connect("alice", "app", "");
    let key = Key::new();
    for sql in [
        "SELECT auth.user_id()",
        "SELECT auth.session()",
        "SELECT auth.claim('sub')",
        "SELECT auth.init()",
    ] {
        let err = alice.batch_execute(sql).unwrap_err();
        assert_eq!(
            sqlstate(&err).as_deref(),
            Some("22023"),
            "{sql}: {}",
            describe(&err)
        );
        assert!(
            describe(&err).contains("pg_rls_auth.jwks"),
            "{sql}: {}",
            describe(&err)
        );
    }
    let err = init(&mut alice, &key.token_for("alice"), false).unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("22023"));
    // With the key fixed, the short secret is what is reported, by name, without its value.
    cluster.set_system("pg_rls_auth.jwks", &key.public);
    let mut alice = cluster.connect("alice", "app", "");
    let err = init(&mut alice, &key.token_for("alice"), false).unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("22023"));
    assert!(
        describe(&err).contains("pg_rls_auth.jwt_secret"),
        "{}",
        describe(&err)
    );
    assert!(!describe(&err).contains("too-short"), "{}", describe(&err));
    cluster.set_system(
        "pg_rls_auth.jwt_secret",
        "a-secret-of-at-least-thirty-two-bytes!!",
    );
    let mut alice = cluster.connect("alice", "app", "");
    init(&mut alice, &key.token_for("alice"), false).unwrap();
    assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));
}

/// Peak resident memory of a backend, in kB (Linux).
fn peak_rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Runs `f`, asserting it finished within a second and grew the backend by under 64 MB.
fn bounded<T>(c: &mut Client, what: &str, f: impl FnOnce(&mut Client) -> T) -> T {
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let before = peak_rss_kb(pid);
    let start = Instant::now();
    let result = f(c);
    let elapsed = start.elapsed();
    let grown_mb = (peak_rss_kb(pid) - before) / 1024;
    assert!(elapsed < Duration::from_secs(1), "{what} took {elapsed:?}");
    assert!(grown_mb < 64, "{what} grew the backend by {grown_mb} MB");
    result
}

#[test]
fn hostile_sizes_are_refused_in_bounded_time_and_memory() {
    let (cluster, key) = Cluster::start(&[]).with_key(&["alice"]);
    let mut alice = cluster.connect("alice", "app", "");

    // A token over pg_rls_auth.max_token_bytes (16 kB) is refused before any parsing.
    let huge = key.token(json!({ "sub": "alice", "pad": "x".repeat(1 << 20) }));
    let err = bounded(&mut alice, "a 1 MB token", |c| {
        init(c, &huge, false).unwrap_err()
    });
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"));
    assert!(
        describe(&err).contains("max_token_bytes"),
        "{}",
        describe(&err)
    );

    // Claims nested 10,000 deep, in a token allowed through the size check.
    // serde_json recurses over such a value: build and sign it on a thread with a big stack.
    let deep = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .stack_size(1 << 30)
            .spawn_scoped(scope, || {
                let mut nested = json!("deep");
                for _ in 0..10_000 {
                    nested = json!([nested]);
                }
                key.token(json!({ "sub": "alice", "deep": nested }))
            })
            .expect("spawn")
            .join()
            .expect("sign a deep token")
    });
    let mut admin = cluster.superuser("app");
    admin
        .batch_execute("ALTER ROLE alice SET pg_rls_auth.max_token_bytes = '1MB'")
        .unwrap();
    let mut alice = cluster.connect("alice", "app", "");
    let err = bounded(&mut alice, "claims nested 10,000 deep", |c| {
        init(c, &deep, false).unwrap_err()
    });
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"));
    assert!(
        describe(&err).contains("nested too deeply"),
        "{}",
        describe(&err)
    );
    assert_eq!(user_id(&mut alice), None);

    // The same nesting in PostgREST's claims (the fallback, with no key configured).
    let deep_claims = format!("{}{}{}", "[".repeat(10_000), "1", "]".repeat(10_000));
    let mut fallback_db = {
        cluster.setup("nokeys", &[]);
        cluster.sql(
            "postgres",
            "ALTER DATABASE nokeys SET pg_rls_auth.jwks = ''",
        );
        cluster.connect("alice", "nokeys", "")
    };
    let err = bounded(
        &mut fallback_db,
        "request.jwt.claims nested 10,000 deep",
        |c| {
            c.batch_execute(&format!(
                "SET request.jwt.claims = {}; SELECT auth.user_id()",
                quote(&format!("{{\"sub\": \"x\", \"d\": {deep_claims}}}"))
            ))
            .unwrap_err()
        },
    );
    assert_eq!(
        sqlstate(&err).as_deref(),
        Some("22023"),
        "{}",
        describe(&err)
    );

    // A JWKS of 5,000 keys: refused as a whole, with the limit in the message.
    let many: Vec<_> = (0..5_000)
        .map(|i| {
            let mut jwk: pg_rls_auth_it::serde_json::Value =
                pg_rls_auth_it::serde_json::from_str(&key.public).unwrap();
            jwk["kid"] = json!(format!("k{i}"));
            jwk
        })
        .collect();
    let jwks = json!({ "keys": many }).to_string();
    admin
        .batch_execute(&format!(
            "ALTER ROLE alice SET pg_rls_auth.jwks = {}",
            quote(&jwks)
        ))
        .unwrap();
    let mut alice = cluster.connect("alice", "app", "");
    let err = bounded(&mut alice, "a JWKS of 5,000 keys", |c| {
        init(c, &key.token_for("alice"), false).unwrap_err()
    });
    assert_eq!(sqlstate(&err).as_deref(), Some("22023"));
    assert!(describe(&err).contains("at most 100"), "{}", describe(&err));
    // And the server is fine.
    assert_eq!(
        cluster
            .superuser("app")
            .query_one("SELECT 1", &[])
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

/// The hooks sit in every statement's path: errors raised below them reach the client exactly
/// as PostgreSQL made them (no added DETAIL, position kept), also with Rust backtraces on.
#[test]
fn errors_of_other_statements_pass_through_the_hooks_unchanged() {
    std::env::set_var("RUST_BACKTRACE", "1"); // inherited by the server
    let cluster = Cluster::start(&[]);
    std::env::remove_var("RUST_BACKTRACE");
    // The same errors from a server without the library, as PostgreSQL itself reports them
    // (which differs between versions: 16 added a DETAIL to CREATE ROLE's).
    let plain = Cluster::start_without_preload(&[]);
    for c in [&cluster, &plain] {
        c.sql("postgres", "CREATE DATABASE app");
        c.sql("postgres", "CREATE ROLE alice LOGIN");
        c.sql("app", "CREATE TABLE public.secret (x int)");
    }
    cluster.sql("app", "CREATE EXTENSION pg_rls_auth");
    let mut alice = cluster.connect("alice", "app", "");
    let mut baseline = plain.connect("alice", "app", "");
    for (sql, code) in [
        ("CREATE ROLE alice", "42501"),                    // ProcessUtility
        ("CREATE TEMP TABLE t (x no_such_type)", "42704"), // ProcessUtility, with a position
        ("SELECT * FROM public.secret", "42501"),          // ExecutorStart
    ] {
        let err = alice.batch_execute(sql).unwrap_err();
        let db = err.as_db_error().expect("a server error");
        let expected = baseline.batch_execute(sql).unwrap_err();
        let expected = expected.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
        assert_eq!(
            db.message(),
            expected.message(),
            "{sql}: the message changed"
        );
        assert_eq!(db.detail(), expected.detail(), "{sql}: the DETAIL changed");
        assert_eq!(db.hint(), expected.hint(), "{sql}: the HINT changed");
        assert_eq!(
            db.position(),
            expected.position(),
            "{sql}: the position changed"
        );
    }
}

/// A failing call that carries a token, a private key or a secret does not write it to the
/// server log: neither as the statement nor as the CONTEXT of a PL/pgSQL caller.
#[test]
fn tokens_keys_and_secrets_stay_out_of_the_server_log() {
    let (cluster, _configured) = Cluster::start(&[]).with_key(&["alice"]);
    let mut alice = cluster.connect("alice", "app", "");
    let forged = Key::new().token_for("mallory");
    let marker = "ZZsecretmarkerZZ";
    let calls = [
        format!("SELECT auth.jwt_session_init({})", quote(&forged)),
        format!(
            "DO $$BEGIN PERFORM auth.jwt_session_init({}); END$$",
            quote(&forged)
        ),
        format!("SELECT auth.sign_jwt('{{}}', {}, 'XX999')", quote(marker)),
        format!(
            "SELECT auth.public_jwk('{{\"kty\": \"OKP\", \"crv\": \"Ed25519\", \"d\": \"{marker}\"}}')"
        ),
    ];
    for sql in &calls {
        assert!(alice.batch_execute(sql).is_err(), "{sql} succeeded");
    }
    let log = cluster.log();
    let signature = forged.rsplit('.').next().unwrap();
    assert!(log.contains("ERROR"), "the failures were not logged at all");
    assert!(!log.contains(signature), "a token reached the server log");
    assert!(!log.contains(marker), "a secret reached the server log");
}
