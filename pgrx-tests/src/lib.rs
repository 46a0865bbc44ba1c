//! Integration-test harness: a throwaway PostgreSQL cluster (15 unless `PG_BIN` names another) with pg_rls_auth installed,
//! reached through a real client (the `postgres` crate) over a Unix socket, and tokens minted
//! with the core's token kit.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, initdb and pg_ctl run as the
//! `postgres` user (`runuser`), in a temporary directory that user owns.

use postgres::{Client, NoTls};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use postgres;
pub use serde_json;

pub mod oauth_client;

static NEXT_CLUSTER: AtomicU16 = AtomicU16::new(0);

/// The PostgreSQL under test: `PG_BIN` (the test command sets it per version), else Debian's 15.
pub fn pg_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_string())
    })
}

/// The major version of the PostgreSQL under test.
pub fn pg_major() -> u32 {
    static MAJOR: OnceLock<u32> = OnceLock::new();
    *MAJOR.get_or_init(|| {
        let out = Command::new(format!("{}/pg_config", pg_bin()))
            .arg("--version")
            .output()
            .expect("run pg_config");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .nth(1)
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("pg_config --version said {text:?}"))
    })
}

/// Settings that make the next parallel-safe query run in a parallel worker (the forcing
/// setting was renamed in PostgreSQL 16).
pub fn force_parallel_sql() -> String {
    let force = if pg_major() >= 16 {
        "debug_parallel_query"
    } else {
        "force_parallel_mode"
    };
    format!(
        "SET {force} = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; \
         SET max_parallel_workers_per_gather = 2; SET min_parallel_table_scan_size = 0"
    )
}

/// A running cluster; dropping it stops the server and removes its directory.
pub struct Cluster {
    dir: PathBuf,
    port: u16,
}

/// Makes the server's user own `path` (when the tests run as root).
fn give_to_server(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown {}", path.display());
    }
}

fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.trim_ascii() == b"0")
            .unwrap_or(false)
    })
}

/// A PostgreSQL program, run as the postgres user when we are root.
fn pg_command(program: &str) -> Command {
    let path = format!("{}/{program}", pg_bin());
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(&path)
    }
}

/// Runs a PostgreSQL program; panics on failure.
fn run_pg(program: &str, args: &[&str]) {
    let out = pg_command(program)
        .args(args)
        .output()
        .expect("run a PostgreSQL program");
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// Starts a cluster with `shared_preload_libraries = 'pg_rls_auth'` and `extra_conf` lines.
    pub fn start(extra_conf: &[&str]) -> Cluster {
        Self::start_with(true, extra_conf)
    }

    /// Starts a cluster that does not preload the library (the rate limiter's table store).
    pub fn start_without_preload(extra_conf: &[&str]) -> Cluster {
        Self::start_with(false, extra_conf)
    }

    /// A new, empty cluster directory (owned by the server's user) and a port of its own.
    fn allocate() -> Cluster {
        let n = NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Distinct per process and per cluster, so parallel test binaries never clash.
        let port = 20_000 + ((pid % 2_000) as u16) * 16 + (n % 16);
        let dir = std::env::temp_dir().join(format!("pg_rls_auth_it.{pid}.{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create the cluster directory");
        if is_root() {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown postgres {}", dir.display());
        }
        Cluster { dir, port }
    }

    /// Appends lines to the cluster's postgresql.conf (later lines win).
    fn append_conf(&self, lines: &str) {
        let conf_path = Path::new(&self.data_dir()).join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("read postgresql.conf");
        text.push_str(lines);
        std::fs::write(&conf_path, text).expect("write postgresql.conf");
    }

    /// Starts a streaming hot standby of this cluster (`pg_basebackup -R`), on a socket and
    /// port of its own, with `extra_conf` lines; it shares this cluster's settings otherwise.
    pub fn start_standby(&self, extra_conf: &[&str]) -> Cluster {
        let standby = Cluster::allocate();
        let data = standby.data_dir();
        run_pg(
            "pg_basebackup",
            &[
                "-D",
                &data,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-h",
                self.dir.to_str().expect("UTF-8 path"),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ],
        );
        let mut conf = format!(
            "\nunix_socket_directories = '{}'\nport = {}\nhot_standby = on\n",
            standby.dir.display(),
            standby.port
        );
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        standby.append_conf(&conf);
        standby.pg_ctl(&["-w", "-t", "60", "start"]);
        standby
    }

    /// Waits until the standby has replayed everything `primary` has written so far.
    pub fn wait_for_replay(&self, primary: &Cluster) {
        let lsn: String = primary
            .superuser("postgres")
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .expect("read the primary's WAL position")
            .get(0);
        wait_until(
            Duration::from_secs(60),
            "the standby did not catch up",
            || {
                self.superuser("postgres")
                    .query_one(
                        "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                        &[&lsn],
                    )
                    .expect("read the standby's replay position")
                    .get(0)
            },
        );
    }

    fn start_with(preload: bool, extra_conf: &[&str]) -> Cluster {
        let cluster = Cluster::allocate();
        let data = cluster.data_dir();
        run_pg(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let mut conf = format!(
            "\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {}\nfsync = off\n",
            cluster.dir.display(),
            cluster.port
        );
        if preload {
            conf.push_str("shared_preload_libraries = 'pg_rls_auth'\n");
        }
        for line in extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        cluster.append_conf(&conf);
        cluster.pg_ctl(&["-w", "-t", "60", "start"]);
        cluster
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn pg_ctl(&self, args: &[&str]) {
        let (data, log) = (self.data_dir(), self.dir.join("server.log"));
        let mut all = vec!["-D", &data, "-l", log.to_str().expect("UTF-8 path")];
        all.extend_from_slice(args);
        run_pg("pg_ctl", &all);
    }

    /// Restarts the server (fast shutdown).
    pub fn restart(&self) {
        self.pg_ctl(&["-w", "-t", "60", "-m", "fast", "restart"]);
    }

    /// A client config for `user` on `db`, with libpq-style startup `options` (`-c name=value`).
    pub fn config(&self, user: &str, db: &str, options: &str) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .host_path(&self.dir)
            .port(self.port)
            .user(user)
            .dbname(db)
            .connect_timeout(Duration::from_secs(30));
        if !options.is_empty() {
            config.options(options);
        }
        config
    }

    /// Connects, returning the server's error (e.g. a FATAL at startup) instead of panicking.
    pub fn try_connect(
        &self,
        user: &str,
        db: &str,
        options: &str,
    ) -> Result<Client, postgres::Error> {
        self.config(user, db, options).connect(NoTls)
    }

    /// Connects as `user` to `db` with startup `options`; panics on failure.
    pub fn connect(&self, user: &str, db: &str, options: &str) -> Client {
        self.try_connect(user, db, options)
            .unwrap_or_else(|e| panic!("connect as {user} to {db} ({options:?}): {e}"))
    }

    /// A superuser connection to `db`.
    pub fn superuser(&self, db: &str) -> Client {
        self.connect("postgres", db, "")
    }

    /// Runs `sql` (several statements allowed) as superuser in `db`; panics on error.
    pub fn sql(&self, db: &str, sql: &str) {
        self.superuser(db)
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }

    /// Creates LOGIN role `owner` (no other attribute) and database `db` owned by it, as a
    /// hosting provider's customer gets; the extension is not installed.
    pub fn database_owned_by(&self, db: &str, owner: &str) {
        self.sql("postgres", &format!("CREATE ROLE {owner} LOGIN"));
        self.sql("postgres", &format!("CREATE DATABASE {db} OWNER {owner}"));
    }

    /// Whether `role` is a superuser now.
    pub fn is_superuser(&self, role: &str) -> bool {
        self.superuser("postgres")
            .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
            .expect("read pg_roles")
            .get(0)
    }

    /// Creates database `db` with the extension, and LOGIN roles `roles` (cluster-wide).
    pub fn setup(&self, db: &str, roles: &[&str]) {
        if db != "postgres" {
            self.sql("postgres", &format!("CREATE DATABASE {db}"));
        }
        self.sql(db, "CREATE EXTENSION pg_rls_auth");
        for role in roles {
            self.sql(db, &format!("CREATE ROLE {role} LOGIN"));
        }
    }

    /// The usual start of a test: database `app` with the extension, LOGIN roles `roles`, and
    /// a new key configured as `pg_rls_auth.jwks` (its private half returned for signing).
    pub fn with_key(self, roles: &[&str]) -> (Cluster, Key) {
        self.setup("app", roles);
        let key = Key::new();
        self.set_system("pg_rls_auth.jwks", &key.public);
        (self, key)
    }

    /// `ALTER SYSTEM SET name = value` and a reload; returns once new connections see it.
    pub fn set_system(&self, name: &str, value: &str) {
        // PostgreSQL 15 checks the name against loaded libraries (the server may not preload).
        let mut admin = self.superuser("postgres");
        admin
            .batch_execute("LOAD 'pg_rls_auth'")
            .expect("load the library");
        let set = format!("ALTER SYSTEM SET {name} = {}", quote(value));
        admin
            .batch_execute(&set)
            .unwrap_or_else(|e| panic!("{set}: {}", describe(&e)));
        self.sql("postgres", "SELECT pg_reload_conf()");
        let what = format!("{name} never became {value:?}");
        wait_until(Duration::from_secs(20), &what, || {
            let seen: String = self
                .superuser("postgres")
                .query_one("SELECT current_setting($1)", &[&name])
                .expect("read a setting")
                .get(0);
            seen == value
        });
    }

    /// Writes `contents` to file `name` in the cluster's directory, owned by the server's OS
    /// user with mode `mode`; returns its path.
    pub fn write_server_file(&self, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, contents).expect("write a server file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("chmod a server file");
        give_to_server(&path);
        path
    }

    /// A FIFO only the server's user may open, in the cluster's directory.
    pub fn make_server_fifo(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        let status = Command::new("mkfifo")
            .args(["-m", "600"])
            .arg(&path)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo {}", path.display());
        give_to_server(&path);
        path
    }

    /// Replaces pg_hba.conf and pg_ident.conf and reloads; returns once new connections see
    /// them.
    pub fn set_hba(&self, hba: &str, ident: &str) {
        for (name, contents) in [("pg_hba.conf", hba), ("pg_ident.conf", ident)] {
            let path = Path::new(&self.data_dir()).join(name);
            std::fs::write(&path, contents).expect("write a server configuration file");
        }
        let mut admin = self.superuser("postgres");
        admin
            .batch_execute("SELECT pg_reload_conf()")
            .expect("reload the configuration");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let errors: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL",
                    &[],
                )
                .expect("read pg_hba_file_rules")
                .get(0);
            assert_eq!(errors, 0, "pg_hba.conf has errors: {}", self.log());
            let seen: i64 = admin
                .query_one("SELECT count(*) FROM pg_hba_file_rules", &[])
                .expect("read pg_hba_file_rules")
                .get(0);
            if seen == hba.lines().filter(|l| !l.trim().is_empty()).count() as i64 {
                std::thread::sleep(Duration::from_millis(200));
                return;
            }
            assert!(Instant::now() < deadline, "pg_hba.conf was not reloaded");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The directory holding the server's Unix socket (and its data and log).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills one backend with SIGKILL, as the OOM killer would.
    pub fn kill_backend(&self, pid: i32) {
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {pid}");
    }

    /// Waits until the server accepts connections again (after a crash restart).
    pub fn wait_ready(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = self.try_connect("postgres", "postgres", "") {
                if c.simple_query("SELECT 1").is_ok() {
                    return c;
                }
            }
            assert!(Instant::now() < deadline, "the server did not come back");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- server log (last lines, newest first) ---\n{}",
                tail.join("\n")
            );
        }
        let _ = pg_command("pg_ctl")
            .args(["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A SQL string literal.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The SQLSTATE of a server error, if it is one.
pub fn sqlstate(err: &postgres::Error) -> Option<String> {
    err.code().map(|c| c.code().to_string())
}

/// The SQLSTATE of a result that must be an error; panics when it succeeded.
pub fn err_code<T>(result: Result<T, postgres::Error>) -> String {
    match result {
        Ok(_) => panic!("expected an error, but it succeeded"),
        Err(e) => sqlstate(&e).unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}

/// A server error with its message, for assertion messages.
pub fn describe(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => err.to_string(),
    }
}

/// Polls `done` every 50 ms until it holds; fails the test, saying `what`, after `limit`.
/// Tests wait for a reload or a standby this way, never with a fixed sleep.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A signing key pair made with the core's token kit.
pub struct Key {
    private: String,
    /// The public JWK, as configured in `pg_rls_auth.jwks`.
    pub public: String,
}

impl Key {
    /// A new EdDSA key pair.
    pub fn new() -> Key {
        use pg_rls_auth_core::token_kit::{generate_jwk, public_jwk};
        let private = generate_jwk("EdDSA").expect("generate a key");
        let public = public_jwk(&private).expect("public half").to_string();
        Key {
            private: private.to_string(),
            public,
        }
    }

    /// Signs `claims`, adding `exp` (now + 600 s) unless present.
    pub fn token(&self, claims: Value) -> String {
        let mut claims = claims;
        let obj = claims.as_object_mut().expect("claims are an object");
        obj.entry("exp").or_insert_with(|| json!(now() + 600));
        pg_rls_auth_core::token_kit::sign_jwt(&claims, &self.private, None).expect("sign")
    }

    /// A token for subject `sub`.
    pub fn token_for(&self, sub: &str) -> String {
        self.token(json!({ "sub": sub }))
    }

    /// A token with exactly this `header` and `claims` (no `exp` added), signed with EdDSA.
    pub fn token_with_header(&self, header: Value, claims: Value) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        use ed25519_dalek::Signer;
        let private: Value = serde_json::from_str(&self.private).expect("a JWK");
        let d = URL_SAFE_NO_PAD
            .decode(private["d"].as_str().expect("an EdDSA key"))
            .expect("base64url");
        let key = ed25519_dalek::SigningKey::from_bytes(&d.try_into().expect("32 bytes"));
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes());
        format!("{input}.{signature}")
    }

    /// The public JWK without the named members (a proxy's key often has no `kid` or `alg`).
    pub fn public_without(&self, members: &[&str]) -> String {
        let mut public: Value = serde_json::from_str(&self.public).expect("a JWK");
        let obj = public.as_object_mut().expect("an object");
        for m in members {
            obj.remove(*m);
        }
        public.to_string()
    }
}

impl Default for Key {
    fn default() -> Self {
        Self::new()
    }
}

/// `auth.user_id()` on this connection.
pub fn user_id(client: &mut Client) -> Option<String> {
    client
        .query_one("SELECT auth.user_id()", &[])
        .expect("auth.user_id()")
        .get(0)
}

/// `auth.jwt_session_init(token)`; `local` ends the session with the transaction.
pub fn init(client: &mut Client, token: &str, local: bool) -> Result<(), postgres::Error> {
    client
        .execute("SELECT auth.jwt_session_init($1, $2)", &[&token, &local])
        .map(|_| ())
}

/// A PgBouncer in front of a cluster, on a Unix socket of its own; stopped when dropped.
pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
    child: std::process::Child,
}

impl PgBouncer {
    /// Starts PgBouncer with `pool_mode = transaction`, `pool_size` server connections per
    /// database and user, and `extra` lines in its `[pgbouncer]` section.
    pub fn start(cluster: &Cluster, users: &[&str], pool_size: u32, extra: &[&str]) -> PgBouncer {
        let dir = cluster.dir.join(format!(
            "bouncer{}",
            NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).expect("create PgBouncer's directory");
        let port = cluster.port;
        let users_file = dir.join("users.txt");
        let lines: Vec<String> = users.iter().map(|u| format!("\"{u}\" \"\"")).collect();
        std::fs::write(&users_file, lines.join("\n") + "\n").expect("write the users file");
        let ini = format!(
            "[databases]\n* = host={host} port={port}\n\n[pgbouncer]\n\
             listen_addr =\nunix_socket_dir = {dir}\nlisten_port = {port}\n\
             auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
             default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n\
             max_client_conn = 200\nlogfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n\
             ignore_startup_parameters = options\n{extra}\n",
            host = cluster.dir.display(),
            dir = dir.display(),
            users = users_file.display(),
            extra = extra.join("\n"),
        );
        let ini_path = dir.join("pgbouncer.ini");
        std::fs::write(&ini_path, ini).expect("write pgbouncer.ini");
        // PgBouncer refuses to run as root, as PostgreSQL does.
        let program = "/usr/sbin/pgbouncer";
        let mut command = if is_root() {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("run chown");
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        };
        let child = command
            .arg(&ini_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        let bouncer = PgBouncer { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while bouncer.try_connect(users[0], "postgres").is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start: {}",
                std::fs::read_to_string(bouncer.dir.join("pgbouncer.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        bouncer
    }

    pub fn try_connect(&self, user: &str, db: &str) -> Result<Client, postgres::Error> {
        postgres::Config::new()
            .host_path(&self.dir)
            .port(self.port)
            .user(user)
            .dbname(db)
            .connect_timeout(Duration::from_secs(30))
            .connect(NoTls)
    }

    /// Connects as `user` to `db` through PgBouncer; panics on failure.
    pub fn connect(&self, user: &str, db: &str) -> Client {
        self.try_connect(user, db)
            .unwrap_or_else(|e| panic!("connect through pgbouncer as {user}: {e}"))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
