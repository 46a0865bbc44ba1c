//! Sessions through a real client: startup options, session and transaction-local init,
//! ROLLBACK, DISCARD/RESET ALL, failed inits (also as seen from parallel workers), key rotation
//! by reload, and concurrent connections of different roles.

use pg_rls_auth_it::postgres::Client;
use pg_rls_auth_it::serde_json::{self, json};
use pg_rls_auth_it::*;

/// A cluster with database `app`, roles alice/bob/carol/dave and one configured key.
fn keyed_cluster() -> (Cluster, Key) {
    Cluster::start(&[]).with_key(&["alice", "bob", "carol", "dave"])
}

#[test]
fn startup_options_reach_the_session() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    let options = r#"-c application_name=it_app -c statement_timeout=12345 -c request.jwt.claims={"sub":"from-gateway"}"#;
    let mut alice = cluster.connect("alice", "app", options);
    let row = alice
        .query_one(
            "SELECT current_setting('application_name'), current_setting('statement_timeout'), current_user::text",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "it_app");
    assert_eq!(row.get::<_, String>(1), "12345ms");
    assert_eq!(row.get::<_, String>(2), "alice");
    // With no key configured, PostgREST's claims (here sent at connection start) are read.
    assert_eq!(user_id(&mut alice).as_deref(), Some("from-gateway"));
    // Escaped spaces in a startup option, as libpq's PGOPTIONS allows.
    let mut bob = cluster.connect("alice", "app", r"-c application_name=two\ words");
    let name: String = bob.query_one("SHOW application_name", &[]).unwrap().get(0);
    assert_eq!(name, "two words");
}

#[test]
fn session_and_local_init_across_transactions() {
    let (cluster, key) = keyed_cluster();
    let mut c = cluster.connect("alice", "app", "");
    assert_eq!(user_id(&mut c), None);
    // A transaction-local session ends at COMMIT.
    c.batch_execute("BEGIN").unwrap();
    init(&mut c, &key.token_for("local-only"), true).unwrap();
    assert_eq!(user_id(&mut c).as_deref(), Some("local-only"));
    c.batch_execute("COMMIT").unwrap();
    assert_eq!(user_id(&mut c), None);
    // In autocommit, a local init ends with its own statement.
    init(&mut c, &key.token_for("local-only"), true).unwrap();
    assert_eq!(user_id(&mut c), None);
    // A session init lasts across transactions.
    init(&mut c, &key.token_for("alice"), false).unwrap();
    for _ in 0..3 {
        c.batch_execute("BEGIN; SELECT 1; COMMIT").unwrap();
        assert_eq!(user_id(&mut c).as_deref(), Some("alice"));
    }
    // A local init over it shadows it for one transaction, then the session is back.
    c.batch_execute("BEGIN").unwrap();
    init(&mut c, &key.token_for("bob"), true).unwrap();
    assert_eq!(user_id(&mut c).as_deref(), Some("bob"));
    c.batch_execute("COMMIT").unwrap();
    assert_eq!(user_id(&mut c).as_deref(), Some("alice"));
    // ROLLBACK of the transaction that called init restores the prior session...
    c.batch_execute("BEGIN").unwrap();
    init(&mut c, &key.token_for("bob"), false).unwrap();
    assert_eq!(user_id(&mut c).as_deref(), Some("bob"));
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(user_id(&mut c).as_deref(), Some("alice"));
    // ... and of one that ended it, as does ROLLBACK TO SAVEPOINT.
    c.batch_execute("BEGIN; SELECT auth.end_session()").unwrap();
    assert_eq!(user_id(&mut c), None);
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(user_id(&mut c).as_deref(), Some("alice"));
    c.batch_execute("BEGIN; SAVEPOINT s").unwrap();
    init(&mut c, &key.token_for("bob"), false).unwrap();
    c.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    assert_eq!(user_id(&mut c).as_deref(), Some("alice"));
    c.batch_execute("COMMIT").unwrap();
    assert_eq!(user_id(&mut c).as_deref(), Some("alice"));
    // end_session, RESET ALL and DISCARD ALL end it.
    c.batch_execute("SELECT auth.end_session()").unwrap();
    assert_eq!(user_id(&mut c), None);
    for reset in ["RESET ALL", "DISCARD ALL"] {
        init(&mut c, &key.token_for("alice"), false).unwrap();
        assert_eq!(user_id(&mut c).as_deref(), Some("alice"));
        c.batch_execute(reset).unwrap();
        assert_eq!(user_id(&mut c), None, "after {reset}");
    }
}

/// The session's `sub` as a parallel worker sees it, checking that a worker really ran the
/// query. The claim is named through the row, so the call runs in the worker: a call with a
/// constant argument would be hoisted into an initplan the leader evaluates.
fn user_id_in_worker(c: &mut Client) -> Option<String> {
    let leader: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let row = c
        .query_one(
            "SELECT auth.claim(CASE WHEN g > 0 THEN 'sub' END), s.worker_pid() FROM generate_series(1, 1) g",
            &[],
        )
        .unwrap();
    let worker: i32 = row.get(1);
    assert_ne!(worker, leader, "the query did not run in a parallel worker");
    row.get(0)
}

#[test]
fn failed_init_leaves_no_session_also_in_parallel_workers() {
    let (cluster, key) = keyed_cluster();
    cluster.sql(
        "app",
        "CREATE SCHEMA s AUTHORIZATION alice; \
         CREATE FUNCTION s.worker_pid() RETURNS int LANGUAGE sql VOLATILE PARALLEL SAFE \
         AS 'SELECT pg_backend_pid()'",
    );
    let mut c = cluster.connect("alice", "app", "");
    c.batch_execute(&force_parallel_sql()).unwrap();
    init(&mut c, &key.token_for("bob"), false).unwrap();
    // Workers receive the session.
    assert_eq!(user_id_in_worker(&mut c).as_deref(), Some("bob"));
    // A failed init raises 28000 and ends the session, in the leader and in workers.
    for bad in ["garbage", "a.b.c", &Key::new().token_for("bob")] {
        init(&mut c, &key.token_for("bob"), false).unwrap();
        assert_eq!(err_code(init(&mut c, bad, false)), "28000");
        assert_eq!(user_id(&mut c), None);
        assert_eq!(user_id_in_worker(&mut c), None);
    }
    // Its transaction rolled back, yet the prior session is not restored.
    init(&mut c, &key.token_for("bob"), false).unwrap();
    c.batch_execute("BEGIN").unwrap();
    init(&mut c, &key.token_for("carol"), false).unwrap();
    assert_eq!(err_code(init(&mut c, "garbage", false)), "28000");
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(user_id_in_worker(&mut c), None);
    assert_eq!(user_id(&mut c), None);
    // The same inside a savepoint that is rolled back, with the transaction going on.
    init(&mut c, &key.token_for("bob"), false).unwrap();
    c.batch_execute("BEGIN; SAVEPOINT s").unwrap();
    assert_eq!(err_code(init(&mut c, "garbage", false)), "28000");
    c.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    assert_eq!(user_id_in_worker(&mut c), None);
    assert_eq!(user_id(&mut c), None);
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(user_id_in_worker(&mut c), None);
    assert_eq!(user_id(&mut c), None);
    // And a failed init caught by PL/pgSQL.
    init(&mut c, &key.token_for("bob"), false).unwrap();
    c.batch_execute(
        "DO $$ BEGIN PERFORM auth.jwt_session_init('garbage'); \
         EXCEPTION WHEN invalid_authorization_specification THEN NULL; END $$",
    )
    .unwrap();
    assert_eq!(user_id_in_worker(&mut c), None);
    assert_eq!(user_id(&mut c), None);
    // A new init works again, in workers too.
    init(&mut c, &key.token_for("dave"), false).unwrap();
    assert_eq!(user_id_in_worker(&mut c).as_deref(), Some("dave"));
}

#[test]
fn failed_init_leaves_no_session_in_parallel_index_builds() {
    let (cluster, key) = keyed_cluster();
    cluster.sql("app", "CREATE SCHEMA s AUTHORIZATION alice");
    let mut c = cluster.connect("alice", "app", "");
    let leader: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    // An index expression that reports, from a worker only, what auth.user_id() is there.
    c.batch_execute(&format!(
        "CREATE FUNCTION s.probe(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$ \
         BEGIN IF pg_backend_pid() <> {leader} THEN \
           RAISE EXCEPTION 'worker saw %', coalesce(auth.user_id(), 'no session'); END IF; \
         RETURN i; END $$; \
         CREATE TABLE s.t (id int); \
         INSERT INTO s.t SELECT generate_series(1, 50000); \
         ALTER TABLE s.t SET (parallel_workers = 2); \
         SET max_parallel_maintenance_workers = 2; SET maintenance_work_mem = '256MB'"
    ))
    .unwrap();
    let worker_saw = |c: &mut Client| -> String {
        let e = c
            .batch_execute("CREATE INDEX ON s.t (s.probe(id))")
            .expect_err("no parallel worker took part in the index build");
        e.as_db_error()
            .expect("a server error")
            .message()
            .to_string()
    };
    init(&mut c, &key.token_for("bob"), false).unwrap();
    assert_eq!(worker_saw(&mut c), "worker saw bob");
    init(&mut c, &key.token_for("bob"), false).unwrap();
    assert_eq!(err_code(init(&mut c, "garbage", false)), "28000");
    // The very next statement is the index build.
    assert_eq!(worker_saw(&mut c), "worker saw no session");
    assert_eq!(user_id(&mut c), None);
}

#[test]
fn key_rotation_by_reload() {
    let (cluster, old) = keyed_cluster();
    let mut before = cluster.connect("alice", "app", "");
    let old_token = old.token_for("alice");
    init(&mut before, &old_token, false).unwrap();
    assert_eq!(user_id(&mut before).as_deref(), Some("alice"));

    // Overlap: both keys during the rotation.
    let new = Key::new();
    let both = json!({"keys": [
        serde_json::from_str::<serde_json::Value>(&old.public).unwrap(),
        serde_json::from_str::<serde_json::Value>(&new.public).unwrap(),
    ]})
    .to_string();
    cluster.set_system("pg_rls_auth.jwks", &both);
    let mut during = cluster.connect("bob", "app", "");
    init(&mut during, &old.token_for("bob"), false).unwrap();
    init(&mut during, &new.token_for("bob"), false).unwrap();
    assert_eq!(user_id(&mut during).as_deref(), Some("bob"));

    // Then the new key alone, without a restart.
    cluster.set_system("pg_rls_auth.jwks", &new.public);
    let mut after = cluster.connect("carol", "app", "");
    init(&mut after, &new.token_for("carol"), false).unwrap();
    assert_eq!(user_id(&mut after).as_deref(), Some("carol"));
    assert_eq!(
        err_code(init(&mut after, &old.token_for("carol"), false)),
        "28000"
    );
    assert_eq!(user_id(&mut after), None);
    // Connections opened before the rotation follow it too: the old token, although this
    // backend verified it before, is refused now, and the new key's tokens verify.
    assert_eq!(err_code(init(&mut before, &old_token, false)), "28000");
    assert_eq!(user_id(&mut before), None);
    init(&mut before, &new.token_for("alice"), false).unwrap();
    assert_eq!(user_id(&mut before).as_deref(), Some("alice"));
    assert_eq!(
        err_code(init(&mut during, &old.token_for("bob"), false)),
        "28000"
    );
}

#[test]
fn concurrent_connections_see_only_their_own_claims() {
    let (cluster, key) = keyed_cluster();
    let cluster = &cluster;
    let key = &key;
    std::thread::scope(|scope| {
        for role in ["alice", "bob", "carol", "dave"] {
            scope.spawn(move || {
                let mut c = cluster.connect(role, "app", &format!("-c application_name={role}"));
                for i in 0..150 {
                    let sub = format!("{role}-{i}");
                    let token = key.token(json!({"sub": sub, "role": role, "n": i}));
                    init(&mut c, &token, false).unwrap();
                    let row = c
                        .query_one(
                            "SELECT auth.user_id(), auth.claim('role'), auth.claim('n'), current_user::text",
                            &[],
                        )
                        .unwrap();
                    assert_eq!(row.get::<_, Option<String>>(0), Some(sub));
                    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(role));
                    assert_eq!(row.get::<_, Option<String>>(2), Some(i.to_string()));
                    assert_eq!(row.get::<_, String>(3), role);
                    // A transaction-local session on top, gone after COMMIT.
                    c.batch_execute("BEGIN").unwrap();
                    init(&mut c, &key.token_for(&format!("{role}-local")), true).unwrap();
                    let local = user_id(&mut c);
                    c.batch_execute("COMMIT").unwrap();
                    assert_eq!(local, Some(format!("{role}-local")));
                    assert_eq!(user_id(&mut c), Some(format!("{role}-{i}")));
                }
            });
        }
    });
}
