//! `ALTER EXTENSION pg_rls_auth UPDATE` from 0.1.0, as released (sql/pg_rls_auth--0.1.0.sql),
//! done the way a hosted database owner does it: a non-superuser who owns the database installs
//! 0.1.0, builds policies, limiter state and sessions as the README shows, installs the new
//! library, and updates. Then (a) the policies work for the same users and the limiter state
//! carried over, (b) the extension's objects equal a fresh install's, object by object
//! (signatures, volatility, parallel safety, owners, ACLs, comments, columns, indexes,
//! constraints), which also fails whenever the SQL surface changes without the upgrade script
//! following, and (c) DROP EXTENSION leaves nothing behind.

use pg_rls_auth_it::postgres::Client;
use pg_rls_auth_it::serde_json::json;
use pg_rls_auth_it::*;
use std::collections::BTreeSet;

/// Every object of the extension with what defines it, one line each.
const DESCRIBE: &str = r#"
SELECT pg_describe_object(d.classid, d.objid, 0) || ': ' || CASE d.classid
  WHEN 'pg_proc'::regclass THEN (
    SELECT format('(%s) -> %s | %s %s parallel=%s strict=%s secdef=%s leakproof=%s cost=%s rows=%s config=%s | owner=%s acl=%s | %s %s | %s',
                  pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), l.lanname,
                  p.provolatile, p.proparallel, p.proisstrict, p.prosecdef, p.proleakproof, p.procost,
                  p.prorows, p.proconfig, p.proowner::regrole, p.proacl, p.probin, p.prosrc,
                  obj_description(p.oid, 'pg_proc'))
      FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.oid = d.objid)
  WHEN 'pg_class'::regclass THEN (
    SELECT format('kind=%s owner=%s acl=%s | %s | %s | %s | %s', c.relkind, c.relowner::regrole, c.relacl,
      (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                         || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                         || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''), ', ' ORDER BY a.attnum)
         FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
      (SELECT string_agg(pg_get_indexdef(i.indexrelid), '; ' ORDER BY 1) FROM pg_index i WHERE i.indrelid = c.oid),
      (SELECT string_agg(x.conname || ' ' || pg_get_constraintdef(x.oid), '; ' ORDER BY x.conname)
         FROM pg_constraint x WHERE x.conrelid = c.oid),
      obj_description(c.oid, 'pg_class'))
      FROM pg_class c WHERE c.oid = d.objid)
  WHEN 'pg_namespace'::regclass THEN (
    SELECT format('owner=%s acl=%s | %s', n.nspowner::regrole, n.nspacl, obj_description(n.oid, 'pg_namespace'))
      FROM pg_namespace n WHERE n.oid = d.objid)
  ELSE 'not compared' END
FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'pg_rls_auth' AND d.deptype = 'e'
UNION ALL
SELECT format('extension: version=%s owner=%s schema=%s config=%s conditions=%s', e.extversion, e.extowner::regrole,
              e.extnamespace::regnamespace,
              (SELECT array_agg(c::regclass::text ORDER BY c::regclass::text) FROM unnest(e.extconfig) c),
              (SELECT array_agg(x ORDER BY x) FROM unnest(e.extcondition) x))
  FROM pg_extension e WHERE e.extname = 'pg_rls_auth'
UNION ALL
SELECT format('schema auth: owner=%s acl=%s', n.nspowner::regrole, n.nspacl) FROM pg_namespace n WHERE n.nspname = 'auth'
"#;

/// Everything a database holds outside the system schemas.
const INVENTORY: &str = r#"
SELECT 'relation ' || c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'type ' || t.oid::regtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
UNION ALL
SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_temp%' AND nspname NOT LIKE 'pg_toast_temp%'
UNION ALL
SELECT 'extension ' || extname FROM pg_extension
"#;

fn lines(c: &mut Client, sql: &str) -> BTreeSet<String> {
    c.query(sql, &[])
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .iter()
        .map(|r| {
            r.get::<_, Option<String>>(0)
                .unwrap_or_else(|| "NULL".into())
        })
        .collect()
}

fn text(c: &mut Client, sql: &str) -> Option<String> {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

/// The app of the README's policy guide, on 0.1.0's functions: notes readable by their owner,
/// written at most 3 per minute per user (the limiter's 0.1.0 form, keyed explicitly).
const APP: &str = "
CREATE TABLE public.notes (id serial PRIMARY KEY, owner_id text NOT NULL DEFAULT auth.user_id(), body text);
CREATE INDEX ON public.notes (owner_id);
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_own ON public.notes FOR SELECT USING (owner_id = (SELECT auth.user_id()));
CREATE POLICY write_own ON public.notes FOR INSERT
  WITH CHECK (owner_id = auth.user_id() AND auth.check_write_rate(auth.user_id(), 3, 60, 'notes'));
GRANT SELECT, INSERT ON public.notes TO api;
GRANT USAGE ON SEQUENCE public.notes_id_seq TO api;
";

fn insert_note(c: &mut Client, body: &str) -> Result<u64, pg_rls_auth_it::postgres::Error> {
    c.execute("INSERT INTO public.notes (body) VALUES ($1)", &[&body])
}

#[test]
fn an_update_from_0_1_0_keeps_policies_state_and_sessions_and_equals_a_fresh_install() {
    let (cluster, key) = Cluster::start(&[]).with_key(&["api"]);
    cluster.database_owned_by("old", "dbo");
    cluster.sql("postgres", "CREATE DATABASE fresh OWNER dbo");
    // The table store, where the library cannot be preloaded: the state that must carry over.
    cluster.sql(
        "postgres",
        "ALTER ROLE api SET pg_rls_auth.rate_limit_store = 'table'",
    );
    let before_install = lines(&mut cluster.superuser("old"), INVENTORY);

    // 0.1.0, installed by the database owner (a trusted extension), with the app on it.
    let mut dbo = cluster.connect("dbo", "old", "");
    dbo.batch_execute("CREATE EXTENSION pg_rls_auth VERSION '0.1.0'")
        .unwrap_or_else(|e| {
            panic!(
                "install 0.1.0 (is sql/pg_rls_auth--0.1.0.sql installed?): {}",
                describe(&e)
            )
        });
    let mut admin = cluster.superuser("old");
    admin.batch_execute(APP).unwrap();

    // The new library serves the 0.1.0 SQL: sessions, every claim function (0.1.0's
    // organization_id() still returns text), the token kit and the memory store; the table
    // store refuses, pointing at the update.
    let mut alice = cluster.connect("api", "old", "");
    let org = "0b6f6a3e-5c2d-4a8e-9d1f-2b3c4d5e6f70";
    init(&mut alice, &key.token(json!({"sub": "alice", "role": "authenticated", "email": "a@example.com", "o": {"id": org}})), false).unwrap();
    let row = alice
        .query_one(
            "SELECT auth.user_id(), auth.uid()::text, auth.claim('email'), auth.session() ->> 'sub', auth.jwt() ->> 'role',
                    auth.role(), auth.email(), auth.organization() ->> 'id', auth.organization_id(),
                    pg_typeof(auth.organization_id())::text",
            &[],
        )
        .unwrap();
    let got: Vec<Option<String>> = (0..10).map(|i| row.get(i)).collect();
    let want = [
        "alice",
        "",
        "a@example.com",
        "alice",
        "authenticated",
        "authenticated",
        "a@example.com",
        org,
        org,
        "text",
    ];
    for (i, w) in want.iter().enumerate() {
        assert_eq!(
            got[i].as_deref().unwrap_or(""),
            *w,
            "0.1.0 SQL, column {i}: {got:?}"
        );
    }
    assert_eq!(
        err_code(insert_note(&mut alice, "before the update")),
        "55000"
    );
    admin
        .batch_execute("SET pg_rls_auth.rate_limit_store = 'memory'")
        .unwrap();
    for sql in [
        "SELECT auth.check_write_rate('k', 5, 60), auth.check_write_rate(gen_random_uuid(), 5, 60)",
        "SELECT * FROM auth.write_rate_status('k', 5, 60)",
        "SELECT * FROM auth.write_rate_stats()",
        "SELECT auth.reset_write_rate('k')",
        "SELECT auth.sign_jwt('{\"sub\":\"x\"}', auth.generate_jwk('ES256')::text) IS NOT NULL, auth.public_jwk(auth.generate_jwk())",
        "SELECT auth.init(), auth.end_session()",
    ] {
        admin.batch_execute(sql).unwrap_or_else(|e| panic!("0.1.0 SQL, {sql}: {}", describe(&e)));
    }

    // Limiter state in 0.1.0's table: alice has spent her 3 notes a minute (her TAT is a
    // minute past the burst, in units of 1/3 ns), bob has written nothing.
    admin
        .batch_execute(
            "INSERT INTO auth.write_rate_state (bucket, key, tat, scale)
             VALUES ('notes', 'alice', ((extract(epoch FROM clock_timestamp()) * 1e9)::numeric(30,0) + 120e9) * 3, 3)",
        )
        .unwrap();
    let mut bob = cluster.connect("api", "old", "");
    init(&mut bob, &key.token_for("bob"), false).unwrap();

    // The functions' OIDs, which policies, views and functions store.
    const OIDS: &str = "SELECT p.oid::regprocedure::text || ' ' || p.oid FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
        JOIN pg_extension e ON e.oid = d.refobjid WHERE d.classid = 'pg_proc'::regclass AND e.extname = 'pg_rls_auth'";
    let oids_before = lines(&mut admin, OIDS);

    // The update, by the database owner, with both sessions open.
    dbo.batch_execute("ALTER EXTENSION pg_rls_auth UPDATE")
        .unwrap_or_else(|e| panic!("update: {}", describe(&e)));
    assert_eq!(
        text(
            &mut dbo,
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_rls_auth'"
        )
        .as_deref(),
        Some("0.2.0")
    );

    let oids_after = lines(&mut admin, OIDS);
    let lost: Vec<_> = oids_before.difference(&oids_after).collect();
    assert_eq!(
        lost.len(),
        1,
        "only organization_id() may change its OID: {lost:?}"
    );
    assert!(lost[0].starts_with("auth.organization_id() "), "{lost:?}");

    // (a) The same users, the same policies, the state carried over.
    assert_eq!(
        user_id(&mut alice).as_deref(),
        Some("alice"),
        "a session survives the update"
    );
    assert_eq!(
        err_code(insert_note(&mut alice, "over the limit")),
        "PT429",
        "alice's spent budget carried over"
    );
    for i in 0..3 {
        insert_note(&mut bob, &format!("bob {i}"))
            .unwrap_or_else(|e| panic!("bob's note {i}: {}", describe(&e)));
    }
    assert_eq!(
        err_code(insert_note(&mut bob, "bob 3")),
        "PT429",
        "the policy's limiter counts on the new table"
    );
    assert_eq!(
        text(&mut bob, "SELECT count(*)::text FROM public.notes").as_deref(),
        Some("3")
    );
    assert_eq!(
        text(&mut alice, "SELECT count(*)::text FROM public.notes").as_deref(),
        Some("0")
    );
    assert_eq!(
        text(&mut alice, "SELECT auth.organization_id()::text").as_deref(),
        Some(org)
    );
    assert_eq!(
        text(&mut alice, "SELECT pg_typeof(auth.organization_id())::text").as_deref(),
        Some("uuid")
    );
    assert_eq!(
        text(
            &mut admin,
            "SELECT to_regclass('auth.write_rate_state')::text"
        ),
        None,
        "0.1.0's state table is gone"
    );

    // (b) Object by object, the same as a fresh install by the same owner.
    let mut fresh_dbo = cluster.connect("dbo", "fresh", "");
    let fresh_before = lines(&mut cluster.superuser("fresh"), INVENTORY);
    fresh_dbo
        .batch_execute("CREATE EXTENSION pg_rls_auth")
        .unwrap();
    let upgraded = lines(&mut admin, DESCRIBE);
    let fresh = lines(&mut cluster.superuser("fresh"), DESCRIBE);
    let only_upgraded: Vec<_> = upgraded.difference(&fresh).collect();
    let only_fresh: Vec<_> = fresh.difference(&upgraded).collect();
    assert!(
        only_upgraded.is_empty() && only_fresh.is_empty(),
        "the upgraded extension differs from a fresh install\nonly after the update:\n{}\nonly in a fresh install:\n{}",
        only_upgraded.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
        only_fresh.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
    );

    // (c) DROP EXTENSION leaves nothing behind, in either, but the empty schema `auth`, which
    // PostgreSQL creates for CREATE EXTENSION (the control file names it) and never drops; and
    // CREATE EXTENSION then installs 0.2.0 as on a new database.
    drop((alice, bob));
    admin.batch_execute("DROP TABLE public.notes").unwrap();
    for (c, db, before) in [
        (&mut dbo, "old", &before_install),
        (&mut fresh_dbo, "fresh", &fresh_before),
    ] {
        c.batch_execute("DROP EXTENSION pg_rls_auth").unwrap();
        let mut after = lines(&mut cluster.superuser(db), INVENTORY);
        assert!(after.remove("schema auth"), "{db}: {after:?}");
        assert_eq!(&after, before, "{db}: left behind after DROP EXTENSION");
        c.batch_execute("CREATE EXTENSION pg_rls_auth").unwrap();
        assert_eq!(
            lines(&mut cluster.superuser(db), DESCRIBE),
            fresh,
            "{db}: re-created after DROP"
        );
    }
}

#[test]
fn the_update_refuses_while_objects_depend_on_the_text_organization_id() {
    let cluster = Cluster::start(&[]);
    cluster.database_owned_by("old", "dbo");
    let mut dbo = cluster.connect("dbo", "old", "");
    dbo.batch_execute("CREATE EXTENSION pg_rls_auth VERSION '0.1.0'")
        .unwrap();
    cluster.sql(
        "old",
        "CREATE TABLE public.orgs (org_id text); ALTER TABLE public.orgs ENABLE ROW LEVEL SECURITY;
         CREATE POLICY by_org ON public.orgs USING (org_id = auth.organization_id());",
    );
    let err = dbo
        .batch_execute("ALTER EXTENSION pg_rls_auth UPDATE")
        .unwrap_err();
    assert_eq!(
        sqlstate(&err).as_deref(),
        Some("2BP01"),
        "{}",
        describe(&err)
    );
    assert!(
        describe(&err).contains("policy by_org on table public.orgs"),
        "{}",
        describe(&err)
    );
    // Nothing changed: still 0.1.0, the policy intact; after the documented fix it updates.
    assert_eq!(
        text(
            &mut dbo,
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_rls_auth'"
        )
        .as_deref(),
        Some("0.1.0")
    );
    cluster.sql("old", "DROP POLICY by_org ON public.orgs");
    dbo.batch_execute("ALTER EXTENSION pg_rls_auth UPDATE")
        .unwrap();
    cluster.sql(
        "old",
        "CREATE POLICY by_org ON public.orgs USING (org_id = auth.organization_id()::text)",
    );
}

#[test]
fn a_database_owner_cannot_turn_the_update_against_a_superuser() {
    // The database owner owns schema `auth` and may put anything under the names the update
    // reads. Each trap writes a server file when it runs (only a superuser may): a file means
    // the update ran the owner's code with its rights, even if the transaction then aborted.
    let cluster = Cluster::start(&[]);
    let evidence = cluster.socket_dir().join("pwned");
    let pwn = format!(
        "CREATE FUNCTION public.pwn() RETURNS text LANGUAGE plpgsql AS $f$ BEGIN \
         EXECUTE 'COPY (SELECT 1) TO ''{}'''; RETURN 'k'; END $f$",
        evidence.display()
    );
    let traps = [
        // A view in place of the state table, in a new schema auth.
        "ALTER SCHEMA auth RENAME TO auth_real; CREATE SCHEMA auth;
         CREATE VIEW auth.write_rate_state AS
           SELECT public.pwn() AS bucket, 'k'::text AS key, 0::numeric AS tat, 1 AS scale;
         {STUBS}",
        // A table of the owner's whose bucket column turns into text through the owner's cast.
        "ALTER SCHEMA auth RENAME TO auth_real; CREATE SCHEMA auth;
         CREATE TYPE public.evil AS ENUM ('k');
         CREATE FUNCTION public.pwn_cast(public.evil) RETURNS text LANGUAGE plpgsql
           AS $f$ BEGIN RETURN public.pwn(); END $f$;
         CREATE CAST (public.evil AS text) WITH FUNCTION public.pwn_cast(public.evil) AS IMPLICIT;
         CREATE TABLE auth.write_rate_state (bucket public.evil, key text, tat numeric, scale int);
         INSERT INTO auth.write_rate_state VALUES ('k', 'k', 0, 1);
         {STUBS}",
    ];
    // What the update touches before the state table, so that it gets that far.
    let stubs =
        "CREATE FUNCTION auth.organization_id() RETURNS text LANGUAGE sql AS 'SELECT NULL::text';
        CREATE FUNCTION auth.session() RETURNS jsonb LANGUAGE sql AS 'SELECT NULL::jsonb';
        CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql AS 'SELECT NULL::text';
        CREATE FUNCTION auth.email() RETURNS text LANGUAGE sql AS 'SELECT NULL::text';";
    for (i, trap) in traps.iter().enumerate() {
        let trap = trap.replace("{STUBS}", stubs);
        let db = format!("trap{i}");
        let owner = format!("dbo{i}");
        cluster.database_owned_by(&db, &owner);
        let mut dbo = cluster.connect(&owner, &db, "");
        dbo.batch_execute("CREATE EXTENSION pg_rls_auth VERSION '0.1.0'")
            .unwrap();
        dbo.batch_execute(&pwn).unwrap();
        dbo.batch_execute(&trap)
            .unwrap_or_else(|e| panic!("trap {i}: {}", describe(&e)));
        let result = dbo.batch_execute("ALTER EXTENSION pg_rls_auth UPDATE");
        assert!(result.is_err(), "trap {i}: the update went ahead");
        assert!(
            !evidence.exists(),
            "trap {i}: the update ran the owner's code as a superuser"
        );
        assert!(!cluster.is_superuser(&owner), "trap {i}");
    }
}
