//! The trust review's attacks, each tried as the attacker would: a database owner who installed
//! the extension (it is trusted), an ordinary role, or a client's startup packet — and each
//! again with another name, letter case, order or object than the one first reported.

use pg_rls_auth_it::postgres::Client;
use pg_rls_auth_it::serde_json::json;
use pg_rls_auth_it::*;
use std::time::{Duration, Instant};

/// A trigger function that makes `dbo` a superuser if it ever runs with a superuser's rights.
const ESCALATE: &str = "CREATE FUNCTION public.pwn() RETURNS trigger LANGUAGE plpgsql AS \
    $$BEGIN EXECUTE 'ALTER ROLE dbo SUPERUSER'; RETURN NEW; END$$";

/// Look-alikes of the state table, old shape and new, each with the escalating trigger.
fn plant_look_alikes(c: &mut Client, schema: &str) {
    c.batch_execute(&format!(
        "CREATE TABLE {schema}.write_rate_state (bucket text, key text, tat numeric, scale int, \
             PRIMARY KEY (bucket, key));
         CREATE TRIGGER pwn BEFORE INSERT OR UPDATE OR DELETE ON {schema}.write_rate_state
             FOR EACH ROW EXECUTE FUNCTION public.pwn();
         CREATE TABLE {schema}.write_rate_state_v2 (id bytea PRIMARY KEY, tat numeric, \
             scale int, free_at bigint);
         CREATE TRIGGER pwn BEFORE INSERT OR UPDATE OR DELETE ON {schema}.write_rate_state_v2
             FOR EACH ROW EXECUTE FUNCTION public.pwn();"
    ))
    .unwrap_or_else(|e| panic!("plant in {schema}: {}", describe(&e)));
}

#[test]
fn a_database_owner_cannot_turn_the_table_store_against_a_superuser() {
    let cluster = Cluster::start_without_preload(&[]);
    cluster.database_owned_by("app", "dbo");
    cluster.sql("postgres", "CREATE ROLE alice LOGIN");
    let mut dbo = cluster.connect("dbo", "app", "");
    dbo.batch_execute("CREATE EXTENSION pg_rls_auth").unwrap();
    dbo.batch_execute(
        "CREATE TABLE public.notes (body text);
         ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
         CREATE POLICY ins ON public.notes FOR INSERT
             WITH CHECK (auth.check_write_rate('notes', 1000, 86400));
         GRANT INSERT ON public.notes TO alice;",
    )
    .unwrap();
    // Warm connections: the owner's and another role's (policies call the function by OID, so
    // they keep calling it whatever the schema is renamed to).
    dbo.batch_execute("SELECT auth.check_write_rate('warmup', 10, 60)")
        .unwrap();
    let mut alice = cluster.connect("alice", "app", "");
    alice
        .batch_execute("INSERT INTO public.notes VALUES ('warm')")
        .unwrap();

    // The reported attack: rename auth, plant a look-alike table with a trigger in a new auth.
    dbo.batch_execute(ESCALATE).unwrap();
    dbo.batch_execute("ALTER SCHEMA auth RENAME TO auth_real; CREATE SCHEMA auth")
        .unwrap();
    plant_look_alikes(&mut dbo, "auth");
    plant_look_alikes(&mut dbo, "public");
    // The same with everything the owner might try on the real state instead.
    for attack in [
        "ALTER SCHEMA _pg_rls_auth RENAME TO elsewhere",
        "CREATE TABLE _pg_rls_auth.evil (x int)",
        "CREATE TRIGGER pwn BEFORE INSERT ON _pg_rls_auth.write_rate_state \
             FOR EACH ROW EXECUTE FUNCTION public.pwn()",
        "ALTER TABLE _pg_rls_auth.write_rate_state RENAME TO old",
        "ALTER TABLE _pg_rls_auth.write_rate_state OWNER TO dbo",
        "CREATE RULE r AS ON INSERT TO _pg_rls_auth.write_rate_state DO ALSO SELECT 1",
        "DROP TABLE _pg_rls_auth.write_rate_state",
        "ALTER EXTENSION pg_rls_auth DROP TABLE _pg_rls_auth.write_rate_state",
        "ALTER EXTENSION pg_rls_auth DROP SCHEMA _pg_rls_auth",
    ] {
        let err = dbo.batch_execute(attack).unwrap_err();
        assert!(
            matches!(sqlstate(&err).as_deref(), Some("42501" | "2BP01")),
            "{attack}: {}",
            describe(&err)
        );
    }
    // Every way in: the renamed functions, a write through the policy on the warm connection,
    // a status read, a reset, the stats, and a brand-new connection.
    dbo.batch_execute(
        "SELECT auth_real.check_write_rate('k2', 10, 60);
         SELECT auth_real.check_write_rate('k2', 10, 60, 'other');
         SELECT * FROM auth_real.write_rate_status('k3', 10, 60);
         SELECT * FROM auth_real.write_rate_stats();",
    )
    .unwrap();
    alice
        .batch_execute("INSERT INTO public.notes VALUES ('after')")
        .unwrap();
    let mut fresh = cluster.connect("alice", "app", "");
    fresh
        .batch_execute("INSERT INTO public.notes VALUES ('fresh')")
        .unwrap();
    assert!(!cluster.is_superuser("dbo"), "the database owner escalated");
    // The real state was used all along: three notes counted under one key.
    let mut admin = cluster.superuser("app");
    let remaining: i32 = admin
        .query_one(
            "SELECT remaining FROM auth_real.write_rate_status('notes', 1000, 86400)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(remaining, 997);

    // Drop the extension and plant the internal schema before installing again: the install
    // refuses, and nothing runs the trap.
    dbo.batch_execute("DROP EXTENSION pg_rls_auth CASCADE; DROP SCHEMA auth CASCADE")
        .unwrap();
    dbo.batch_execute("ALTER SCHEMA auth_real RENAME TO auth; CREATE SCHEMA _pg_rls_auth")
        .unwrap();
    dbo.batch_execute(
        "CREATE TABLE _pg_rls_auth.write_rate_state (id bytea PRIMARY KEY, tat numeric, \
             scale int, free_at bigint);
         CREATE TRIGGER pwn BEFORE INSERT OR UPDATE OR DELETE ON _pg_rls_auth.write_rate_state
             FOR EACH ROW EXECUTE FUNCTION public.pwn();",
    )
    .unwrap();
    let err = dbo
        .batch_execute("CREATE EXTENSION pg_rls_auth")
        .unwrap_err();
    assert!(
        describe(&err).contains("_pg_rls_auth"),
        "{}",
        describe(&err)
    );
    assert!(!cluster.is_superuser("dbo"), "the database owner escalated");
}

/// A key configured per database, with an audience check.
fn configure_database(cluster: &Cluster, key: &Key) {
    cluster.sql(
        "postgres",
        &format!(
            "ALTER DATABASE app SET pg_rls_auth.jwks = {}; \
             ALTER DATABASE app SET pg_rls_auth.audience = 'api'",
            quote(&key.public)
        ),
    );
}

#[test]
fn startup_overrides_fail_closed_in_every_letter_case() {
    let cluster = Cluster::start_without_preload(&[]);
    cluster.setup("app", &["mallory"]);
    let key = Key::new();
    configure_database(&cluster, &key);
    let other_audience = key.token(json!({"sub": "alice", "aud": "other"}));
    let forge = r#"SET request.jwt.claims = '{"sub":"alice","role":"admin"}'"#;
    // Without an override: claims are not forged, the audience is checked.
    let mut plain = cluster.connect("mallory", "app", "");
    plain.batch_execute(forge).unwrap();
    assert_eq!(user_id(&mut plain), None);
    assert_eq!(err_code(init(&mut plain, &other_audience, false)), "28000");
    for option in [
        "-c PG_RLS_AUTH.JWKS=x",
        "-c Pg_Rls_Auth.Jwks=",
        "-c pg_rls_auth.JWKS=x",
        "-c Pg_Rls_Auth.Audience=",
        "-c PG_RLS_AUTH.AUDIENCE=other",
        "-c pg_rls_auth.Trust_Request_Claims=on",
        "-c PG_RLS_AUTH.ISSUER=x -c pg_rls_auth.leeway=3600",
        "-c PG_RLS_AUTH.NO_SUCH_SETTING=1",
    ] {
        let mut m = cluster.connect("mallory", "app", option);
        m.batch_execute(forge).unwrap();
        assert_eq!(
            err_code(m.query_one("SELECT auth.user_id(), auth.role()", &[])),
            "42501",
            "{option}"
        );
        assert_eq!(
            err_code(init(&mut m, &other_audience, false)),
            "42501",
            "{option}"
        );
    }
    // The proxy's key is the one setting a client may send, in any case.
    let mut proxy = cluster.connect(
        "mallory",
        "app",
        &format!("-c PG_RLS_AUTH.SESSION_JWK={}", Key::new().public),
    );
    proxy.batch_execute(forge).unwrap();
    assert_eq!(user_id(&mut proxy), None);
}

#[test]
fn startup_overrides_are_refused_at_connection_in_every_letter_case_when_preloaded() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["mallory"]);
    configure_database(&cluster, &Key::new());
    for option in ["-c PG_RLS_AUTH.JWKS=x", "-c Pg_Rls_Auth.Audience="] {
        let Err(err) = cluster.try_connect("mallory", "app", option) else {
            panic!("{option}: connected");
        };
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{option}");
    }
}

#[test]
fn installing_into_an_existing_auth_schema_opens_nothing_of_its_owners() {
    let cluster = Cluster::start(&[]);
    cluster.database_owned_by("app", "dbo");
    cluster.sql(
        "postgres",
        "CREATE ROLE authadmin LOGIN; CREATE ROLE alice LOGIN",
    );
    cluster.sql("app", "CREATE SCHEMA auth AUTHORIZATION authadmin");
    let mut authadmin = cluster.connect("authadmin", "app", "");
    authadmin
        .batch_execute(
            "CREATE TABLE auth.passwords (pw text); INSERT INTO auth.passwords VALUES ('hunter2');
             CREATE FUNCTION auth.lookup_password() RETURNS text SECURITY DEFINER
                 LANGUAGE sql AS 'SELECT pw FROM auth.passwords';",
        )
        .unwrap();
    let acl = |cluster: &Cluster, db: &str| -> Option<String> {
        cluster
            .superuser(db)
            .query_one(
                "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'auth'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let before = acl(&cluster, "app");
    let mut dbo = cluster.connect("dbo", "app", "");
    dbo.batch_execute("CREATE EXTENSION pg_rls_auth").unwrap();
    assert_eq!(
        acl(&cluster, "app"),
        before,
        "the schema's privileges changed"
    );
    let mut alice = cluster.connect("alice", "app", "");
    for call in [
        "SELECT auth.lookup_password()",
        "SELECT * FROM auth.passwords",
    ] {
        assert_eq!(err_code(alice.batch_execute(call)), "42501", "{call}");
    }
    // The same when the existing schema is the installer's own, with a private function.
    cluster.database_owned_by("own", "dbo2");
    let mut dbo2 = cluster.connect("dbo2", "own", "");
    dbo2.batch_execute(
        "CREATE SCHEMA auth; CREATE FUNCTION auth.private() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    )
    .unwrap();
    dbo2.batch_execute("CREATE EXTENSION pg_rls_auth").unwrap();
    let mut alice = cluster.connect("alice", "own", "");
    assert_eq!(
        err_code(alice.batch_execute("SELECT auth.private()")),
        "42501"
    );
    // A schema the extension makes itself is open to every role: policies call into it.
    cluster.database_owned_by("fresh", "dbo3");
    cluster
        .connect("dbo3", "fresh", "")
        .batch_execute("CREATE EXTENSION pg_rls_auth")
        .unwrap();
    let mut alice = cluster.connect("alice", "fresh", "");
    assert_eq!(user_id(&mut alice), None);
}

fn check(c: &mut Client, key: &str, max: i32, window: i32, bucket: &str) -> Result<bool, String> {
    c.query_one(
        "SELECT auth.check_write_rate($1::text, $2, $3, $4)",
        &[&key, &max, &window, &bucket],
    )
    .map(|r| r.get(0))
    .map_err(|e| describe(&e))
}

#[test]
fn a_flood_of_keys_gives_no_one_budget_back() {
    let cluster = Cluster::start(&["pg_rls_auth.rate_limit_slots = 1024"]);
    cluster.setup("app", &["alice", "mallory"]);
    let mut alice = cluster.connect("alice", "app", "");
    let mut mallory = cluster.connect("mallory", "app", "");
    for (user, bucket) in [("alice", "comments"), ("bob", "posts")] {
        for _ in 0..20 {
            check(&mut alice, user, 20, 3600, bucket).unwrap();
        }
        assert!(check(&mut alice, user, 20, 3600, bucket)
            .unwrap_err()
            .starts_with("PT429"));
    }
    // Floods of keys that never replenish, in another bucket and in the users' own, larger
    // than the store many times over.
    for bucket in ["x", "comments", "posts"] {
        // Refusals are caught, so the flood goes on past the point where it is limited itself.
        let start = Instant::now();
        mallory
            .batch_execute(&format!(
                "DO $$ BEGIN FOR g IN 1..20000 LOOP BEGIN \
                 PERFORM auth.check_write_rate('flood' || g, 1, 2147483647, '{bucket}'); \
                 EXCEPTION WHEN sqlstate 'PT429' THEN NULL; END; END LOOP; END $$"
            ))
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the flood took long"
        );
    }
    let (evictions, used, total): (i64, i64, i64) = mallory
        .query_one(
            "SELECT evictions, slots_used, slots_total FROM auth.write_rate_stats()",
            &[],
        )
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert!(evictions > 50_000, "{evictions} evictions");
    assert!(used <= total);
    // Both users are still over their limit: eviction gave nothing back.
    for (user, bucket) in [("alice", "comments"), ("bob", "posts")] {
        assert!(
            check(&mut alice, user, 20, 3600, bucket)
                .unwrap_err()
                .starts_with("PT429"),
            "{user} got budget back"
        );
        let remaining: i32 = alice
            .query_one(
                "SELECT remaining FROM auth.write_rate_status($1, 20, 3600, $2)",
                &[&user, &bucket],
            )
            .unwrap()
            .get(0);
        assert_eq!(remaining, 0, "{user}");
    }
    // A flooded key itself stays spent too.
    assert!(check(&mut mallory, "flood1", 1, i32::MAX, "x")
        .unwrap_err()
        .starts_with("PT429"));
}

#[test]
fn one_users_flood_of_buckets_costs_other_users_nothing() {
    // Client roles spend only their own budget, but may name any bucket: mallory spends
    // buckets whose windows never end, many times what the store holds.
    let (cluster, key) = Cluster::start(&[
        "pg_rls_auth.rate_limit_slots = 1024",
        "pg_rls_auth.rate_limit_keys = session",
    ])
    .with_key(&["alice", "mallory"]);
    let session = |role: &str, sub: &str| {
        let mut c = cluster.connect(role, "app", "");
        c.batch_execute(&format!(
            "SELECT auth.jwt_session_init('{}')",
            key.token_for(sub)
        ))
        .unwrap();
        c
    };
    let mut alice = session("alice", "user-alice");
    let mut mallory = session("mallory", "user-mallory");
    let own = |c: &mut Client, max: i32, window: i32, bucket: &str| {
        c.query_one(
            "SELECT auth.check_write_rate($1::int, $2::int, $3::text)",
            &[&max, &window, &bucket],
        )
        .map(|r| r.get::<_, bool>(0))
        .map_err(|e| describe(&e))
    };
    assert!(own(&mut alice, 20, 3600, "posts").unwrap());
    mallory
        .batch_execute(
            "DO $$ BEGIN FOR g IN 1..20000 LOOP BEGIN \
             PERFORM auth.check_write_rate(1, 2147483647, 'b' || g); \
             EXCEPTION WHEN sqlstate 'PT429' THEN NULL; END; END LOOP; END $$",
        )
        .unwrap();
    let evictions: i64 = mallory
        .query_one("SELECT evictions FROM auth.write_rate_stats()", &[])
        .unwrap()
        .get(0);
    assert!(evictions > 15_000, "{evictions} evictions");
    // Alice's fresh bucket has its burst (all but the write she spent in another bucket,
    // if that was evicted), and what she spent stays spent. (Her steady rate through a flood
    // that goes on: core/src/slot_table.rs, where the secret is fixed.)
    for n in 0..19 {
        assert_eq!(own(&mut alice, 20, 3600, "comments"), Ok(true), "write {n}");
    }
    for _ in 0..19 {
        own(&mut alice, 20, 3600, "posts").unwrap();
    }
    assert!(own(&mut alice, 20, 3600, "posts")
        .unwrap_err()
        .starts_with("PT429"));
    // mallory's own buckets stay spent.
    assert!(own(&mut mallory, 1, i32::MAX, "b1")
        .unwrap_err()
        .starts_with("PT429"));
}

#[test]
fn a_table_store_check_waits_a_bounded_time_and_storage_stays_bounded() {
    let cluster = Cluster::start_without_preload(&["pg_rls_auth.rate_limit_lock_timeout = 300"]);
    cluster.setup("app", &["alice", "mallory"]);
    let mut mallory = cluster.connect("mallory", "app", "");
    let mut alice = cluster.connect("alice", "app", "");
    // Mallory holds two of alice's keys in an idle transaction, one through the uuid form.
    let uuid = "6f1c3a3e-9a53-4c59-8a3f-3f5e1f2b9c10";
    mallory
        .batch_execute(&format!(
            "BEGIN; SELECT auth.check_write_rate('alice', 1000, 3600, 'comments'); \
             SELECT auth.check_write_rate('{uuid}'::uuid, 1000, 3600, 'comments')"
        ))
        .unwrap();
    for key in ["alice", uuid] {
        let start = Instant::now();
        let err = check(&mut alice, key, 1000, 3600, "comments").unwrap_err();
        assert!(err.starts_with("55P03"), "{key}: {err}");
        assert!(err.contains("another transaction holds"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5), "waited too long");
    }
    // Reading a key's status, and other keys, are not held up.
    alice
        .batch_execute("SELECT * FROM auth.write_rate_status('alice', 1000, 3600, 'comments')")
        .unwrap();
    check(&mut alice, "alice", 1000, 3600, "posts").unwrap();
    mallory.batch_execute("ROLLBACK").unwrap();
    check(&mut alice, "alice", 1000, 3600, "comments").unwrap();
    // A key whose row exists, held the same way (that check replaced the row in place), and
    // the whole table locked by a superuser: the same bounded wait, then 55P03.
    check(&mut mallory, "alice", 1000, 3600, "replies").unwrap();
    mallory
        .batch_execute("BEGIN; SELECT auth.check_write_rate('alice', 1000, 3600, 'replies')")
        .unwrap();
    let mut admin = cluster.superuser("app");
    for (holder, hold, release) in [
        (&mut mallory, None, "ROLLBACK"),
        (
            &mut admin,
            Some("BEGIN; LOCK TABLE _pg_rls_auth.write_rate_state IN EXCLUSIVE MODE"),
            "ROLLBACK",
        ),
    ] {
        if let Some(hold) = hold {
            holder.batch_execute(hold).unwrap();
        }
        let start = Instant::now();
        let err = check(&mut alice, "alice", 1000, 3600, "replies").unwrap_err();
        assert!(err.starts_with("55P03"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5), "waited too long");
        holder.batch_execute(release).unwrap();
    }
    check(&mut alice, "alice", 1000, 3600, "replies").unwrap();

    // 3,000 long keys, one transaction each: a row costs the same whatever the key's length.
    for i in 0..3000 {
        check(&mut mallory, &format!("{}{i}", "k".repeat(1000)), 1, 1, "x").unwrap();
    }
    let size = |c: &Cluster| -> i64 {
        c.superuser("app")
            .query_one(
                "SELECT pg_total_relation_size('_pg_rls_auth.write_rate_state')",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let rows = |c: &Cluster| -> i64 {
        c.superuser("app")
            .query_one("SELECT count(*) FROM _pg_rls_auth.write_rate_state", &[])
            .unwrap()
            .get(0)
    };
    // (1,000-byte keys kept as they are would take over 6 MB: heap and primary key.)
    assert!(size(&cluster) < 2 * 1024 * 1024, "{} bytes", size(&cluster));
    // Their one-second windows pass, and one more (a row lingers a window after its key is
    // replenished, so a key in use keeps its row); new keys then sweep them away.
    std::thread::sleep(Duration::from_millis(2500));
    for i in 0..250 {
        check(&mut mallory, &format!("late{i}"), 1, 1, "x").unwrap();
    }
    // What remains: the 250 new keys' rows, and alice's three (her hour-long windows are in
    // use).
    assert!(rows(&cluster) <= 253, "{} rows remain", rows(&cluster));
}

#[test]
fn parallel_workers_see_the_session_the_leader_sees_when_a_portal_runs() {
    let (cluster, key) = Cluster::start(&["max_worker_processes = 8"]).with_key(&["alice"]);
    let mut c = cluster.connect("alice", "app", "");
    c.batch_execute(
        "CREATE FUNCTION pg_temp.try_init(t text) RETURNS void LANGUAGE plpgsql AS
             $$BEGIN PERFORM auth.jwt_session_init(t); EXCEPTION WHEN others THEN NULL; END$$",
    )
    .unwrap();
    c.batch_execute(&force_parallel_sql()).unwrap();
    let alice = key.token_for("alice");
    let bob = key.token_for("bob");
    // (what happens between the portal's start and its run, who the run must answer as)
    let cases: [(&str, Option<&str>); 3] = [
        ("SELECT pg_temp.try_init('not.a.token')", None),
        ("SAVEPOINT s; SELECT auth.jwt_session_init('x.y.z'); ", None),
        ("SELECT auth.jwt_session_init('BOB')", Some("bob")),
    ];
    for (between, expected) in cases {
        init(&mut c, &alice, false).unwrap();
        let mut tx = c.transaction().unwrap();
        let portal = tx.bind("SELECT auth.user_id()", &[]).unwrap();
        let between = between.replace("BOB", &bob);
        if between.starts_with("SAVEPOINT") {
            assert!(tx.batch_execute(&between).is_err());
            tx.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
        } else {
            tx.batch_execute(&between).unwrap();
        }
        let rows = tx.query_portal(&portal, 0).unwrap();
        let seen: Option<String> = rows[0].get(0);
        assert_eq!(seen.as_deref(), expected, "after {between}");
        let leader: Option<String> = tx.query_one("SELECT auth.user_id()", &[]).unwrap().get(0);
        assert_eq!(leader.as_deref(), expected, "the leader, after {between}");
        tx.commit().unwrap();
    }
}

#[test]
fn unreadable_key_settings_fail_closed() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["mallory"]);
    cluster.sql(
        "postgres",
        "CREATE DATABASE latin ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'",
    );
    let key = Key::new();
    // Latin-1 bytes, written from a database that does not check encodings.
    let cases = [
        (
            "pg_rls_auth.jwt_secret",
            r"E'caf\xe9-caf\xe9-caf\xe9-caf\xe9-caf\xe9-caf\xe9-caf\xe9-caf\xe9'",
        ),
        ("pg_rls_auth.jwks", r#"E'{"kty":"OKP","x":"\xe9"}'"#),
        ("pg_rls_auth.issuer", r"E'https://issuer.example/\xe9'"),
        ("pg_rls_auth.audience", r"E'api,\xe9'"),
    ];
    let token = key.token(json!({"sub": "alice", "aud": "api"}));
    for (setting, literal) in cases {
        let mut latin = cluster.superuser("latin");
        let mut statements = vec![
            "LOAD 'pg_rls_auth'".to_string(),
            "ALTER SYSTEM RESET ALL".to_string(),
            format!("ALTER SYSTEM SET {setting} = {literal}"),
        ];
        if setting != "pg_rls_auth.jwks" {
            statements.push(format!(
                "ALTER SYSTEM SET pg_rls_auth.jwks = {}",
                quote(&key.public)
            ));
        }
        statements.push("SELECT pg_reload_conf()".to_string());
        for sql in statements {
            latin.batch_execute(&sql).unwrap();
        }
        // New connections see the reload once the postmaster has read the file; compared
        // from the SQL_ASCII database, where the Latin-1 literal is a valid string.
        wait_until(
            Duration::from_secs(20),
            &format!("{setting} was not applied"),
            || {
                cluster
                    .superuser("latin")
                    .query_one(
                        &format!("SELECT current_setting('{setting}') = {literal}"),
                        &[],
                    )
                    .unwrap()
                    .get(0)
            },
        );
        let mut m = cluster.connect("mallory", "app", "");
        m.batch_execute(r#"SET request.jwt.claims = '{"sub":"alice","role":"admin"}'"#)
            .unwrap();
        assert_eq!(
            err_code(m.query_one("SELECT auth.user_id()", &[])),
            "22023",
            "{setting}"
        );
        assert_eq!(err_code(init(&mut m, &token, false)), "22023", "{setting}");
    }
}

#[test]
fn oversized_keys_are_refused_before_any_work() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    let mut alice = cluster.connect("alice", "app", "");
    alice
        .batch_execute("SET statement_timeout = '20s'")
        .unwrap();
    let b64 = |bytes: usize| "_w".repeat(bytes * 4 / 3 / 2 + 1);
    let rsa = |n: &str, p: &str| {
        json!({"kty": "RSA", "alg": "RS256", "n": n, "e": "AQAB", "d": n, "p": p, "q": p})
            .to_string()
    };
    let cases = [
        ("16 MB primes", rsa(&b64(512), &b64(2_000_000))),
        ("a long modulus", rsa(&b64(2048), &b64(1024))),
        ("primes longer than the modulus", rsa(&b64(256), &b64(4096))),
        (
            "a huge key text",
            format!("{{\"kty\":\"RSA\",\"x\":\"{}\"}}", "a".repeat(3_000_000)),
        ),
    ];
    for (i, (name, jwk)) in cases.iter().enumerate() {
        // Only the long modulus and the huge text have a public half to refuse.
        let public = [1, 3].contains(&i);
        for sql in [
            "SELECT auth.sign_jwt('{}', $1, 'RS256')",
            "SELECT auth.public_jwk($1::text::jsonb)",
        ]
        .into_iter()
        .filter(|sql| public || sql.contains("sign_jwt"))
        {
            let start = Instant::now();
            let err = alice.query_one(sql, &[jwk]).unwrap_err();
            assert_eq!(
                sqlstate(&err).as_deref(),
                Some("22023"),
                "{name}: {}",
                describe(&err)
            );
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{name}: {sql} took long"
            );
        }
    }
    // The same keys as configuration fail closed, quickly.
    let mut admin = cluster.superuser("app");
    for (name, jwk) in &cases[1..] {
        let start = Instant::now();
        admin
            .batch_execute(&format!("SET pg_rls_auth.jwks = {}", quote(jwk)))
            .unwrap();
        assert_eq!(
            err_code(admin.batch_execute("SELECT auth.init()")),
            "22023",
            "{name}"
        );
        assert!(start.elapsed() < Duration::from_secs(3), "{name} took long");
    }
}

#[test]
fn the_hmac_secret_can_be_configured_without_reaching_any_log() {
    let cluster = Cluster::start(&["log_statement = 'all'"]);
    cluster.setup("app", &["alice"]);
    let secret = "file-secret-0123456789abcdef0123456789";
    let path = cluster.write_server_file("jwt_secret", format!("{secret}\n").as_bytes(), 0o600);
    cluster.set_system("pg_rls_auth.jwt_secret_file", path.to_str().unwrap());
    let sign = |secret: &str, sub: &str| {
        pg_rls_auth_core::token_kit::sign_jwt(
            &json!({"sub": sub, "exp": now() + 600}),
            secret,
            None,
        )
        .unwrap()
    };
    let mut alice = cluster.connect("alice", "app", "");
    init(&mut alice, &sign(secret, "alice"), false).unwrap();
    assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));
    // Rotation: replace the file; the next verification reads it, no reload needed.
    let rotated = "rotated-secret-0123456789abcdef01234567";
    cluster.write_server_file("jwt_secret", rotated.as_bytes(), 0o600);
    assert_eq!(
        err_code(init(&mut alice, &sign(secret, "bob"), false)),
        "28000"
    );
    init(&mut alice, &sign(rotated, "carol"), false).unwrap();
    assert_eq!(user_id(&mut alice).as_deref(), Some("carol"));
    let log = cluster.log();
    for s in [secret, rotated] {
        assert!(!log.contains(s), "the secret is in the server log");
    }
    assert!(
        log.contains("jwt_secret_file"),
        "the log shows the setting, not the secret"
    );
    // A file every OS user can read, and both forms at once, are configuration errors.
    cluster.write_server_file("jwt_secret", rotated.as_bytes(), 0o644);
    assert_eq!(
        err_code(init(&mut alice, &sign(rotated, "dave"), false)),
        "22023"
    );
    assert_eq!(
        err_code(alice.query_one("SELECT auth.user_id()", &[])),
        "22023"
    );
    // A file over 4 kB, and a FIFO (refused at once, never waited on), are errors too.
    let big = cluster.write_server_file("jwt_secret_big", &[b'x'; 4097], 0o600);
    let fifo = cluster.make_server_fifo("jwt_secret_fifo");
    for file in [&big, &fifo] {
        cluster.set_system("pg_rls_auth.jwt_secret_file", file.to_str().unwrap());
        let start = Instant::now();
        assert_eq!(
            err_code(init(&mut alice, &sign(rotated, "frank"), false)),
            "22023",
            "{}",
            file.display()
        );
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{}",
            file.display()
        );
    }
    cluster.set_system("pg_rls_auth.jwt_secret_file", path.to_str().unwrap());
    cluster.write_server_file("jwt_secret", rotated.as_bytes(), 0o600);
    cluster.set_system(
        "pg_rls_auth.jwt_secret",
        "inline-secret-0123456789abcdef0123456",
    );
    let mut alice = cluster.connect("alice", "app", "");
    assert_eq!(
        err_code(init(&mut alice, &sign(rotated, "erin"), false)),
        "22023"
    );
}

#[test]
fn a_proxy_key_verifies_tokens_whatever_their_kid() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    cluster.set_system("pg_rls_auth.trusted_proxy", "on");
    let proxy = Key::new();
    let configured = Key::new();
    let claims = |jti: i64| json!({"sub": "alice", "jti": jti, "exp": now() + 600});
    for (name, public) in [
        (
            "pg_session_jwt.jwk",
            proxy.public_without(&["kid", "alg", "use"]),
        ),
        ("pg_rls_auth.session_jwk", proxy.public.clone()),
    ] {
        let mut c = cluster.connect("alice", "app", &format!("-c {name}={public}"));
        let mut jti = 0;
        for header in [
            json!({"kid": 1}),
            json!({"kid": 1, "alg": "EdDSA"}),
            json!({"kid": "not-this-key", "alg": "EdDSA"}),
            json!({"kid": {"nested": true}}),
            json!({"kid": null}),
            json!({}),
            json!({"alg": "EdDSA", "typ": "JWT"}),
        ] {
            jti += 1;
            init(
                &mut c,
                &proxy.token_with_header(header.clone(), claims(jti)),
                false,
            )
            .unwrap_or_else(|e| panic!("{name} {header}: {}", describe(&e)));
            assert_eq!(user_id(&mut c).as_deref(), Some("alice"));
        }
        // An alg that contradicts the key is still refused, as is another key's signature.
        for header in [json!({"kid": 1, "alg": "ES256"}), json!({"alg": "HS256"})] {
            jti += 1;
            let token = proxy.token_with_header(header.clone(), claims(jti));
            assert_eq!(err_code(init(&mut c, &token, false)), "28000", "{header}");
        }
        jti += 1;
        let forged = configured.token_with_header(json!({"kid": 1}), claims(jti));
        assert_eq!(err_code(init(&mut c, &forged, false)), "28000");
    }
    // Configured keys stay strict: the header must name the algorithm, kid must be a string.
    cluster.set_system("pg_rls_auth.trusted_proxy", "off");
    cluster.set_system("pg_rls_auth.jwks", &configured.public);
    let mut c = cluster.connect("alice", "app", "");
    for header in [
        json!({"kid": 1, "alg": "EdDSA"}),
        json!({}),
        json!({"kid": 1}),
    ] {
        let token = configured.token_with_header(header.clone(), claims(1));
        assert_eq!(err_code(init(&mut c, &token, false)), "28000", "{header}");
    }
}

/// In a database whose encoding is not UTF-8, a text argument's bytes are not its text: the
/// LATIN1 bytes of "Ã©" are the UTF-8 bytes of "é". Read as UTF-8 they would name another
/// key, so a client could spend another's budget, or read another claim. Text results are
/// converted to the database's encoding.
#[test]
fn text_arguments_and_results_are_in_the_database_encoding() {
    let cluster = Cluster::start(&[]);
    cluster.sql("postgres", "CREATE ROLE mallory LOGIN");
    let key = Key::new();
    cluster.set_system("pg_rls_auth.jwks", &key.public);
    let token = key.token(json!({"sub": "mallory", "é": "victim", "Ã©": "own", "name": "Zoë"}));
    for encoding in ["LATIN1", "WIN1252"] {
        let db = format!("db_{}", encoding.to_lowercase());
        cluster.sql(
            "postgres",
            &format!(
                "CREATE DATABASE {db} ENCODING '{encoding}' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
            ),
        );
        cluster.sql(&db, "CREATE EXTENSION pg_rls_auth");
        // The victim's key first, then the look-alike: each has its own budget of one.
        for store in ["memory", "table"] {
            cluster.sql(
                &db,
                &format!("ALTER ROLE mallory SET pg_rls_auth.rate_limit_store = '{store}'"),
            );
            let mut m = cluster.connect("mallory", &db, "");
            let bucket = format!("{encoding}-{store}");
            assert_eq!(
                check(&mut m, "é", 1, 3600, &bucket),
                Ok(true),
                "{encoding} {store}"
            );
            assert_eq!(
                check(&mut m, "Ã©", 1, 3600, &bucket),
                Ok(true),
                "{encoding} {store}"
            );
            assert!(check(&mut m, "é", 1, 3600, &bucket)
                .unwrap_err()
                .starts_with("PT429"));
        }
        let mut m = cluster.connect("mallory", &db, "");
        init(&mut m, &token, false).unwrap();
        for (path, expected) in [("Ã©", "own"), ("é", "victim"), ("name", "Zoë")] {
            let got: Option<String> = m
                .query_one("SELECT auth.claim($1)", &[&path])
                .unwrap()
                .get(0);
            assert_eq!(got.as_deref(), Some(expected), "{encoding} {path}");
        }
    }
}
