//! Every key and trust decision is the administrator's: an ordinary role can neither set nor
//! read them (SET, set_config, RESET, ALTER ROLE, a function's SET clause, the startup packet),
//! nor forge the session they produce.

use pg_rls_auth_it::serde_json::json;
use pg_rls_auth_it::*;

const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes!!";
const SESSION_VALUE: &str = r#"1:{"sub":"mallory"}"#;

/// The settings that decide what is trusted, each with a value an attacker would like.
fn trust_settings(key: &Key) -> Vec<(&'static str, String)> {
    vec![
        ("pg_rls_auth.jwks", key.public.clone()),
        ("pg_rls_auth.jwt_secret", SECRET.to_string()),
        ("pg_rls_auth.trusted_proxy", "on".to_string()),
        ("pg_rls_auth.rate_limit_store", "table".to_string()),
        ("pg_rls_auth.rate_limit_action", "deny".to_string()),
        ("pg_rls_auth.trust_request_claims", "on".to_string()),
        ("pg_rls_auth.require_exp", "off".to_string()),
        ("pg_rls_auth.leeway", "1h".to_string()),
        ("pg_rls_auth.issuer", "https://evil.example".to_string()),
        ("pg_rls_auth.audience", "evil".to_string()),
        ("pg_rls_auth.session", SESSION_VALUE.to_string()),
    ]
}

#[test]
fn ordinary_role_cannot_change_trust_settings() {
    let (cluster, configured) = Cluster::start(&[]).with_key(&["alice"]);
    let attacker = Key::new();
    let mut alice = cluster.connect("alice", "app", "");

    for (name, value) in trust_settings(&attacker) {
        let set = format!("SET {name} = {}", quote(&value));
        assert_eq!(err_code(alice.batch_execute(&set)), "42501", "{set}");
        let set_local = format!("BEGIN; SET LOCAL {name} = {}", quote(&value));
        assert_eq!(
            err_code(alice.batch_execute(&set_local)),
            "42501",
            "{set_local}"
        );
        alice.batch_execute("ROLLBACK").unwrap();
        for local in [false, true] {
            let r = alice.query_one("SELECT set_config($1, $2, $3)", &[&name, &value, &local]);
            assert_eq!(err_code(r), "42501", "set_config({name}, .., {local})");
        }
        assert_eq!(
            err_code(alice.batch_execute(&format!("RESET {name}"))),
            "42501",
            "RESET {name}"
        );
        let alter = format!("ALTER ROLE alice SET {name} = {}", quote(&value));
        assert_eq!(err_code(alice.batch_execute(&alter)), "42501", "{alter}");
        let alter_db = format!(
            "ALTER ROLE alice IN DATABASE app SET {name} = {}",
            quote(&value)
        );
        assert_eq!(
            err_code(alice.batch_execute(&alter_db)),
            "42501",
            "{alter_db}"
        );
        // A function carrying the setting cannot be created (so never applies it).
        let func = format!(
            "CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql SET {name} = {} \
             AS $$ SELECT auth.user_id() $$",
            quote(&value)
        );
        assert_eq!(err_code(alice.batch_execute(&func)), "42501", "{func}");
    }
    // Nothing took: the administrator's key is still the one in force.
    let jwks: String = alice
        .query_one("SHOW pg_rls_auth.jwks", &[])
        .unwrap()
        .get(0);
    assert_eq!(jwks, configured.public);
    let store: String = alice
        .query_one("SHOW pg_rls_auth.rate_limit_store", &[])
        .unwrap()
        .get(0);
    assert_eq!(store, "auto");
    assert_eq!(user_id(&mut alice), None);
    // alice's tokens signed by her own key are still refused.
    assert_eq!(
        err_code(init(&mut alice, &attacker.token_for("alice"), false)),
        "28000"
    );

    // The superuser can do each of these.
    let mut admin = cluster.superuser("app");
    for (name, value) in trust_settings(&attacker) {
        admin
            .batch_execute(&format!("SET {name} = {}", quote(&value)))
            .unwrap_or_else(|e| panic!("superuser SET {name}: {}", describe(&e)));
        let seen: String = admin
            .query_one("SELECT current_setting($1)", &[&name])
            .unwrap()
            .get(0);
        assert_eq!(seen, value, "{name}");
        admin
            .query_one("SELECT set_config($1, $2, false)", &[&name, &value])
            .unwrap();
        admin.batch_execute(&format!("RESET {name}")).unwrap();
    }
    admin
        .batch_execute(&format!(
            "ALTER ROLE alice SET pg_rls_auth.jwks = {}",
            quote(&attacker.public)
        ))
        .unwrap();
    let mut alice2 = cluster.connect("alice", "app", "");
    let jwks: String = alice2
        .query_one("SHOW pg_rls_auth.jwks", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        jwks, attacker.public,
        "a superuser's ALTER ROLE SET applies"
    );
    init(&mut alice2, &attacker.token_for("alice"), false).unwrap();
    assert_eq!(user_id(&mut alice2).as_deref(), Some("alice"));
}

#[test]
fn startup_packet_cannot_override_trust_settings() {
    let (cluster, _configured) = Cluster::start(&[]).with_key(&["alice"]);
    let attacker = Key::new();
    // With the library preloaded the settings are defined before the startup packet is read:
    // an ordinary role sending one is refused at connection start (FATAL, 42501).
    for (name, value) in trust_settings(&attacker) {
        let options = format!("-c {name}={}", value.replace(' ', "\\ "));
        match cluster.try_connect("alice", "app", &options) {
            Ok(_) => panic!("alice connected with {options}"),
            Err(e) => assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{options}: {e}"),
        }
    }
    // A superuser may.
    let options = format!("-c pg_rls_auth.jwks={}", attacker.public);
    let mut admin = cluster.connect("postgres", "app", &options);
    let jwks: String = admin
        .query_one("SHOW pg_rls_auth.jwks", &[])
        .unwrap()
        .get(0);
    assert_eq!(jwks, attacker.public);
    // The claims PostgREST would send are ignored while a key is configured.
    let options = r#"-c request.jwt.claims={"sub":"mallory"} -c request.jwt.claim.sub=mallory"#;
    let mut alice = cluster.connect("alice", "app", options);
    assert_eq!(user_id(&mut alice), None);
}

#[test]
fn without_preload_startup_and_set_values_cannot_replace_the_configuration() {
    let (cluster, configured) = Cluster::start_without_preload(&[]).with_key(&["alice"]);
    let attacker = Key::new();
    // Before the library is loaded in a backend the names are placeholders, which anyone can
    // send; when the library loads, PostgreSQL re-applies them with the sender's privileges,
    // so an ordinary role's values are dropped (with a WARNING).
    let options = format!(
        "-c pg_rls_auth.jwks={} -c pg_rls_auth.session={SESSION_VALUE} -c pg_rls_auth.trusted_proxy=on",
        attacker.public
    );
    let mut alice = cluster.connect("alice", "app", &options);
    // PostgreSQL drops the values, and the configured key with them (the settings fall back
    // to their built-in defaults). pg_rls_auth notices and refuses every session on this
    // connection (42501) instead of running without a key, where request.jwt.claims would be
    // trusted.
    alice
        .batch_execute(r#"SET request.jwt.claims = '{"sub":"mallory"}'"#)
        .unwrap();
    for sql in [
        "SELECT auth.user_id()",
        "SELECT auth.session()",
        "SELECT auth.init()",
    ] {
        let err = alice.batch_execute(sql).unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{sql}");
        let detail = err.as_db_error().and_then(|d| d.detail()).unwrap_or("");
        assert!(detail.contains("pg_rls_auth.jwks"), "{detail}");
        assert!(!detail.contains(&attacker.public), "{detail}");
    }
    assert_eq!(
        err_code(init(&mut alice, &attacker.token_for("mallory"), false)),
        "42501"
    );
    assert_eq!(
        err_code(init(&mut alice, &configured.token_for("alice"), false)),
        "42501"
    );
    // Loaded now: the attacker's values were dropped.
    let jwks: String = alice
        .query_one("SHOW pg_rls_auth.jwks", &[])
        .unwrap()
        .get(0);
    assert_ne!(jwks, attacker.public);
    let proxy: String = alice
        .query_one("SHOW pg_rls_auth.trusted_proxy", &[])
        .unwrap()
        .get(0);
    assert_eq!(proxy, "off");
    // Without them, the same role gets the configured key.
    let mut alice = cluster.connect("alice", "app", "");
    init(&mut alice, &configured.token_for("alice"), false).unwrap();
    assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));
    assert_eq!(
        err_code(init(&mut alice, &attacker.token_for("mallory"), false)),
        "28000"
    );

    // The same with SET before the first auth.* call of a connection.
    let mut alice = cluster.connect("alice", "app", "");
    let set = format!(
        "SET pg_rls_auth.session = {}; SET pg_rls_auth.jwks = {}",
        quote(SESSION_VALUE),
        quote(&attacker.public)
    );
    if let Err(e) = alice.batch_execute(&set) {
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{}", describe(&e));
    }
    assert_eq!(
        user_id(&mut alice),
        None,
        "a placeholder session must not apply"
    );
    let jwks: String = alice
        .query_one("SHOW pg_rls_auth.jwks", &[])
        .unwrap()
        .get(0);
    assert_eq!(jwks, configured.public);
    // Once loaded, the names are the extension's: SET is refused outright.
    assert_eq!(
        err_code(alice.batch_execute(&format!(
            "SET pg_rls_auth.session = {}",
            quote(SESSION_VALUE)
        ))),
        "42501"
    );
}

#[test]
fn secret_is_hidden_from_ordinary_roles() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    cluster.set_system("pg_rls_auth.jwt_secret", SECRET);
    let mut alice = cluster.connect("alice", "app", "");
    assert_eq!(
        err_code(alice.query_one("SHOW pg_rls_auth.jwt_secret", &[])),
        "42501"
    );
    for missing_ok in [false, true] {
        let r = alice.query_one(
            "SELECT current_setting('pg_rls_auth.jwt_secret', $1)",
            &[&missing_ok],
        );
        assert_eq!(err_code(r), "42501", "current_setting(.., {missing_ok})");
    }
    let visible: i64 = alice
        .query_one(
            "SELECT count(*) FROM pg_settings WHERE name IN ('pg_rls_auth.jwt_secret', 'pg_rls_auth.session') \
             OR setting = $1",
            &[&SECRET],
        )
        .unwrap()
        .get(0);
    assert_eq!(visible, 0, "pg_settings shows the secret or the session");
    for row in alice.simple_query("SHOW ALL").unwrap() {
        if let postgres::SimpleQueryMessage::Row(row) = row {
            assert_ne!(row.get(1), Some(SECRET), "SHOW ALL shows the secret");
        }
    }
    // ALTER SYSTEM put it in postgresql.auto.conf: pg_file_settings is closed to alice.
    assert_eq!(
        err_code(alice.query("SELECT * FROM pg_file_settings", &[])),
        "42501"
    );
    // The secret works, and the superuser sees it.
    let token = pg_rls_auth_core::token_kit::sign_jwt(
        &json!({"sub": "alice", "exp": now() + 600}),
        SECRET,
        Some("HS256"),
    )
    .unwrap();
    init(&mut alice, &token, false).unwrap();
    assert_eq!(user_id(&mut alice).as_deref(), Some("alice"));
    let seen: String = cluster
        .superuser("app")
        .query_one("SHOW pg_rls_auth.jwt_secret", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen, SECRET);
}

#[test]
fn secret_cannot_be_stored_where_every_role_reads_it() {
    // pg_db_role_setting and pg_proc.proconfig are readable by every role, so the secret is
    // refused there, even from a superuser; postgresql.conf and ALTER SYSTEM stay private.
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    let mut admin = cluster.superuser("app");
    for sql in [
        "ALTER DATABASE app SET pg_rls_auth.jwt_secret = ",
        "ALTER ROLE alice SET pg_rls_auth.jwt_secret = ",
        "ALTER ROLE alice IN DATABASE app SET pg_rls_auth.jwt_secret = ",
        "CREATE FUNCTION leak() RETURNS int LANGUAGE sql SET pg_rls_auth.jwt_secret = ",
    ] {
        let mut statement = format!("{sql}{}", quote(SECRET));
        if sql.starts_with("CREATE FUNCTION") {
            statement.push_str(" AS 'SELECT 1'");
        }
        let err = admin.batch_execute(&statement).unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("22023"), "{statement}");
        assert!(
            !describe(&err).contains(SECRET),
            "the error echoes the secret: {}",
            describe(&err)
        );
    }
    let mut alice = cluster.connect("alice", "app", "");
    let leaked: i64 = alice
        .query_one(
            "SELECT (SELECT count(*) FROM pg_db_role_setting, unnest(setconfig) c WHERE c LIKE '%' || $1 || '%') \
                  + (SELECT count(*) FROM pg_proc, unnest(proconfig) c WHERE c LIKE '%' || $1 || '%')",
            &[&SECRET],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        leaked, 0,
        "an ordinary role reads the HMAC secret from a catalog"
    );
}

#[test]
fn rate_limit_state_is_the_extensions() {
    let cluster = Cluster::start(&[]);
    cluster.setup("app", &["alice"]);
    let mut alice = cluster.connect("alice", "app", "");
    for sql in [
        "SELECT * FROM _pg_rls_auth.write_rate_state",
        "INSERT INTO _pg_rls_auth.write_rate_state VALUES ('\\x00', 0, 0, 0)",
        "UPDATE _pg_rls_auth.write_rate_state SET tat = 0",
        "DELETE FROM _pg_rls_auth.write_rate_state",
        "TRUNCATE _pg_rls_auth.write_rate_state",
        "SELECT auth.reset_write_rate('alice')",
        "SELECT auth.reset_write_rate('alice', 'default')",
    ] {
        assert_eq!(err_code(alice.batch_execute(sql)), "42501", "{sql}");
    }
    // alice may use the limiter itself, in both stores (the table store through the
    // extension, not her own privileges).
    alice
        .batch_execute("SELECT auth.check_write_rate('alice', 10, 60)")
        .unwrap();
    let mut admin = cluster.superuser("app");
    admin
        .batch_execute("ALTER ROLE alice SET pg_rls_auth.rate_limit_store = 'table'")
        .unwrap();
    let mut alice = cluster.connect("alice", "app", "");
    let store: String = alice
        .query_one("SELECT store FROM auth.write_rate_stats()", &[])
        .unwrap()
        .get(0);
    assert_eq!(store, "table");
    alice
        .batch_execute("SELECT auth.check_write_rate('alice', 10, 60)")
        .unwrap();
    assert_eq!(
        err_code(alice.query("SELECT * FROM _pg_rls_auth.write_rate_state", &[])),
        "42501"
    );
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM _pg_rls_auth.write_rate_state", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    // The superuser may reset a key.
    admin
        .batch_execute("SET pg_rls_auth.rate_limit_store = 'table'")
        .unwrap();
    let reset: bool = admin
        .query_one("SELECT auth.reset_write_rate('alice')", &[])
        .unwrap()
        .get(0);
    assert!(reset);
}

#[test]
fn ordinary_role_cannot_forge_user_id() {
    let (cluster, key) = Cluster::start(&[]).with_key(&["alice", "bob"]);
    let mut alice = cluster.connect("alice", "app", "");
    // PostgREST's claims are ignored while a key is configured.
    alice
        .batch_execute(r#"SET request.jwt.claims = '{"sub":"mallory"}'; SET request.jwt.claim.sub = 'mallory'"#)
        .unwrap();
    assert_eq!(user_id(&mut alice), None);
    // Every way of writing the session setting is refused.
    let attempts = [
        format!("SET pg_rls_auth.session = {}", quote(SESSION_VALUE)),
        format!("SELECT set_config('pg_rls_auth.session', {}, false)", quote(SESSION_VALUE)),
        format!(
            "CREATE FUNCTION pg_temp.forge() RETURNS text LANGUAGE sql SET pg_rls_auth.session = {} \
             AS $$ SELECT auth.user_id() $$",
            quote(SESSION_VALUE)
        ),
        format!(
            "CREATE FUNCTION public.forge() RETURNS text LANGUAGE sql SECURITY DEFINER \
             SET pg_rls_auth.session = {} AS $$ SELECT auth.user_id() $$",
            quote(SESSION_VALUE)
        ),
        format!(
            "DO $$ BEGIN PERFORM set_config('pg_rls_auth.session', {}, true); END $$",
            quote(SESSION_VALUE)
        ),
        format!("ALTER ROLE alice SET pg_rls_auth.session = {}", quote(SESSION_VALUE)),
    ];
    for sql in &attempts {
        assert_eq!(err_code(alice.batch_execute(sql)), "42501", "{sql}");
        assert_eq!(user_id(&mut alice), None, "after {sql}");
    }
    // A verified session as alice cannot be turned into someone else's either.
    init(&mut alice, &key.token_for("alice"), false).unwrap();
    for sql in &attempts {
        let _ = alice.batch_execute(sql);
        assert_eq!(user_id(&mut alice).as_deref(), Some("alice"), "after {sql}");
    }
    // A forged token (alice's claims, her own signature) is refused and ends the session.
    let forged = Key::new().token_for("mallory");
    assert_eq!(err_code(init(&mut alice, &forged, false)), "28000");
    assert_eq!(user_id(&mut alice), None);
    // Tampering with a verified token's payload breaks its signature.
    let good = key.token_for("bob");
    let parts: Vec<&str> = good.split('.').collect();
    let mallory = key.token_for("mallory");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        mallory.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert_eq!(err_code(init(&mut alice, &tampered, false)), "28000");
    // An unsigned token is refused.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    let unsigned = format!("{none_header}.{}.", mallory.split('.').nth(1).unwrap());
    assert_eq!(err_code(init(&mut alice, &unsigned, false)), "28000");
    assert_eq!(user_id(&mut alice), None);
}

/// Objects an ordinary role puts first on its search_path never run with the extension's
/// rights, nor change what its functions answer.
#[test]
fn search_path_objects_do_not_reach_the_extension() {
    let (cluster, key) = Cluster::start(&[]).with_key(&["alice"]);
    cluster.sql(
        "app",
        "CREATE SCHEMA evil AUTHORIZATION alice; \
         ALTER ROLE alice SET pg_rls_auth.rate_limit_store = 'table'",
    );
    let mut alice = cluster.connect("alice", "app", "");
    alice
        .batch_execute(
            "CREATE FUNCTION evil.step(bigint) RETURNS bigint LANGUAGE plpgsql AS \
               $$BEGIN EXECUTE 'ALTER ROLE alice SUPERUSER'; RETURN 0; END$$; \
             CREATE AGGREGATE evil.count(*) (sfunc = evil.step, stype = bigint, initcond = '0'); \
             CREATE FUNCTION evil.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS \
               $$BEGIN EXECUTE 'ALTER ROLE alice SUPERUSER'; RETURN true; END$$; \
             CREATE OPERATOR evil.= (leftarg = text, rightarg = text, function = evil.eq); \
             CREATE FUNCTION evil.arrow(jsonb, text) RETURNS jsonb LANGUAGE sql AS \
               $$SELECT '{\"id\": \"forged\"}'::jsonb$$; \
             CREATE OPERATOR evil.-> (leftarg = jsonb, rightarg = text, function = evil.arrow); \
             SET search_path = evil, pg_catalog, public",
        )
        .unwrap();
    let token = key.token(json!({"sub": "alice", "o": {"id": "org-1"}}));
    init(&mut alice, &token, false).unwrap();
    for sql in [
        "SELECT auth.check_write_rate('k', 10, 60)::text",
        "SELECT remaining::text FROM auth.write_rate_status('k', 10, 60)",
        "SELECT slots_used::text FROM auth.write_rate_stats()",
        "SELECT auth.organization()::text",
    ] {
        let seen: Option<String> = alice.query_one(sql, &[]).unwrap().get(0);
        assert!(!seen.unwrap_or_default().contains("forged"), "{sql}");
    }
    let org: String = alice
        .query_one("SELECT auth.organization() ->> 'id'", &[])
        .unwrap()
        .get(0);
    assert_eq!(org, "org-1");
    let superuser: bool = cluster
        .superuser("app")
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = 'alice'", &[])
        .unwrap()
        .get(0);
    assert!(
        !superuser,
        "alice made herself superuser through the extension"
    );
}
