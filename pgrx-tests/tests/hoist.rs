//! pg_rls_auth.hoist_session_calls through a real client, the way PostgREST and poolers run
//! queries: one prepared statement (extended protocol) reused across transactions, each with
//! its own transaction-local session, under every plan cache mode, with and without parallel
//! workers. Each execution must return its own user's rows: a hoisted call is an initplan
//! parameter, never a constant the cached plan keeps.

use pg_rls_auth_it::postgres::Client;
use pg_rls_auth_it::*;

/// Database `app` with `docs` (1,000 rows, owners user-0 … user-9, indexed) under the bare
/// policy `owner_id = auth.user_id()`, readable by role `api`.
fn docs_cluster() -> (Cluster, Key) {
    let (cluster, key) = Cluster::start(&[]).with_key(&["api"]);
    cluster.sql(
        "app",
        "CREATE TABLE docs (id int PRIMARY KEY, owner_id text NOT NULL);
         INSERT INTO docs SELECT g, 'user-' || (g % 10) FROM generate_series(1, 1000) g;
         CREATE INDEX ON docs (owner_id);
         ANALYZE docs;
         ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
         CREATE POLICY own ON docs USING (owner_id = auth.user_id());
         GRANT SELECT ON docs TO api;",
    );
    (cluster, key)
}

/// Runs the prepared query as `user`, in a transaction of its own with a transaction-local
/// session (PostgREST's pattern); returns (rows, min owner, max owner).
fn request(
    c: &mut Client,
    key: &Key,
    stmt: &pg_rls_auth_it::postgres::Statement,
    user: &str,
) -> (i64, String, String) {
    let mut tx = c.transaction().unwrap();
    tx.execute(
        "SELECT auth.jwt_session_init($1, true)",
        &[&key.token_for(user)],
    )
    .unwrap();
    let row = tx.query_one(stmt, &[&0i32]).unwrap();
    tx.commit().unwrap();
    (row.get(0), row.get(1), row.get(2))
}

fn plan(c: &mut Client, sql: &str) -> String {
    c.query(&format!("EXPLAIN (COSTS OFF) {sql}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0) + "\n")
        .collect()
}

#[test]
fn a_reused_prepared_statement_serves_each_request_its_own_user() {
    let (cluster, key) = docs_cluster();
    for (mode, parallel) in [
        ("force_generic_plan", false),
        ("force_custom_plan", false),
        ("auto", false),
        ("force_generic_plan", true),
    ] {
        let mut c = cluster.connect("api", "app", "");
        c.batch_execute(&format!("SET plan_cache_mode = {mode}"))
            .unwrap();
        if parallel {
            c.batch_execute(&force_parallel_sql()).unwrap();
        }
        let sql = "SELECT count(*), min(owner_id), max(owner_id) FROM docs WHERE id > $1";
        let stmt = c.prepare(sql).unwrap();
        // More executions than the 5 after which `auto` switches to a generic plan.
        for i in 0..12 {
            let user = format!("user-{}", (i * 7) % 10);
            let (rows, min, max) = request(&mut c, &key, &stmt, &user);
            assert_eq!(
                (rows, min.as_str(), max.as_str()),
                (100, user.as_str(), user.as_str()),
                "{mode}, parallel {parallel}, request {i}"
            );
        }
        // Without a session the same statement returns nothing.
        let row = c.query_one(&stmt, &[&0i32]).unwrap();
        assert_eq!(row.get::<_, i64>(0), 0, "{mode}: no session, no rows");
        let explained = plan(&mut c, "SELECT count(*) FROM docs");
        assert!(explained.contains("InitPlan"), "{mode}: {explained}");
        assert!(!explained.contains("user-"), "{mode}: {explained}");
    }
}

#[test]
fn hoisting_is_the_superusers_to_turn_off_and_off_plans_as_written() {
    let (cluster, key) = docs_cluster();
    let mut c = cluster.connect("api", "app", "");
    let err = c
        .batch_execute("SET pg_rls_auth.hoist_session_calls = off")
        .unwrap_err();
    assert_eq!(
        sqlstate(&err).as_deref(),
        Some("42501"),
        "{}",
        describe(&err)
    );
    // Nor from the startup packet, in any letter case.
    let refused = cluster.try_connect("api", "app", "-c PG_RLS_AUTH.Hoist_Session_Calls=off");
    assert!(
        refused.is_err(),
        "a client turned hoisting off at connection start"
    );
    cluster.sql(
        "app",
        "ALTER ROLE api SET pg_rls_auth.hoist_session_calls = off",
    );
    let mut c = cluster.connect("api", "app", "");
    let explained = plan(&mut c, "SELECT count(*) FROM docs");
    assert!(!explained.contains("InitPlan"), "{explained}");
    assert!(explained.contains("auth.user_id()"), "{explained}");
    let stmt = c
        .prepare("SELECT count(*), min(owner_id), max(owner_id) FROM docs WHERE id > $1")
        .unwrap();
    for user in ["user-1", "user-2"] {
        assert_eq!(
            request(&mut c, &key, &stmt, user),
            (100, user.into(), user.into())
        );
    }
}
