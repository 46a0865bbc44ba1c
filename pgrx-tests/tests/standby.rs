//! Hot standbys: users scale reads with streaming replicas. On a standby, sessions verify and
//! RLS policies using auth.* filter rows; the memory-store limiter works (each server counts
//! its own checks); the table store, which cannot write there, refuses with a clear error.

use pg_rls_auth_it::*;

#[test]
fn sessions_policies_and_the_limiter_work_on_a_hot_standby() {
    let primary = Cluster::start(&[]);
    primary.setup("app", &["alice", "bob"]);
    let key = Key::new();
    // Keys set with ALTER SYSTEM live in postgresql.auto.conf, which the base backup copies.
    primary.set_system("pg_rls_auth.jwks", &key.public);
    primary.sql(
        "app",
        "CREATE TABLE public.notes (owner_id text NOT NULL, body text);
         ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY own ON public.notes FOR SELECT USING (owner_id = auth.user_id());
         GRANT SELECT ON public.notes TO alice, bob;
         INSERT INTO public.notes VALUES ('alice', 'a1'), ('alice', 'a2'), ('bob', 'b1');",
    );
    let standby = primary.start_standby(&[]);
    standby.wait_for_replay(&primary);
    let mut alice = standby.connect("alice", "app", "");
    let in_recovery: bool = alice
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery);
    // Sessions verify and policies filter, in local (transaction) mode too.
    init(&mut alice, &key.token_for("alice"), false).unwrap();
    let visible: Vec<String> = alice
        .query("SELECT body FROM public.notes ORDER BY body", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(visible, ["a1", "a2"]);
    let mut tx = alice.transaction().unwrap();
    tx.execute(
        "SELECT auth.jwt_session_init($1, true)",
        &[&key.token_for("bob")],
    )
    .unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM public.notes", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    tx.commit().unwrap();
    assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));
    // A forged token is refused there as anywhere.
    assert_eq!(
        err_code(init(&mut alice, &Key::new().token_for("bob"), false)),
        "28000"
    );
    // The memory store works on the standby.
    let mut bob = standby.connect("bob", "app", "");
    for _ in 0..3 {
        bob.batch_execute("SELECT auth.check_write_rate('bob', 3, 3600)")
            .unwrap();
    }
    assert_eq!(
        err_code(bob.batch_execute("SELECT auth.check_write_rate('bob', 3, 3600)")),
        "PT429"
    );
    // The table store cannot write on a standby: a clear error, not a failed INSERT.
    bob.batch_execute("SET pg_rls_auth.rate_limit_store = 'table'")
        .unwrap_err();
    let mut admin = standby.superuser("app");
    admin
        .batch_execute("SET pg_rls_auth.rate_limit_store = 'table'")
        .unwrap();
    assert_table_store_refused(&mut admin, "bob");
}

/// A check through the table store on a standby fails with 25006, saying why.
fn assert_table_store_refused(c: &mut pg_rls_auth_it::postgres::Client, key: &str) {
    let err = c
        .execute("SELECT auth.check_write_rate($1::text, 3, 3600)", &[&key])
        .unwrap_err();
    assert_eq!(
        sqlstate(&err).as_deref(),
        Some("25006"),
        "{}",
        describe(&err)
    );
    assert!(describe(&err).contains("hot standby"), "{}", describe(&err));
}

#[test]
fn a_standby_without_preload_refuses_the_limiter_clearly() {
    let primary = Cluster::start_without_preload(&[]);
    primary.setup("app", &["alice"]);
    let standby = primary.start_standby(&[]);
    standby.wait_for_replay(&primary);
    let mut alice = standby.connect("alice", "app", "");
    assert_table_store_refused(&mut alice, "alice");
}
