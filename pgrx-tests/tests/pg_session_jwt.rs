//! pg_session_jwt's own scenarios (its tests/pg_session_jwt.rs, re-expressed here in our own
//! code), run as its suite runs them: the library not preloaded, a non-superuser connecting
//! with the proxy's Ed25519 key in the startup packet (`-c pg_session_jwt.jwk=…`, no `kid`, no
//! `alg`), tokens whose header is `{"kid":1}`.
//!
//! In the compatible configuration (trusted-proxy mode with `pg_rls_auth.trust_request_claims
//! = on` set explicitly) every scenario behaves as pg_session_jwt does; error wording and
//! SQLSTATEs are ours (the README lists both). With `trust_request_claims` left at its default,
//! the same scenarios show what differs on purpose.

use pg_rls_auth_it::postgres::Client;
use pg_rls_auth_it::serde_json::{json, Value};
use pg_rls_auth_it::*;

const ORG_ID: &str = "11111111-1111-1111-1111-111111111111";
const COMPATIBLE: [&str; 2] = [
    "pg_rls_auth.trusted_proxy = on",
    "pg_rls_auth.trust_request_claims = on",
];
const DEFAULT: [&str; 1] = ["pg_rls_auth.trusted_proxy = on"];

struct Proxy {
    cluster: Cluster,
    key: Key,
}

impl Proxy {
    fn start(conf: &[&str]) -> Proxy {
        let cluster = Cluster::start_without_preload(conf);
        cluster.setup("app", &["app_user"]);
        Proxy {
            cluster,
            key: Key::new(),
        }
    }

    /// A connection as the proxy makes it: its key in the startup packet.
    fn connect(&self) -> Client {
        let jwk = self.key.public_without(&["kid", "alg", "use"]);
        self.cluster
            .connect("app_user", "app", &format!("-c pg_session_jwt.jwk={jwk}"))
    }

    /// A connection with no key sent.
    fn connect_without_key(&self) -> Client {
        self.cluster.connect("app_user", "app", "")
    }

    /// A token as pg_session_jwt's suite signs them: header `{"kid":1}`, the claims as given.
    fn token(&self, claims: Value) -> String {
        self.key.token_with_header(json!({"kid": 1}), claims)
    }
}

fn text(c: &mut Client, sql: &str) -> Option<String> {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

fn boolean(c: &mut Client, sql: &str) -> Option<bool> {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

fn session_init(c: &mut Client, token: &str) -> Result<(), String> {
    c.execute("SELECT auth.jwt_session_init($1)", &[&token])
        .map(|_| ())
        .map_err(|e| describe(&e))
}

fn assert_no_organization(c: &mut Client) {
    assert_eq!(text(c, "SELECT auth.organization()::text"), None);
    assert_eq!(text(c, "SELECT auth.organization_id()::text"), None);
    assert_eq!(boolean(c, "SELECT auth.organization() IS NULL"), Some(true));
    assert_eq!(
        boolean(c, "SELECT auth.organization_id() IS NULL"),
        Some(true)
    );
}

#[test]
fn jti_must_increase() {
    let p = Proxy::start(&COMPATIBLE);
    let mut c = p.connect();
    c.batch_execute("SELECT auth.init()").unwrap();
    session_init(&mut c, &p.token(json!({"jti": 2}))).unwrap();
    let err = session_init(&mut c, &p.token(json!({"jti": 1}))).unwrap_err();
    assert!(
        err.starts_with("28000") && err.contains("jti is not greater"),
        "{err}"
    );
}

#[test]
fn time_claims_are_optional_checked_when_present_with_sixty_seconds_leeway() {
    let p = Proxy::start(&COMPATIBLE);
    let t = now();
    let mut c = p.connect();
    c.batch_execute("SELECT auth.init()").unwrap();
    let err = session_init(&mut c, &p.token(json!({"jti": 1, "nbf": t + 70}))).unwrap_err();
    assert!(err.contains("not valid before"), "{err}");
    let mut c = p.connect();
    let err = session_init(&mut c, &p.token(json!({"jti": 1, "exp": t - 65}))).unwrap_err();
    assert!(err.contains("expired at"), "{err}");
    let mut c = p.connect();
    // The leeway cases leave about a second: take the time just before.
    let t = now();
    for claims in [
        json!({"jti": 1, "exp": t - 59}),
        json!({"jti": 2, "nbf": t + 59}),
        json!({"jti": 3, "nbf": t - 10, "exp": t + 10}),
        json!({"jti": 4, "nbf": t - 10}),
        json!({"jti": 5, "exp": t + 10}),
    ] {
        session_init(&mut c, &p.token(claims.clone())).unwrap_or_else(|e| panic!("{claims}: {e}"));
    }
}

#[test]
fn each_init_makes_its_token_the_session() {
    let p = Proxy::start(&COMPATIBLE);
    let mut c = p.connect();
    c.batch_execute("SELECT auth.init()").unwrap();
    session_init(&mut c, &p.token(json!({"sub": "foo", "jti": 1}))).unwrap();
    assert_eq!(
        text(&mut c, "SELECT auth.user_id()").as_deref(),
        Some("foo")
    );
    session_init(&mut c, &p.token(json!({"sub": "bar", "jti": 2}))).unwrap();
    assert_eq!(
        text(&mut c, "SELECT auth.user_id()").as_deref(),
        Some("bar")
    );
}

#[test]
fn the_token_setting_hands_a_session_to_a_background_worker() {
    let p = Proxy::start(&COMPATIBLE);
    let mut c = p.connect();
    let token = p.token(json!({"sub": "foo", "jti": 1}));
    // Before any auth.* call, so the library is not loaded yet, as in pg_session_jwt's test.
    c.batch_execute(&format!("SET pg_session_jwt.jwt = {}", quote(&token)))
        .unwrap();
    assert_eq!(
        text(&mut c, "SELECT auth.user_id()").as_deref(),
        Some("foo")
    );
}

#[test]
fn a_verified_session_ignores_request_claims() {
    let p = Proxy::start(&COMPATIBLE);
    let mut c = p.connect();
    c.batch_execute("SELECT auth.init()").unwrap();
    let token = p.token(json!({"sub": "jwt-user", "jti": 1, "role": "admin"}));
    session_init(&mut c, &token).unwrap();
    c.batch_execute(r#"SET request.jwt.claims = '{"sub":"fallback-user","role":"user"}'"#)
        .unwrap();
    assert_eq!(
        text(&mut c, "SELECT auth.user_id()").as_deref(),
        Some("jwt-user")
    );
    for f in ["session", "jwt"] {
        for (claim, expected) in [("sub", "jwt-user"), ("role", "admin")] {
            let sql = format!("SELECT auth.{f}()->>'{claim}'");
            assert_eq!(text(&mut c, &sql).as_deref(), Some(expected), "{sql}");
        }
    }
}

#[test]
fn organization_claims_with_the_proxy_key() {
    let p = Proxy::start(&COMPATIBLE);
    let mut c = p.connect();
    c.batch_execute("SELECT auth.init()").unwrap();
    assert_no_organization(&mut c);
    session_init(&mut c, &p.token(json!({"sub": "user", "jti": 1}))).unwrap();
    assert_no_organization(&mut c);
    let o = json!({"id": ORG_ID, "slug": "acme", "role": "admin"});
    session_init(&mut c, &p.token(json!({"sub": "user", "jti": 2, "o": o}))).unwrap();
    assert_eq!(
        boolean(
            &mut c,
            &format!("SELECT auth.organization() = '{o}'::jsonb")
        ),
        Some(true)
    );
    assert_eq!(
        text(&mut c, "SELECT auth.organization_id()::text").as_deref(),
        Some(ORG_ID)
    );
    // The type is uuid, so an existing policy's comparison with a uuid works.
    assert_eq!(
        boolean(
            &mut c,
            &format!("SELECT auth.organization_id() = '{ORG_ID}'::uuid")
        ),
        Some(true)
    );
    session_init(
        &mut c,
        &p.token(json!({"sub": "user", "jti": 3, "o": "not-an-object"})),
    )
    .unwrap();
    assert_no_organization(&mut c);
    let no_id = json!({"sub": "user", "jti": 4, "o": {"slug": "acme", "role": "member"}});
    session_init(&mut c, &p.token(no_id)).unwrap();
    assert_eq!(
        boolean(&mut c, "SELECT auth.organization() IS NOT NULL"),
        Some(true)
    );
    assert_eq!(text(&mut c, "SELECT auth.organization_id()::text"), None);
    let bad_id = json!({"sub": "user", "jti": 5, "o": {"id": "not-a-uuid", "slug": "acme"}});
    session_init(&mut c, &p.token(bad_id)).unwrap();
    assert_eq!(text(&mut c, "SELECT auth.organization_id()::text"), None);
}

#[test]
fn without_a_proxy_key_claims_come_from_request_claims() {
    let p = Proxy::start(&COMPATIBLE);
    let mut c = p.connect_without_key();
    let zero = "00000000-0000-0000-0000-000000000000";
    c.batch_execute(&format!(r#"SET request.jwt.claims = '{{"sub":"{zero}"}}'"#))
        .unwrap();
    assert_eq!(text(&mut c, "SELECT auth.user_id()").as_deref(), Some(zero));
    assert_eq!(
        text(&mut c, "SELECT auth.uid()::text").as_deref(),
        Some(zero)
    );
    assert_eq!(
        boolean(&mut c, &format!("SELECT auth.uid() = '{zero}'::uuid")),
        Some(true)
    );
    // Claims not set: NULL, and a RESET before the library is loaded is no error.
    let mut c = p.connect_without_key();
    c.batch_execute("RESET request.jwt.claims").unwrap();
    assert_eq!(text(&mut c, "SELECT auth.user_id()"), None);
    assert_eq!(text(&mut c, "SELECT auth.uid()::text"), None);
    let mut c = p.connect_without_key();
    c.batch_execute(r#"SET request.jwt.claims = '{"sub":"test-user","role":"admin"}'"#)
        .unwrap();
    for f in ["session", "jwt"] {
        for (claim, expected) in [("sub", "test-user"), ("role", "admin")] {
            let sql = format!("SELECT auth.{f}()->>'{claim}'");
            assert_eq!(text(&mut c, &sql).as_deref(), Some(expected), "{sql}");
        }
    }
    // No claims: auth.session() and auth.jwt() are JSON null, as in pg_session_jwt (outside
    // this configuration auth.jwt() is Supabase's SQL NULL; see the default test below).
    let mut c = p.connect_without_key();
    c.batch_execute("RESET request.jwt.claims").unwrap();
    for f in ["session", "jwt"] {
        let sql = format!("SELECT auth.{f}()::text");
        assert_eq!(text(&mut c, &sql).as_deref(), Some("null"), "{sql}");
        let sql = format!("SELECT auth.{f}() IS NULL");
        assert_eq!(boolean(&mut c, &sql), Some(false), "{sql}");
    }
    // Organizations from claims.
    let mut c = p.connect_without_key();
    c.batch_execute("RESET request.jwt.claims").unwrap();
    assert_no_organization(&mut c);
    for (claims, id) in [
        (json!({"sub": "user"}), None),
        (
            json!({"sub": "user", "o": {"id": ORG_ID, "slug": "acme", "role": "owner"}}),
            Some(ORG_ID),
        ),
        (json!({"sub": "user", "o": "bad"}), None),
    ] {
        c.batch_execute(&format!(
            "SET request.jwt.claims = {}",
            quote(&claims.to_string())
        ))
        .unwrap();
        assert_eq!(
            text(&mut c, "SELECT auth.organization_id()::text").as_deref(),
            id
        );
        if id.is_none() {
            assert_no_organization(&mut c);
        }
    }
    // Without any key auth.init() and auth.jwt_session_init() raise, as pg_session_jwt's do.
    assert_eq!(err_code(c.batch_execute("SELECT auth.init()")), "55000");
    assert_eq!(
        err_code(init(&mut c, &p.token(json!({"sub": "x", "jti": 1})), false)),
        "55000"
    );
}

#[test]
fn reinit_with_the_current_token_is_idempotent_and_the_first_jti_is_at_least_one() {
    let p = Proxy::start(&COMPATIBLE);
    let mut c = p.connect();
    let first = p.token(json!({"sub": "a", "jti": 1}));
    session_init(&mut c, &first).unwrap();
    session_init(&mut c, &first).unwrap();
    assert_eq!(text(&mut c, "SELECT auth.user_id()").as_deref(), Some("a"));
    session_init(&mut c, &p.token(json!({"sub": "b", "jti": 2}))).unwrap();
    // A, B, then A again: A is no longer the current token.
    assert!(session_init(&mut c, &first)
        .unwrap_err()
        .starts_with("28000"));
    let mut c = p.connect();
    let err = session_init(&mut c, &p.token(json!({"sub": "a", "jti": 0}))).unwrap_err();
    assert!(err.starts_with("28000"), "{err}");
}

#[test]
fn a_bad_token_setting_behaves_as_a_failed_init() {
    let p = Proxy::start(&COMPATIBLE);
    let mut c = p.connect();
    session_init(&mut c, &p.token(json!({"sub": "alice", "jti": 1}))).unwrap();
    // A forged token in the setting: no session remains, and every claim read says why.
    let forged =
        Key::new().token_with_header(json!({"kid": 1}), json!({"sub": "mallory", "jti": 9}));
    c.batch_execute(&format!("SET pg_session_jwt.jwt = {}", quote(&forged)))
        .unwrap();
    for sql in ["SELECT auth.user_id()", "SELECT auth.session()::text"] {
        assert_eq!(err_code(c.query_one(sql, &[])), "28000", "{sql}");
    }
    // Another value replaces it; RESET ends the session.
    c.batch_execute(&format!(
        "SET pg_session_jwt.jwt = {}",
        quote(&p.token(json!({"sub": "bob", "jti": 2})))
    ))
    .unwrap();
    assert_eq!(
        text(&mut c, "SELECT auth.user_id()").as_deref(),
        Some("bob")
    );
    c.batch_execute("RESET pg_session_jwt.jwt").unwrap();
    assert_eq!(text(&mut c, "SELECT auth.user_id()"), None);
    // auth.jwt_session_init() sets the token setting too, so the two never disagree, and a
    // rolled-back SET brings back both.
    let carol = p.token(json!({"sub": "carol", "jti": 3}));
    session_init(&mut c, &carol).unwrap();
    assert_eq!(
        text(&mut c, "SHOW pg_session_jwt.jwt").as_deref(),
        Some(carol.as_str())
    );
    c.batch_execute(&format!(
        "BEGIN; SET pg_session_jwt.jwt = {}; SELECT auth.user_id(); ROLLBACK",
        quote(&p.token(json!({"sub": "dave", "jti": 4})))
    ))
    .unwrap();
    assert_eq!(
        text(&mut c, "SELECT auth.user_id()").as_deref(),
        Some("carol")
    );
    // A plain SET of the token setting in a function's SET clause cannot bypass verification.
    c.batch_execute(&format!(
        "CREATE FUNCTION pg_temp.as_forged() RETURNS text LANGUAGE sql SET pg_session_jwt.jwt = {} \
         AS $$ SELECT auth.user_id() $$",
        quote(&forged)
    ))
    .unwrap();
    assert_eq!(
        err_code(c.query_one("SELECT pg_temp.as_forged()", &[])),
        "28000"
    );
}

/// The same scenarios with `trust_request_claims` left at its default: what differs on purpose.
#[test]
fn the_default_configuration_differs_on_purpose() {
    let p = Proxy::start(&DEFAULT);
    // The header {"kid":1} and a key without kid or alg work in every trusted-proxy mode.
    let mut c = p.connect();
    let t = now();
    session_init(
        &mut c,
        &p.token(json!({"sub": "foo", "jti": 1, "exp": t + 60})),
    )
    .unwrap();
    assert_eq!(
        text(&mut c, "SELECT auth.user_id()").as_deref(),
        Some("foo")
    );
    // exp is required (pg_rls_auth.require_exp), re-init with the same token is a replay, and
    // the first jti may be any integer.
    let err = session_init(&mut c, &p.token(json!({"sub": "foo", "jti": 2}))).unwrap_err();
    assert!(err.contains("no exp claim"), "{err}");
    let mut c = p.connect();
    let same = p.token(json!({"sub": "foo", "jti": 0, "exp": t + 60}));
    session_init(&mut c, &same).unwrap();
    assert!(session_init(&mut c, &same)
        .unwrap_err()
        .starts_with("28000"));
    // With no key sent, request.jwt.claims is never trusted: any client could set it.
    let mut c = p.connect_without_key();
    c.batch_execute(r#"SET request.jwt.claims = '{"sub":"forged"}'"#)
        .unwrap();
    assert_eq!(text(&mut c, "SELECT auth.user_id()"), None);
    assert_eq!(
        text(&mut c, "SELECT auth.session()::text").as_deref(),
        Some("null")
    );
    assert_eq!(boolean(&mut c, "SELECT auth.jwt() IS NULL"), Some(true));
    assert_eq!(
        err_code(init(&mut c, &p.token(json!({"sub": "x", "jti": 1})), false)),
        "55000"
    );
    // trust_request_claims = on in a role's settings is as explicit as in postgresql.conf.
    p.cluster.sql(
        "postgres",
        "ALTER ROLE app_user SET pg_rls_auth.trust_request_claims = on",
    );
    let mut c = p.connect_without_key();
    c.batch_execute(r#"SET request.jwt.claims = '{"sub":"fallback"}'"#)
        .unwrap();
    assert_eq!(
        text(&mut c, "SELECT auth.user_id()").as_deref(),
        Some("fallback")
    );
}

#[test]
fn configured_keys_stay_strict_in_the_compatible_configuration() {
    let p = Proxy::start(&COMPATIBLE);
    let configured = Key::new();
    p.cluster.set_system("pg_rls_auth.jwks", &configured.public);
    // No proxy key sent, but a key configured: claims come only from tokens.
    let mut c = p.connect_without_key();
    c.batch_execute(r#"SET request.jwt.claims = '{"sub":"forged"}'"#)
        .unwrap();
    assert_eq!(text(&mut c, "SELECT auth.user_id()"), None);
    for header in [json!({"kid": 1}), json!({"kid": 1, "alg": "EdDSA"})] {
        let token =
            configured.token_with_header(header.clone(), json!({"sub": "x", "exp": now() + 60}));
        assert_eq!(err_code(init(&mut c, &token, false)), "28000", "{header}");
    }
    let err = session_init(&mut c, &configured.token(json!({"sub": "x"})));
    assert!(err.is_ok(), "{err:?}");
    // A configured key's token without exp is refused: require_exp applies to it.
    let no_exp = configured.token_with_header(
        json!({"alg": "EdDSA", "kid": serde_kid(&configured)}),
        json!({"sub": "x"}),
    );
    assert_eq!(err_code(init(&mut c, &no_exp, false)), "28000");
}

fn serde_kid(key: &Key) -> Value {
    let public: Value = pg_rls_auth_it::serde_json::from_str(&key.public).unwrap();
    public["kid"].clone()
}

/// Found by running pg_session_jwt's scenarios: after RESET of a never-set request.jwt.claims,
/// the fallback took the placeholder's missing value for "no such setting" for good.
#[test]
fn request_claims_set_after_a_reset_are_seen() {
    let cluster = Cluster::start_without_preload(&[]);
    cluster.setup("app", &["alice"]);
    for (reset, set, expected) in [
        (
            "RESET request.jwt.claims",
            r#"SET request.jwt.claims = '{"sub":"u"}'"#,
            "u",
        ),
        (
            "RESET REQUEST.JWT.CLAIMS",
            r#"SET Request.Jwt.Claims = '{"sub":"v"}'"#,
            "v",
        ),
        (
            "RESET request.jwt.claim.sub",
            "SET request.jwt.claim.sub = 'w'",
            "w",
        ),
        (
            "SET request.jwt.claims = ''",
            r#"SET request.jwt.claims = '{"sub":"x"}'"#,
            "x",
        ),
    ] {
        let mut c = cluster.connect("alice", "app", "");
        c.batch_execute(reset).unwrap();
        assert_eq!(user_id(&mut c), None, "{reset}");
        c.batch_execute(set).unwrap();
        assert_eq!(user_id(&mut c).as_deref(), Some(expected), "{reset}; {set}");
    }
}
