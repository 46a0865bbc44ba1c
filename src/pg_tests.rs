//! In-server tests (`cargo pgrx test`): behaviour that needs a backend but no second client.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn configure_key() -> String {
        let private = Spi::get_one::<String>("SELECT auth.generate_jwk('EdDSA')::text")
            .unwrap()
            .unwrap();
        Spi::run(&format!(
            "SELECT set_config('pg_rls_auth.jwks', auth.public_jwk('{private}')::text, false)"
        ))
        .unwrap();
        private
    }

    fn token(private: &str, claims: &str) -> String {
        Spi::get_one::<String>(&format!(
            "SELECT auth.sign_jwt('{claims}'::jsonb || jsonb_build_object('exp', extract(epoch FROM now())::int + 600), '{private}')"
        ))
        .unwrap()
        .unwrap()
    }

    #[pg_test]
    fn no_session_means_null_claims() {
        assert_eq!(
            Spi::get_one::<String>("SELECT auth.user_id()").unwrap(),
            None
        );
        // auth.session() is JSON null without a session (pg_session_jwt's), auth.jwt() SQL
        // NULL (Supabase's).
        assert_eq!(
            Spi::get_one::<String>("SELECT auth.session()::text")
                .unwrap()
                .as_deref(),
            Some("null")
        );
        assert_eq!(
            Spi::get_one::<pgrx::JsonB>("SELECT auth.jwt()")
                .unwrap()
                .map(|j| j.0),
            None
        );
    }

    #[pg_test]
    fn session_claims_come_back_as_jsonb() {
        let private = configure_key();
        let tok = token(&private, r#"{"sub":"alice","nested":{"a":[1,2]}}"#);
        Spi::run(&format!("SELECT auth.jwt_session_init('{tok}')")).unwrap();
        let session = Spi::get_one::<pgrx::JsonB>("SELECT auth.session()")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(session["sub"], "alice");
        assert_eq!(session["nested"]["a"][1], 2);
        assert_eq!(
            Spi::get_one::<String>("SELECT auth.claim('nested.a')")
                .unwrap()
                .as_deref(),
            Some("[1,2]")
        );
    }

    #[pg_test(error = "the token signature does not verify")]
    fn a_token_with_swapped_claims_is_refused() {
        let private = configure_key();
        let tok = token(&private, r#"{"sub":"alice"}"#);
        let parts: Vec<&str> = tok.split('.').collect();
        let forged = Spi::get_one::<String>(
            "SELECT auth.sign_jwt('{\"sub\":\"mallory\",\"exp\":9999999999}', 'x-secret-of-at-least-thirty-two-bytes', 'HS256')",
        )
        .unwrap()
        .unwrap();
        let forged_payload = forged.split('.').nth(1).unwrap();
        Spi::run(&format!(
            "SELECT auth.jwt_session_init('{}.{}.{}')",
            parts[0], forged_payload, parts[2]
        ))
        .unwrap();
    }

    #[pg_test(error = "rate limit exceeded")]
    fn the_limit_raises_once_exhausted() {
        Spi::run("SELECT auth.check_write_rate('k', 2, 60) FROM generate_series(1, 3)").unwrap();
    }

    /// This transaction's reads, inserts and updates of the state table so far.
    fn table_activity() -> (i64, i64, i64) {
        Spi::get_three::<i64, i64, i64>(
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0), n_tup_ins, n_tup_upd \
             FROM pg_stat_xact_all_tables \
             WHERE relid = '_pg_rls_auth.write_rate_state'::regclass",
        )
        .map(|(a, b, c)| (a.unwrap(), b.unwrap(), c.unwrap()))
        .unwrap()
    }

    /// What `n` checks of one fresh key in one statement cost the table: (reads, inserts,
    /// updates).
    fn table_cost_of_checks(n: i64, key: &str) -> (i64, i64, i64) {
        let before = table_activity();
        Spi::run(&format!(
            "SELECT count(*) FROM generate_series(1, {n}) \
             WHERE auth.check_write_rate('{key}', 2147483647, 3600)"
        ))
        .unwrap();
        let after = table_activity();
        (after.0 - before.0, after.1 - before.1, after.2 - before.2)
    }

    /// The table store touches the table a fixed number of times per key per transaction, so
    /// a long transaction on one key is linear: 10,000 checks read the table exactly as often
    /// as 10 do, insert one row, and update none (the row is written back once, at commit).
    /// Counted, not timed, so a busy machine cannot decide the result; the benchmark times it.
    #[pg_test]
    fn table_store_is_linear_inside_one_transaction() {
        Spi::run("SET pg_rls_auth.rate_limit_store = 'table'").unwrap();
        let few = table_cost_of_checks(10, "few");
        let many = table_cost_of_checks(10_000, "many");
        assert_eq!(
            few, many,
            "(reads, inserts, updates) of 10 vs 10,000 checks"
        );
        assert_eq!(
            (few.1, few.2),
            (1, 0),
            "one insert and no update per fresh key"
        );
        for i in 0..8 {
            assert_eq!(table_cost_of_checks(1_000, &format!("k{i}")), few);
        }
        let rows = Spi::get_one::<i64>("SELECT count(*) FROM _pg_rls_auth.write_rate_state")
            .unwrap()
            .unwrap();
        assert_eq!(rows, 10, "one row per key");
    }

    /// A database whose extension SQL predates the revocations table (a new library, the
    /// upgrade not yet run) has revoked nothing: sessions start and statements run; revoking
    /// says what to do.
    #[pg_test(error = "pg_rls_auth: the table _pg_rls_auth.revocations is missing")]
    fn without_the_revocations_table_nothing_is_revoked() {
        let private = configure_key();
        Spi::run("ALTER EXTENSION pg_rls_auth DROP TABLE _pg_rls_auth.revocations").unwrap();
        Spi::run("DROP TABLE _pg_rls_auth.revocations").unwrap();
        let tok = token(&private, r#"{"sub":"alice","jti":"j1"}"#);
        Spi::run(&format!("SELECT auth.jwt_session_init('{tok}')")).unwrap();
        assert_eq!(
            Spi::get_one::<String>("SELECT auth.user_id()")
                .unwrap()
                .as_deref(),
            Some("alice")
        );
        Spi::run("SELECT auth.revoke_sessions('alice')").unwrap();
    }

    /// A revoked token is refused at init.
    #[pg_test(error = "the token has been revoked")]
    fn a_revoked_token_is_refused() {
        let private = configure_key();
        let tok = token(&private, r#"{"sub":"alice","jti":"j1"}"#);
        Spi::run(&format!("SELECT auth.jwt_session_init('{tok}')")).unwrap();
        Spi::run("SELECT auth.revoke_token('j1', now() + interval '1 hour')").unwrap();
        let listed = Spi::get_one::<String>(
            "SELECT string_agg(kind || ':' || value, ',') FROM auth.revocations()",
        )
        .unwrap();
        assert_eq!(listed.as_deref(), Some("token:j1"));
        Spi::run(&format!("SELECT auth.jwt_session_init('{tok}')")).unwrap();
    }

    /// Only the OAuth validator writes the login setting: a superuser's SET is refused too.
    #[pg_test(error = "pg_rls_auth.login_session can only be set by an OAuth login")]
    fn the_login_setting_refuses_every_other_writer() {
        Spi::run(r#"SET pg_rls_auth.login_session = '{"sub":"mallory"}'"#).unwrap();
    }

    /// The OAuth login's claim settings, with their defaults (PostgreSQL 18 only).
    #[cfg(feature = "pg18")]
    #[pg_test]
    fn oauth_claim_settings() {
        for (name, value, context) in [
            ("pg_rls_auth.oauth_role_claim", "role", "sighup"),
            ("pg_rls_auth.oauth_authn_claim", "sub", "sighup"),
        ] {
            let row = Spi::get_two::<String, String>(&format!(
                "SELECT setting, context FROM pg_settings WHERE name = '{name}'"
            ))
            .unwrap();
            assert_eq!(row, (Some(value.into()), Some(context.into())), "{name}");
        }
    }

    /// The managed keys' settings: described, reloadable only (postgresql.conf or ALTER
    /// SYSTEM), hidden from no one but settable by no session, with their defaults.
    #[pg_test]
    fn managed_key_settings() {
        for (name, value, unit) in [
            ("pg_rls_auth.jwks_urls", "", None),
            ("pg_rls_auth.oidc_issuers", "", None),
            ("pg_rls_auth.http_ca_file", "", None),
            ("pg_rls_auth.jwks_refresh_interval", "600", Some("s")),
            ("pg_rls_auth.jwks_refresh_wait", "1000", Some("ms")),
        ] {
            let row = Spi::get_three::<String, String, bool>(&format!(
                "SELECT setting, context, short_desc <> '' FROM pg_settings WHERE name = '{name}'"
            ))
            .unwrap();
            assert_eq!(
                row,
                (Some(value.into()), Some("sighup".into()), Some(true)),
                "{name}"
            );
            let found_unit = Spi::get_one::<String>(&format!(
                "SELECT unit FROM pg_settings WHERE name = '{name}'"
            ))
            .unwrap();
            assert_eq!(found_unit.as_deref(), unit, "{name}");
        }
    }

    #[pg_test(error = "parameter \"pg_rls_auth.jwks_urls\" cannot be changed now")]
    fn a_session_cannot_point_the_key_fetcher_anywhere() {
        Spi::run("SET pg_rls_auth.jwks_urls = 'https://example.com/jwks'").unwrap();
    }

    /// Every role may read the status; only those granted it may force a fetch. With no source
    /// configured both answer no rows, without waiting for the worker.
    #[pg_test]
    fn key_status_functions() {
        Spi::run("CREATE ROLE key_status_reader").unwrap();
        let (status, refresh) = Spi::get_two::<bool, bool>(
            "SELECT has_function_privilege('key_status_reader', 'auth.jwks_status()', 'EXECUTE'), \
                    has_function_privilege('key_status_reader', 'auth.refresh_jwks()', 'EXECUTE')",
        )
        .unwrap();
        assert_eq!((status, refresh), (Some(true), Some(false)));
        for function in ["jwks_status", "refresh_jwks"] {
            assert_eq!(
                Spi::get_one::<i64>(&format!("SELECT count(*) FROM auth.{function}()")).unwrap(),
                Some(0),
                "{function}"
            );
        }
        let columns = Spi::get_one::<String>(
            "SELECT array_to_string(proargnames, ',') FROM pg_proc \
             WHERE oid = 'auth.jwks_status()'::regprocedure",
        )
        .unwrap();
        assert_eq!(
            columns.as_deref(),
            Some("source,url,keys,kids,last_attempt,last_success,last_error,next_refresh")
        );
    }
}
