//! Revocation across connections and servers: a session another connection revokes ends at its
//! next statement (in parallel workers too), with the library preloaded and without it, on a
//! hot standby, and after a restart; a rolled-back revocation refuses nothing; the database
//! owner who installed the extension may revoke and delegate, client roles may not.

use pg_rls_auth_it::postgres::Client;
use pg_rls_auth_it::serde_json::json;
use pg_rls_auth_it::*;

/// A token for `sub` issued `seconds_ago`, with `jti`.
fn issued(key: &Key, sub: &str, jti: &str, seconds_ago: i64) -> String {
    key.token(json!({ "sub": sub, "jti": jti, "iat": now() - seconds_ago }))
}

/// Reads of `_pg_rls_auth.revocations` this connection has counted (its pending statistics:
/// only differences within one transaction mean something).
fn reads(client: &mut Client) -> i64 {
    client
        .query_one(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_all_tables \
             WHERE schemaname = '_pg_rls_auth' AND relname = 'revocations'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Reads of the revocations by `statements` statements on `client` in one transaction, run
/// after `meanwhile` (another connection's work, say).
fn reads_by_statements(client: &mut Client, statements: usize, meanwhile: impl FnOnce()) -> i64 {
    client.batch_execute("BEGIN").unwrap();
    let before = reads(client);
    meanwhile();
    for _ in 0..statements {
        client.batch_execute("SELECT auth.user_id()").unwrap();
    }
    let after = reads(client);
    client.batch_execute("COMMIT").unwrap();
    after - before
}

/// The revocation scenario on `cluster` (database `app`, roles alice and bob, `key`
/// configured): sessions on other connections end at their next statement.
fn sessions_end_at_their_next_statement(cluster: &Cluster, key: &Key) {
    let mut alice = cluster.connect("alice", "app", "");
    let mut bob = cluster.connect("bob", "app", "");
    let mut admin = cluster.superuser("app");
    init(&mut alice, &issued(key, "alice", "a-1", 100), false).unwrap();
    init(&mut bob, &issued(key, "bob", "b-1", 100), false).unwrap();
    assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));

    // A revocation that rolls back refuses nothing.
    admin
        .batch_execute("BEGIN; SELECT auth.revoke_sessions('alice'); ROLLBACK")
        .unwrap();
    assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));

    admin
        .batch_execute("SELECT auth.revoke_sessions('alice')")
        .unwrap();
    // Alice's next statement runs without her session, in parallel workers too; Bob's keeps.
    alice.batch_execute(&force_parallel_sql()).unwrap();
    let workers: Option<String> = alice
        .query_one(
            "SELECT max(auth.user_id()) FROM generate_series(1, 10)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(workers, None);
    assert_eq!(user_id(&mut alice), None);
    assert_eq!(user_id(&mut bob).as_deref(), Some("bob"));
    // Her old token is refused; a new one (issued after the revocation) verifies.
    let err = init(&mut alice, &issued(key, "alice", "a-1", 100), false);
    assert_eq!(err_code(err), "28000");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    init(&mut alice, &issued(key, "alice", "a-2", 0), false).unwrap();
    assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));

    // One token by jti: Bob's session with it ends; his other token verifies.
    admin
        .batch_execute("SELECT auth.revoke_token('b-1', now() + interval '1 hour')")
        .unwrap();
    assert_eq!(user_id(&mut bob), None);
    init(&mut bob, &issued(key, "bob", "b-2", 100), false).unwrap();
    assert_eq!(user_id(&mut bob).as_deref(), Some("bob"));
    admin
        .batch_execute("SELECT auth.unrevoke_sessions('alice'), auth.unrevoke_token('b-1')")
        .unwrap();
}

/// A revocation committed after a transaction or statement took its snapshot still refuses
/// the token at the next check: under REPEATABLE READ and SERIALIZABLE, with a transaction ID
/// taken or not, the session ends at the transaction's next statement; an init whose
/// statement began before the revocation committed refuses the token. The check reads the
/// latest committed revocations, never an older snapshot.
fn revocations_committed_after_the_snapshot_are_seen(cluster: &Cluster, key: &Key) {
    let mut alice = cluster.connect("alice", "app", "");
    let mut admin = cluster.superuser("app");
    let begins = [
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1",
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_catalog.txid_current()",
        "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT pg_catalog.txid_current()",
    ];
    for (i, begin) in begins.iter().enumerate() {
        let sub = format!("snapshot-{i}");
        let token = issued(key, &sub, &format!("s-{i}"), 100);
        init(&mut alice, &token, false).unwrap();
        alice.batch_execute(begin).unwrap();
        assert_eq!(
            user_id(&mut alice).as_deref(),
            Some(sub.as_str()),
            "{begin}"
        );
        admin
            .execute("SELECT auth.revoke_sessions($1)", &[&sub])
            .unwrap();
        assert_eq!(user_id(&mut alice), None, "{begin}: after the revocation");
        alice.batch_execute("COMMIT").unwrap();
        assert_eq!(
            err_code(init(&mut alice, &token, false)),
            "28000",
            "{begin}"
        );
    }
    // READ COMMITTED: the init's statement takes its snapshot, then waits for a lock while
    // the revocation commits.
    let token = issued(key, "snapshot-rc", "s-rc", 100);
    admin.batch_execute("SELECT pg_advisory_lock(7)").unwrap();
    let waiting = std::thread::spawn(move || {
        let result = alice.batch_execute(&format!(
            "SELECT pg_advisory_lock_shared(7), auth.jwt_session_init('{token}')"
        ));
        (alice, result)
    });
    let mut observer = cluster.superuser("app");
    while observer
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            &[],
        )
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    observer
        .batch_execute("SELECT auth.revoke_sessions('snapshot-rc')")
        .unwrap();
    admin.batch_execute("SELECT pg_advisory_unlock(7)").unwrap();
    let (mut alice, result) = waiting.join().unwrap();
    assert_eq!(
        err_code(result),
        "28000",
        "an init begun before the revocation"
    );
    assert_eq!(user_id(&mut alice), None);
    admin
        .batch_execute(
            "SELECT auth.unrevoke_sessions(s) FROM unnest(ARRAY['snapshot-0', 'snapshot-1', \
             'snapshot-2', 'snapshot-rc']) s",
        )
        .unwrap();
}

#[test]
fn preloaded_backends_read_revocations_only_after_a_change() {
    let (cluster, key) = Cluster::start(&[]).with_key(&["alice", "bob"]);
    sessions_end_at_their_next_statement(&cluster, &key);
    revocations_committed_after_the_snapshot_are_seen(&cluster, &key);
    // Nothing in force: once a backend has seen that (its first init), neither later inits
    // nor statements read the table.
    let mut alice = cluster.connect("alice", "app", "");
    init(&mut alice, &issued(&key, "alice", "a-3", 0), false).unwrap();
    assert_eq!(reads_by_statements(&mut alice, 5, || ()), 0);
    let mut bob = cluster.connect("bob", "app", "");
    init(&mut bob, &issued(&key, "bob", "b-3", 0), true).unwrap();
    let token = issued(&key, "bob", "b-4", 0);
    bob.batch_execute("BEGIN").unwrap();
    let before = reads(&mut bob);
    init(&mut bob, &token, true).unwrap();
    assert_eq!(user_id(&mut bob).as_deref(), Some("bob"));
    assert_eq!(reads(&mut bob) - before, 0);
    bob.batch_execute("COMMIT").unwrap();
    // A change that does not concern Alice: one lookup at her next statement, then none.
    let first = reads_by_statements(&mut alice, 5, || {
        cluster.sql("app", "SELECT auth.revoke_sessions('carol')")
    });
    assert!((1..=3).contains(&first), "{first} reads after a change");
    assert_eq!(reads_by_statements(&mut alice, 5, || ()), 0);
    assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));
}

#[test]
fn without_preload_sessions_read_revocations_once_per_statement() {
    let (cluster, key) = Cluster::start_without_preload(&[]).with_key(&["alice", "bob"]);
    sessions_end_at_their_next_statement(&cluster, &key);
    revocations_committed_after_the_snapshot_are_seen(&cluster, &key);
    let mut alice = cluster.connect("alice", "app", "");
    init(&mut alice, &issued(&key, "alice", "a-3", 0), false).unwrap();
    let total = reads_by_statements(&mut alice, 5, || ());
    assert!(total >= 5, "{total} reads by 5 statements");
    // A connection without a session never reads it.
    let mut anon = cluster.connect("bob", "app", "");
    assert_eq!(reads_by_statements(&mut anon, 5, || ()), 0);
}

#[test]
fn revocations_survive_a_restart_and_reach_a_hot_standby() {
    let primary = Cluster::start(&[]);
    primary.setup("app", &["alice"]);
    let key = Key::new();
    primary.set_system("pg_rls_auth.jwks", &key.public);
    let standby = primary.start_standby(&[]);
    let mut on_standby = standby.connect("alice", "app", "");
    init(&mut on_standby, &issued(&key, "alice", "a-1", 100), false).unwrap();
    assert_eq!(user_id(&mut on_standby).as_deref(), Some("alice"));
    primary.sql("app", "SELECT auth.revoke_sessions('alice')");
    standby.wait_for_replay(&primary);
    // Replayed, not announced: the standby's sessions check at every statement.
    assert_eq!(user_id(&mut on_standby), None);
    let err = init(&mut on_standby, &issued(&key, "alice", "a-1", 100), false);
    assert_eq!(err_code(err), "28000");
    drop(on_standby);
    drop(standby);
    primary.restart();
    let mut alice = primary.connect("alice", "app", "");
    let err = init(&mut alice, &issued(&key, "alice", "a-1", 100), false);
    assert_eq!(err_code(err), "28000");
}

#[test]
fn the_database_owner_may_revoke_and_delegate_client_roles_may_not() {
    let cluster = Cluster::start(&[]);
    cluster.database_owned_by("app", "dbo");
    cluster.sql(
        "postgres",
        "CREATE ROLE support LOGIN; CREATE ROLE alice LOGIN",
    );
    let mut dbo = cluster.connect("dbo", "app", "");
    dbo.batch_execute("CREATE EXTENSION pg_rls_auth; GRANT USAGE ON SCHEMA auth TO PUBLIC")
        .unwrap();
    dbo.batch_execute("SELECT auth.revoke_sessions('mallory')")
        .unwrap();
    // The owner reaches the revocations only through the functions.
    let err = dbo.batch_execute("SELECT * FROM _pg_rls_auth.revocations");
    assert_eq!(err_code(err), "42501");
    let err = dbo.batch_execute("DELETE FROM _pg_rls_auth.revocations");
    assert_eq!(err_code(err), "42501");
    // ... and may delegate them.
    dbo.batch_execute(
        "GRANT EXECUTE ON FUNCTION auth.revoke_sessions(text, timestamptz, timestamptz), \
         auth.revocations() TO support",
    )
    .unwrap();
    let mut support = cluster.connect("support", "app", "");
    support
        .batch_execute("SELECT auth.revoke_sessions('trudy')")
        .unwrap();
    let listed: Vec<String> = support
        .query("SELECT value FROM auth.revocations() ORDER BY value", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(listed, ["mallory", "trudy"]);
    // Client roles: no function, not the table, not by another name or through the schema.
    let mut alice = cluster.connect("alice", "app", "");
    for sql in [
        "SELECT auth.revoke_sessions('bob')",
        "SELECT auth.unrevoke_sessions('mallory')",
        "SELECT auth.revoke_token('x', now() + interval '1 hour')",
        "SELECT auth.unrevoke_token('x')",
        "SELECT * FROM auth.revocations()",
        "SELECT * FROM _pg_rls_auth.revocations",
        "INSERT INTO _pg_rls_auth.revocations VALUES ('token', 'x', NULL, now(), now(), 'alice')",
        "SELECT auth.\"REVOKE_SESSIONS\"('bob')",
    ] {
        let code = err_code(alice.batch_execute(sql));
        assert!(code == "42501" || code == "42883", "{sql}: {code}");
    }
    assert!(!cluster.is_superuser("dbo"));
}

/// A transaction that changes the revocations cannot be prepared for two-phase commit: COMMIT
/// PREPARED would make the change without telling preloaded backends, which would go on
/// trusting what they last read. Every kind of change is refused; the revocation is not made.
#[test]
fn a_transaction_that_changes_revocations_cannot_be_prepared() {
    let (cluster, key) =
        Cluster::start(&["max_prepared_transactions = 2"]).with_key(&["alice", "bob"]);
    let mut alice = cluster.connect("alice", "app", "");
    init(&mut alice, &issued(&key, "alice", "p-1", 100), false).unwrap();
    let mut admin = cluster.superuser("app");
    admin
        .batch_execute("SELECT auth.revoke_token('p-2', now() + interval '1 hour')")
        .unwrap();
    for change in [
        "SELECT auth.revoke_sessions('alice')",
        "SELECT auth.revoke_token('p-1', now() + interval '1 hour')",
        "SELECT auth.unrevoke_token('p-2')",
    ] {
        admin.batch_execute("BEGIN").unwrap();
        admin.batch_execute(change).unwrap();
        let refused = admin.batch_execute("PREPARE TRANSACTION 'revoking'");
        assert_eq!(err_code(refused), "0A000", "{change}");
        admin.batch_execute("ROLLBACK").unwrap();
        assert_eq!(user_id(&mut alice).as_deref(), Some("alice"), "{change}");
    }
    let listed: i64 = admin
        .query_one("SELECT count(*) FROM auth.revocations()", &[])
        .unwrap()
        .get(0);
    assert_eq!(listed, 1, "only the first revocation, made outside");
    // A prepared transaction that does not touch them is unaffected.
    for statement in [
        "BEGIN",
        "SELECT auth.user_id()",
        "PREPARE TRANSACTION 'other'",
        "COMMIT PREPARED 'other'",
    ] {
        admin.batch_execute(statement).unwrap();
    }
}

/// An error the statement check meets is raised without the client's statement, which may
/// carry a token: here the revocations are no longer the superuser's, and the check refuses to
/// act as their new owner. The error is logged; the statement, with its token, is not.
#[test]
fn errors_of_the_statement_check_do_not_log_the_statement() {
    let (cluster, key) = Cluster::start_without_preload(&[]).with_key(&["alice", "bob"]);
    let mut alice = cluster.connect("alice", "app", "");
    init(&mut alice, &issued(&key, "alice", "l-1", 0), false).unwrap();
    cluster.sql("app", "ALTER TABLE _pg_rls_auth.revocations OWNER TO bob");
    let carried = issued(&key, "alice", "l-2", 0);
    let failed = alice.batch_execute(&format!("SELECT auth.jwt_session_init('{carried}')"));
    assert_eq!(err_code(failed), "42501");
    let log = cluster.log();
    assert!(log.contains("refuses to"), "the error is logged: {log}");
    let signature = carried.rsplit('.').next().unwrap();
    assert!(
        !log.contains(signature),
        "the statement, with its token, is logged"
    );
}
