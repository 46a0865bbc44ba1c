//! Compiles `src/oauth_hba.c` for PostgreSQL 18 (the OAuth validator reads the connection's
//! pg_hba line through it) against that server's headers, found as pgrx finds them.

fn main() {
    println!("cargo:rerun-if-changed=src/oauth_hba.c");
    println!("cargo:rerun-if-env-changed=PGRX_PG_CONFIG_PATH");
    if std::env::var_os("CARGO_FEATURE_PG18").is_none() {
        return;
    }
    let include = pgrx_pg_config::Pgrx::from_config()
        .and_then(|pgrx| pgrx.get("pg18"))
        .and_then(|pg| pg.includedir_server())
        .unwrap_or_else(|e| panic!("finding PostgreSQL 18's server headers: {e}"));
    cc::Build::new()
        .file("src/oauth_hba.c")
        .include(include)
        .warnings(true)
        .compile("pg_rls_auth_oauth_hba");
}
