//! The write-rate limiter under concurrency, through real connections of ordinary roles, for
//! both stores: 8 connections hammering one key, and 8 spread over 100 keys. The window is a
//! year, so refill during a test is negligible and the model is exact: a key admits
//! min(attempts, max_writes). Every refusal is PT429 (or `false` with action `deny`); anything
//! else (a deadlock, a serialization failure, a timeout) fails the test.

use pg_rls_auth_it::postgres::Client;
use pg_rls_auth_it::*;
use std::collections::HashMap;

const YEAR: i32 = 86_400 * 365;
const THREADS: usize = 8;
/// Bounds every statement: a deadlock or a lost wake-up fails instead of hanging.
const TIMEOUTS: &str = "-c statement_timeout=60000 -c lock_timeout=60000";

/// Roles: `mem` (memory store), `tab` (table store), `mem_deny` / `tab_deny` (action deny).
fn limiter_cluster() -> Cluster {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["mem", "tab", "mem_deny", "tab_deny"]);
    cluster.sql(
        "app",
        "ALTER ROLE tab SET pg_rls_auth.rate_limit_store = 'table'; \
         ALTER ROLE tab_deny SET pg_rls_auth.rate_limit_store = 'table'; \
         ALTER ROLE mem_deny SET pg_rls_auth.rate_limit_action = 'deny'; \
         ALTER ROLE tab_deny SET pg_rls_auth.rate_limit_action = 'deny'",
    );
    cluster
}

#[derive(Default)]
struct Outcome {
    admitted: HashMap<String, u64>,
    refused: u64,
}

/// One check in its own (autocommit) transaction: Some(true) admitted, Some(false) refused.
fn check(c: &mut Client, key: &str, max_writes: i32, bucket: &str, deny: bool) -> bool {
    match c.query_one(
        "SELECT auth.check_write_rate($1::text, $2, $3, $4)",
        &[&key, &max_writes, &YEAR, &bucket],
    ) {
        Ok(row) => {
            let allowed: bool = row.get(0);
            assert!(allowed || deny, "false returned with action = error");
            allowed
        }
        Err(e) => {
            assert!(!deny, "an error with action = deny: {}", describe(&e));
            let db = e
                .as_db_error()
                .unwrap_or_else(|| panic!("not a server error: {e}"));
            assert_eq!(db.code().code(), "PT429", "{}", describe(&e));
            assert!(db.message().contains("rate limit"), "{}", db.message());
            false
        }
    }
}

/// `THREADS` connections of `role`, `per_thread` checks each, spread evenly over `keys` keys.
fn hammer(
    cluster: &Cluster,
    role: &str,
    per_thread: usize,
    keys: usize,
    max_writes: i32,
    bucket: &str,
) -> Outcome {
    let deny = role.ends_with("_deny");
    let results: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    let mut c = cluster.connect(role, "app", TIMEOUTS);
                    let mut out = Outcome::default();
                    for i in 0..per_thread {
                        let key = format!("k{}", (i * THREADS + t) % keys);
                        if check(&mut c, &key, max_writes, bucket, deny) {
                            *out.admitted.entry(key).or_default() += 1;
                        } else {
                            out.refused += 1;
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a thread panicked"))
            .collect()
    });
    let mut total = Outcome::default();
    for r in results {
        total.refused += r.refused;
        for (k, n) in r.admitted {
            *total.admitted.entry(k).or_default() += n;
        }
    }
    total
}

/// Runs one scenario and checks the exact model, the store used and what the store says.
fn scenario(cluster: &Cluster, role: &str, per_thread: usize, keys: usize, max_writes: i32) {
    let bucket = format!("{role}-{per_thread}x{keys}-{max_writes}");
    let out = hammer(cluster, role, per_thread, keys, max_writes, &bucket);
    let attempts_per_key = (THREADS * per_thread / keys) as u64;
    assert_eq!(
        attempts_per_key * keys as u64,
        (THREADS * per_thread) as u64
    );
    let expected = attempts_per_key.min(max_writes as u64);
    let mut wrong: Vec<(String, u64)> = (0..keys)
        .map(|k| format!("k{k}"))
        .map(|k| {
            let n = out.admitted.get(&k).copied().unwrap_or(0);
            (k, n)
        })
        .filter(|(_, n)| *n != expected)
        .collect();
    wrong.sort();
    assert!(
        wrong.is_empty(),
        "{bucket}: every key should admit exactly {expected} of {attempts_per_key}; these did not: {wrong:?}"
    );
    assert_eq!(
        out.refused,
        (attempts_per_key - expected) * keys as u64,
        "{bucket}"
    );
    // The store agrees: nothing remains where the limit was reached.
    let mut c = cluster.connect(role, "app", "");
    let store: String = c
        .query_one("SELECT store FROM auth.write_rate_stats()", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        store,
        if role.starts_with("tab") {
            "table"
        } else {
            "memory"
        }
    );
    let remaining: i32 = c
        .query_one(
            "SELECT remaining FROM auth.write_rate_status('k0', $1, $2, $3)",
            &[&max_writes, &YEAR, &bucket],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        remaining as u64,
        max_writes as u64 - expected,
        "{bucket}: remaining"
    );
}

#[test]
fn memory_store_one_key_exact_under_concurrency() {
    let cluster = limiter_cluster();
    scenario(&cluster, "mem", 200, 1, 500); // 1600 attempts: exactly 500 admitted
    scenario(&cluster, "mem", 100, 1, 1000); // 800 attempts: all admitted
    scenario(&cluster, "mem_deny", 200, 1, 500);
}

#[test]
fn memory_store_many_keys_exact_under_concurrency() {
    let cluster = limiter_cluster();
    scenario(&cluster, "mem", 200, 100, 5); // 16 attempts per key: 5 admitted each
    scenario(&cluster, "mem", 100, 100, 500); // 8 per key: all admitted
    scenario(&cluster, "mem_deny", 200, 100, 5);
    // The shared counters saw every check.
    let row = cluster
        .superuser("app")
        .query_one(
            "SELECT checks, admitted, rejected FROM auth.write_rate_stats()",
            &[],
        )
        .unwrap();
    let (checks, admitted, rejected): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(checks, 3 * 1600 - 800);
    assert_eq!(admitted, 500 + 800 + 500);
    assert_eq!(rejected, checks - admitted);
}

#[test]
fn table_store_one_key_exact_under_concurrency() {
    let cluster = limiter_cluster();
    scenario(&cluster, "tab", 300, 1, 500); // 2400 transactions queueing on one row
    scenario(&cluster, "tab", 50, 1, 1000); // 400 attempts: all admitted
    scenario(&cluster, "tab_deny", 100, 1, 500);
}

/// 8 connections x 10,000 checks over 100 keys, each check its own transaction.
#[test]
fn memory_store_eighty_thousand_checks_over_100_keys() {
    let cluster = limiter_cluster();
    scenario(&cluster, "mem", 10_000, 100, 500); // 800 attempts per key: 500 admitted each
}

#[test]
fn table_store_eighty_thousand_checks_over_100_keys() {
    let cluster = limiter_cluster();
    scenario(&cluster, "tab", 10_000, 100, 500);
}

#[test]
fn table_store_many_keys_exact_under_concurrency() {
    let cluster = limiter_cluster();
    scenario(&cluster, "tab", 100, 100, 5); // 8 attempts per key: 5 admitted each
    scenario(&cluster, "tab", 50, 100, 500); // 4 per key: all admitted
    scenario(&cluster, "tab_deny", 100, 100, 5);
}

/// The RLS scenario: WITH CHECK lets exactly 100 inserts of one user through (also when
/// 8 connections of that user race), the next fails with PT429, and other users are unaffected.
fn rls_scenario(store: &str) {
    let (cluster, key) = Cluster::start(&[]).with_key(&["alice", "bob"]);
    cluster.set_system("pg_rls_auth.rate_limit_store", store);
    cluster.sql(
        "app",
        "CREATE TABLE public.posts (id bigserial PRIMARY KEY, \
                                    owner text NOT NULL DEFAULT auth.user_id(), body text); \
         ALTER TABLE public.posts ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY posts_insert ON public.posts FOR INSERT \
           WITH CHECK (owner = auth.user_id() AND auth.check_write_rate(auth.user_id(), 100, 3600)); \
         CREATE POLICY posts_select ON public.posts FOR SELECT USING (owner = auth.user_id()); \
         GRANT SELECT, INSERT ON public.posts TO alice, bob; \
         GRANT USAGE ON SEQUENCE public.posts_id_seq TO alice, bob",
    );
    let insert = "INSERT INTO public.posts (body) VALUES ($1)";
    // One connection: 100 inserts pass, the 101st is the limiter's error.
    let mut alice = cluster.connect("alice", "app", TIMEOUTS);
    init(&mut alice, &key.token_for("poster"), false).unwrap();
    for i in 0..100 {
        alice
            .execute(insert, &[&format!("post {i}")])
            .unwrap_or_else(|e| panic!("insert {i}: {}", describe(&e)));
    }
    let e = alice
        .execute(insert, &[&"one too many"])
        .expect_err("the 101st insert passed");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "PT429", "{}", describe(&e));
    assert!(db.message().contains("rate limit"), "{}", db.message());
    let count: i64 = alice
        .query_one("SELECT count(*) FROM public.posts", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 100);
    // Someone else's rows cannot be written, limit or not.
    let e = alice
        .execute(
            "INSERT INTO public.posts (owner, body) VALUES ('racer', 'x')",
            &[],
        )
        .expect_err("wrote a row as someone else");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));

    // 8 connections of another user race: exactly 100 rows land. (The table store's first
    // check of a key is not exact under concurrency, see
    // table_store_first_check_of_a_key_is_exact_under_concurrency: the first insert is alone.)
    let token = key.token_for("racer");
    let mut bob = cluster.connect("bob", "app", "");
    init(&mut bob, &token, false).unwrap();
    bob.execute(insert, &[&"first"]).unwrap();
    let (cluster_ref, token_ref) = (&cluster, &token);
    let (ok, limited): (Vec<u64>, Vec<u64>) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    let mut c = cluster_ref.connect("bob", "app", TIMEOUTS);
                    init(&mut c, token_ref, false).unwrap();
                    let (mut ok, mut limited) = (0, 0);
                    for i in 0..25 {
                        match c.execute(insert, &[&format!("race {t}.{i}")]) {
                            Ok(_) => ok += 1,
                            Err(e) => {
                                assert_eq!(
                                    sqlstate(&e).as_deref(),
                                    Some("PT429"),
                                    "{}",
                                    describe(&e)
                                );
                                limited += 1;
                            }
                        }
                    }
                    (ok, limited)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a thread panicked"))
            .unzip()
    });
    assert_eq!(ok.iter().sum::<u64>(), 99, "{store}: inserts admitted");
    assert_eq!(limited.iter().sum::<u64>(), 101, "{store}: inserts limited");
    let count: i64 = bob
        .query_one("SELECT count(*) FROM public.posts", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 100);
    // alice is still limited, and sees only her own rows.
    let count: i64 = alice
        .query_one("SELECT count(*) FROM public.posts", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 100);
    assert_eq!(
        err_code(alice.execute(insert, &[&"still limited"])),
        "PT429"
    );
}

#[test]
fn rls_policy_limits_inserts_memory_store() {
    rls_scenario("memory");
}

#[test]
fn rls_policy_limits_inserts_table_store() {
    rls_scenario("table");
}

/// Transactions overlapping on one key: the first checks it and holds its transaction open
/// while three others check the same key, then commits. With one write left, exactly one of
/// the four may be admitted. Returns how many were.
fn overlapping_checks(cluster: &Cluster, max_writes: i32, used_before: i32) -> usize {
    let contenders = 3;
    let bucket = format!("overlap-{max_writes}-{used_before}");
    let mut first = cluster.connect("tab", "app", TIMEOUTS);
    for _ in 0..used_before {
        assert!(check(&mut first, "k", max_writes, &bucket, false));
    }
    first.batch_execute("BEGIN").unwrap();
    assert!(check(&mut first, "k", max_writes, &bucket, false));
    let bucket = &bucket;
    let cluster_ref = cluster;
    let admitted: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..contenders)
            .map(|_| {
                scope.spawn(move || {
                    let mut c = cluster_ref.connect("tab", "app", TIMEOUTS);
                    c.batch_execute("BEGIN").unwrap();
                    let allowed = check(&mut c, "k", max_writes, bucket, false);
                    c.batch_execute("COMMIT").unwrap();
                    allowed
                })
            })
            .collect();
        // Wait until every contender is blocked behind the first transaction, then commit it.
        let mut admin = cluster_ref.superuser("app");
        wait_until(
            std::time::Duration::from_secs(30),
            "contenders never queued",
            || {
                let waiting: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'tab' AND wait_event_type = 'Lock'",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                waiting == contenders as i64
            },
        );
        first.batch_execute("COMMIT").unwrap();
        handles
            .into_iter()
            .map(|h| h.join().expect("a thread panicked"))
            .filter(|a| *a)
            .count()
    });
    admitted + 1
}

#[test]
fn table_store_overlapping_checks_of_a_key_are_exact() {
    let cluster = limiter_cluster();
    assert_eq!(
        overlapping_checks(&cluster, 2, 1),
        1,
        "admitted for the last write left"
    );
    assert_eq!(
        overlapping_checks(&cluster, 5, 4),
        1,
        "admitted for the last write left"
    );
}

#[test]
fn table_store_first_check_of_a_key_is_exact_under_concurrency() {
    let cluster = limiter_cluster();
    assert_eq!(
        overlapping_checks(&cluster, 1, 0),
        1,
        "admitted for a limit of 1 write"
    );
}

/// The memory store starts empty after a restart; the table store keeps its state.
#[test]
fn stores_across_a_restart() {
    let cluster = limiter_cluster();
    for role in ["mem", "tab"] {
        let mut c = cluster.connect(role, "app", "");
        assert!(check(&mut c, "k", 1, "restart", false));
        assert!(!check(&mut c, "k", 1, "restart", false));
    }
    cluster.restart();
    let mut mem = cluster.connect("mem", "app", "");
    assert!(
        check(&mut mem, "k", 1, "restart", false),
        "memory store kept state"
    );
    let mut tab = cluster.connect("tab", "app", "");
    assert!(
        !check(&mut tab, "k", 1, "restart", false),
        "table store lost state"
    );
}

/// The table store's common case replaces a row without a statement (`table_heap`). When the
/// row's page is full the new version lands on another page and needs its own index entry:
/// 300 keys fill the table's pages, then one transaction checks each again. Every row must
/// then still be found through the primary key, with the state that check wrote.
#[test]
fn table_store_rows_stay_indexed_when_updates_leave_their_page() {
    let cluster = limiter_cluster();
    let mut c = cluster.superuser("app");
    c.batch_execute("SET pg_rls_auth.rate_limit_store = 'table'")
        .unwrap();
    let keys = 300;
    let check_all = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT count(*) FILTER (WHERE auth.check_write_rate('k' || i, 2, $1, 'pages')) \
             FROM generate_series(1, $2) i",
            &[&YEAR, &keys],
        )
        .unwrap()
        .get(0)
    };
    c.batch_execute("SET pg_rls_auth.rate_limit_action = 'deny'")
        .unwrap();
    assert_eq!(check_all(&mut c), i64::from(keys), "first writes");
    c.batch_execute("BEGIN").unwrap();
    assert_eq!(check_all(&mut c), i64::from(keys), "second writes");
    let (updated, hot): (i64, i64) = {
        let row = c
            .query_one(
                "SELECT pg_stat_get_xact_tuples_updated(r), pg_stat_get_xact_tuples_hot_updated(r) \
                 FROM CAST('_pg_rls_auth.write_rate_state' AS regclass) r",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    c.batch_execute("COMMIT").unwrap();
    assert_eq!(updated, i64::from(keys), "one update per key");
    assert!(
        hot < updated,
        "no update left its page ({hot} of {updated} HOT)"
    );
    c.batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .unwrap();
    let plan: String = c
        .query(
            "EXPLAIN SELECT count(*) FROM _pg_rls_auth.write_rate_state WHERE id >= ''::bytea",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect();
    assert!(plan.contains("Index"), "not read through the index: {plan}");
    let indexed: i64 = c
        .query_one(
            "SELECT count(*) FROM _pg_rls_auth.write_rate_state WHERE id >= ''::bytea",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(indexed, i64::from(keys), "rows found through the index");
    assert_eq!(check_all(&mut c), 0, "third writes, over the limit of 2");
    if c.batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        .is_ok()
    {
        c.batch_execute(
            "SELECT bt_index_parent_check('_pg_rls_auth.write_rate_state_pkey', true, true)",
        )
        .unwrap();
    }
}

/// `check_write_rate(key, max_writes, YEAR, bucket)` in `c`'s transaction: its SQLSTATE if it
/// failed.
fn check_fails(c: &mut Client, key: &str, max_writes: i32, bucket: &str) -> Option<String> {
    c.query_one(
        "SELECT auth.check_write_rate($1::text, $2, $3, $4)",
        &[&key, &max_writes, &YEAR, &bucket],
    )
    .err()
    .map(|e| sqlstate(&e).unwrap_or_else(|| panic!("not a server error: {e}")))
}

/// Another transaction writes a key after this one began, then this one checks the key twice.
/// READ COMMITTED counts that write and commits on top of it. REPEATABLE READ and SERIALIZABLE
/// fail the first check with 40001 (the one serialization failure this suite expects): never
/// admit checks from the snapshot's state, nor admit them and then fail at commit, when their
/// state is written back.
#[test]
fn table_store_checks_after_a_concurrent_write_in_every_isolation_level() {
    let cluster = limiter_cluster();
    let mut a = cluster.connect("tab", "app", TIMEOUTS);
    let mut b = cluster.connect("tab", "app", TIMEOUTS);
    for level in ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"] {
        let bucket = level;
        assert!(
            check(&mut a, "k", 4, bucket, false),
            "{level}: the first write"
        );
        let begin = format!("BEGIN ISOLATION LEVEL {level}; SELECT 1");
        a.batch_execute(&begin).unwrap();
        assert!(
            check(&mut b, "k", 4, bucket, false),
            "{level}: the second write"
        );
        let mut third = check_fails(&mut a, "k", 4, bucket);
        if level != "READ COMMITTED" {
            assert_eq!(third.as_deref(), Some("40001"), "{level}: the third write");
            a.batch_execute("ROLLBACK").unwrap();
            // Begun after the second write: both checks admitted, and written back at commit.
            a.batch_execute(&begin).unwrap();
            third = check_fails(&mut a, "k", 4, bucket);
        }
        assert_eq!(third, None, "{level}: the third write");
        assert_eq!(
            check_fails(&mut a, "k", 4, bucket),
            None,
            "{level}: the fourth"
        );
        a.batch_execute("COMMIT").unwrap();
        assert!(
            !check(&mut b, "k", 4, bucket, false),
            "{level}: a fifth write"
        );
    }
}

/// A superuser's change to the state table that an UPDATE statement honours is honoured by
/// every check of a key whose row exists, the common case included: a CHECK constraint, a
/// publication of updates with no replica identity, a trigger.
#[test]
fn table_store_honours_what_a_superuser_adds_to_its_table() {
    let cluster = limiter_cluster();
    let mut a = cluster.connect("tab", "app", TIMEOUTS);
    let mut su = cluster.superuser("app");
    for key in ["checked", "published", "triggered"] {
        assert_eq!(
            check_fails(&mut a, key, 4, "t"),
            None,
            "the first write of {key}"
        );
    }
    let table = "_pg_rls_auth.write_rate_state";
    su.batch_execute(&format!(
        "ALTER TABLE {table} ADD CONSTRAINT never CHECK (free_at < 0) NOT VALID"
    ))
    .unwrap();
    assert_eq!(
        check_fails(&mut a, "checked", 4, "t").as_deref(),
        Some("23514"),
        "a write against the CHECK constraint"
    );
    su.batch_execute(&format!(
        "ALTER TABLE {table} DROP CONSTRAINT never; \
         ALTER TABLE {table} REPLICA IDENTITY NOTHING; \
         CREATE PUBLICATION updates_of_state FOR TABLE {table}"
    ))
    .unwrap();
    assert_eq!(
        check_fails(&mut a, "published", 4, "t").as_deref(),
        Some("55000"),
        "a write to a table that publishes updates and has no replica identity"
    );
    su.batch_execute(&format!(
        "DROP PUBLICATION updates_of_state; \
         ALTER TABLE {table} REPLICA IDENTITY DEFAULT; \
         CREATE TABLE public.updates (id bytea); \
         CREATE FUNCTION public.note_update() RETURNS trigger LANGUAGE plpgsql \
         AS $$BEGIN INSERT INTO public.updates VALUES (NEW.id); RETURN NEW; END$$; \
         CREATE TRIGGER note AFTER UPDATE ON {table} \
         FOR EACH ROW EXECUTE FUNCTION public.note_update()"
    ))
    .unwrap();
    assert_eq!(
        check_fails(&mut a, "triggered", 4, "t"),
        None,
        "a second write"
    );
    let noted: i64 = su
        .query_one("SELECT count(*) FROM public.updates", &[])
        .unwrap()
        .get(0);
    assert_eq!(noted, 1, "the trigger saw the update");
}
