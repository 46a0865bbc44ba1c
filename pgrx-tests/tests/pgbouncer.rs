//! Behind PgBouncer in transaction pooling, server connections pass from client to client
//! between transactions. `auth.jwt_session_init(token, local => true)` ends with the
//! transaction, so no client ever sees another's session; session-level init does not, unless
//! PgBouncer resets every server connection it hands back.
//!
//! Through PgBouncer only the simple query protocol is used: named prepared statements do not
//! survive transaction pooling.

use pg_rls_auth_it::postgres::{Client, SimpleQueryMessage};
use pg_rls_auth_it::*;

const CLIENTS: usize = 8;
const TRANSACTIONS: usize = 1_000;

/// The first column of the first row of `sql`, as text (None for NULL).
fn value(c: &mut Client, sql: &str) -> Option<String> {
    let messages = c
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(String::from)),
            _ => None,
        })
        .expect("one row")
}

/// A cluster with an RLS-protected table, and the shared login role `app` that every client
/// connects as (identity comes from the token, as with PostgREST's authenticator role).
fn notes_cluster() -> (Cluster, Key) {
    let (cluster, key) = Cluster::start(&[]).with_key(&["app"]);
    cluster.sql(
        "app",
        "CREATE TABLE public.notes (id bigserial PRIMARY KEY, owner text NOT NULL, body text); \
         ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY own ON public.notes USING (owner = (SELECT auth.user_id())) \
             WITH CHECK (owner = (SELECT auth.user_id())); \
         GRANT SELECT, INSERT ON public.notes TO app; \
         GRANT USAGE ON SEQUENCE public.notes_id_seq TO app",
    );
    (cluster, key)
}

#[test]
fn local_sessions_never_cross_clients_under_transaction_pooling() {
    let (cluster, key) = notes_cluster();
    let bouncer = PgBouncer::start(&cluster, &["app", "postgres"], 2, &[]);
    std::thread::scope(|scope| {
        for n in 0..CLIENTS {
            let (bouncer, key) = (&bouncer, &key);
            scope.spawn(move || {
                let me = format!("user{n}");
                let token = quote(&key.token(pg_rls_auth_it::serde_json::json!({
                    "sub": me, "exp": now() + 3600
                })));
                let mut c = bouncer.connect("app", "app");
                for i in 0..TRANSACTIONS {
                    // One round trip per statement, so transactions of different clients
                    // interleave on the two server connections.
                    c.simple_query("BEGIN").unwrap();
                    value(
                        &mut c,
                        &format!("SELECT auth.jwt_session_init({token}, true)"),
                    );
                    assert_eq!(
                        value(&mut c, "SELECT auth.user_id()").as_deref(),
                        Some(&*me)
                    );
                    c.simple_query(&format!(
                        "INSERT INTO public.notes (owner, body) VALUES ({}, 'note {i}')",
                        quote(&me)
                    ))
                    .unwrap();
                    let others = value(
                        &mut c,
                        &format!(
                            "SELECT count(*) FROM public.notes WHERE owner <> {}",
                            quote(&me)
                        ),
                    );
                    assert_eq!(
                        others.as_deref(),
                        Some("0"),
                        "{me} read another user's rows"
                    );
                    let mine = value(&mut c, "SELECT count(*) FROM public.notes");
                    assert_eq!(mine, Some((i + 1).to_string()), "{me}'s rows");
                    c.simple_query("COMMIT").unwrap();
                    // Between transactions this client has no session at all.
                    assert_eq!(value(&mut c, "SELECT auth.user_id()"), None);
                }
                // Writing as someone else fails.
                c.simple_query("BEGIN").unwrap();
                value(
                    &mut c,
                    &format!("SELECT auth.jwt_session_init({token}, true)"),
                );
                let err = c
                    .simple_query("INSERT INTO public.notes (owner) VALUES ('someone-else')")
                    .unwrap_err();
                assert_eq!(
                    sqlstate(&err).as_deref(),
                    Some("42501"),
                    "{}",
                    describe(&err)
                );
                c.simple_query("ROLLBACK").unwrap();
            });
        }
    });
    // Every row is where its writer put it: 1,000 per user, nothing else.
    let mut admin = cluster.superuser("app");
    let rows = admin
        .query(
            "SELECT owner, count(*) FROM public.notes GROUP BY owner ORDER BY owner",
            &[],
        )
        .unwrap();
    let counts: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: Vec<(String, i64)> = (0..CLIENTS)
        .map(|n| (format!("user{n}"), TRANSACTIONS as i64))
        .collect();
    assert_eq!(counts, expected);
}

/// With one server connection, what one client's session-level init leaves behind is what the
/// next client gets: its identity. A reset of every returned connection (or `local`) stops it.
#[test]
fn session_level_init_leaks_across_clients_under_transaction_pooling() {
    let (cluster, key) = notes_cluster();
    let alice_token = quote(&key.token_for("alice"));

    let bouncer = PgBouncer::start(&cluster, &["app", "postgres"], 1, &[]);
    let mut alice = bouncer.connect("app", "app");
    let mut bob = bouncer.connect("app", "app");
    value(
        &mut alice,
        &format!("SELECT auth.jwt_session_init({alice_token})"),
    );
    assert_eq!(
        value(&mut bob, "SELECT auth.user_id()").as_deref(),
        Some("alice"),
        "bob, who never signed in, got alice's session: the hazard this test documents"
    );
    // The same with local => true: nothing outlives alice's transaction.
    value(&mut alice, "SELECT auth.end_session()");
    value(
        &mut alice,
        &format!("SELECT auth.jwt_session_init({alice_token}, true)"),
    );
    assert_eq!(value(&mut bob, "SELECT auth.user_id()"), None);
    drop((alice, bob, bouncer));

    // PgBouncer resetting each connection it hands back also ends the leak.
    let bouncer = PgBouncer::start(
        &cluster,
        &["app", "postgres"],
        1,
        &[
            "server_reset_query = DISCARD ALL",
            "server_reset_query_always = 1",
        ],
    );
    let mut alice = bouncer.connect("app", "app");
    let mut bob = bouncer.connect("app", "app");
    value(
        &mut alice,
        &format!("SELECT auth.jwt_session_init({alice_token})"),
    );
    assert_eq!(value(&mut bob, "SELECT auth.user_id()"), None);
}
