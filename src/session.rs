//! Per-backend session state. The verified session lives in the internal setting
//! `pg_rls_auth.session`, so PostgreSQL's GUC machinery gives it transaction semantics for free
//! (ROLLBACK restores, SET LOCAL ends at transaction end, RESET ALL / DISCARD ALL clear it,
//! parallel workers receive it). No ordinary role can write it: it is SUSET (a superuser, or a
//! role granted SET on it, could), and set here at superuser level after a token verified.
//!
//! Everything the SQL API reads is cached per generation (see `guc`), so the hot path is two
//! integer comparisons and a copy of a cached value.

use crate::errors::Raise;
use crate::fmgr::JsonbImage;
use crate::guc;
use crate::key_config::{self, Config};
use crate::revocation;
use crate::secret_file;
use pg_rls_auth_core::claims::{parse_uuid, value_as_text};
use pg_rls_auth_core::keys::KeyOrigin;
use pg_rls_auth_core::revocation::{Freshness, TokenIdentity};
use pg_rls_auth_core::session_rules::{ReplayGuard, StoredSession, TokenCache, TokenFingerprint};
use pg_rls_auth_core::{verify_token, Claims};
use pgrx::pg_sys;
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

/// One session's claims and the answers derived from them.
pub struct Session {
    pub claims: Claims,
    pub user_id: Option<String>,
    pub uid: Option<[u8; 16]>,
    /// Neon Auth's organization `"o"`: its `id` when that is a UUID.
    pub organization_id: Option<[u8; 16]>,
    jsonb: OnceCell<JsonbImage>,
    organization_jsonb: OnceCell<Option<JsonbImage>>,
    last_claim: RefCell<Option<(String, Option<String>)>>,
}

/// JSON `null` as jsonb, built once.
pub fn json_null() -> &'static JsonbImage {
    thread_local! {
        static NULL: &'static JsonbImage = Box::leak(Box::new(JsonbImage::from_json("null".to_string())));
    }
    NULL.with(|n| *n)
}

impl Session {
    fn new(claims: Claims, legacy_sub: Option<String>) -> Self {
        let user_id = legacy_sub.or_else(|| claims.subject());
        let uid = user_id.as_deref().and_then(parse_uuid);
        let organization_id = claims
            .organization()
            .and_then(|o| o.get("id"))
            .and_then(serde_json::Value::as_str)
            .and_then(parse_uuid);
        Self {
            claims,
            user_id,
            uid,
            organization_id,
            jsonb: OnceCell::new(),
            organization_jsonb: OnceCell::new(),
            last_claim: RefCell::new(None),
        }
    }

    /// What a revocation can match: the `sub` policies see (`auth.user_id()`, which for
    /// PostgREST's claims may come from `request.jwt.claim.sub`), the token's `jti` and `iat`.
    pub fn token_identity(&self) -> TokenIdentity {
        TokenIdentity {
            sub: self.user_id.clone(),
            ..TokenIdentity::of(&self.claims)
        }
    }

    /// The claims as jsonb, built once and copied out per call.
    pub fn jsonb(&self) -> &JsonbImage {
        self.jsonb
            .get_or_init(|| JsonbImage::from_json(self.claims.to_json()))
    }

    /// The organization `"o"` as jsonb, when it is an object (pg_session_jwt's rule).
    pub fn organization_jsonb(&self) -> Option<&JsonbImage> {
        self.organization_jsonb
            .get_or_init(|| {
                self.claims.organization().map(|o| {
                    JsonbImage::from_json(serde_json::Value::Object(o.clone()).to_string())
                })
            })
            .as_ref()
    }

    /// One claim by dotted path, as text; the last path asked is cached.
    pub fn claim_text(&self, path: &str) -> Option<String> {
        if let Some((p, v)) = &*self.last_claim.borrow() {
            if p == path {
                return v.clone();
            }
        }
        let value = self.claims.get_path(path).and_then(value_as_text);
        *self.last_claim.borrow_mut() = Some((path.to_string(), value.clone()));
        value
    }
}

#[derive(Default)]
struct Backend {
    config: Option<Rc<Config>>,
    verified_generation: u64,
    verified: Option<Rc<Session>>,
    request_claims: guc::ForeignSetting,
    request_claim_sub: guc::ForeignSetting,
    /// The values the fallback session was built from, as bytes.
    fallback_source: Option<(Vec<u8>, Option<Vec<u8>>)>,
    /// `guc::REQUEST_CLAIMS_GENERATION` when the fallback session was last checked.
    fallback_generation: u64,
    fallback: Option<Rc<Session>>,
    tokens: TokenCache<(Claims, KeyOrigin)>,
    replay: ReplayGuard,
    /// Sessions stored under an older epoch were revoked by a failed init.
    epoch: u64,
    /// `pg_session_jwt.jwt` as last acted on (its generation), and the error its token gave,
    /// which every claim read raises until the setting changes.
    token_setting_generation: u64,
    token_setting_error: Option<Raise>,
    /// The session (its and the login's generations) last found not revoked, and as of when.
    revocation_checked: Option<(u64, u64, Freshness)>,
    /// The OAuth login's session and `guc::LOGIN_GENERATION` when it was read.
    login_generation: u64,
    login: Option<Rc<Session>>,
}

thread_local! {
    static BACKEND: RefCell<Backend> = RefCell::new(Backend { epoch: 1, ..Default::default() });
}

/// Wall-clock seconds since the Unix epoch, as token times are counted.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn config(backend: &mut Backend) -> Rc<Config> {
    let generation = guc::CONFIG_GENERATION.load(Ordering::Relaxed);
    match &backend.config {
        Some(c)
            if c.generation == generation
                && (c.managed_version.is_none()
                    || c.managed_version == crate::managed_keys::version()) =>
        {
            c.clone()
        }
        _ => {
            let c = Rc::new(key_config::load(generation));
            backend.config = Some(c.clone());
            backend.tokens.clear();
            c
        }
    }
}

/// Checks the configuration now: the error auth.* calls would raise, if any, or that nothing
/// could verify a token (as pg_session_jwt's auth.init() does without a key).
pub fn check_config() -> Result<(), Raise> {
    guc::check_startup_overrides()?;
    BACKEND.with_borrow_mut(|b| {
        let config = config(b);
        match &config.keys {
            Err(e) => Err(e.clone().into()),
            Ok(_) if !config.mode.has_keys => Err(key_config::no_key().into()),
            Ok(_) => Ok(()),
        }
    })
}

/// Whether auth.jwt() answers JSON `null` without a session, as pg_session_jwt's does, rather
/// than SQL NULL, as Supabase's does: only in pg_session_jwt's configuration.
pub fn jwt_is_json_null_without_session() -> bool {
    BACKEND.with_borrow_mut(|b| config(b).mode.pg_session_jwt)
}

fn stored() -> Option<StoredSession<'static>> {
    guc::session_value().and_then(StoredSession::parse)
}

fn in_parallel_worker() -> bool {
    // SAFETY: a plain read of a PostgreSQL global, on the main thread, which is the only
    // thread that writes it (once, at worker start).
    unsafe { pg_sys::ParallelWorkerNumber >= 0 }
}

fn verified_session(backend: &mut Backend) -> Result<Option<Rc<Session>>, Raise> {
    let generation = guc::SESSION_GENERATION.load(Ordering::Relaxed);
    if backend.verified_generation != generation {
        backend.verified = match stored() {
            // A worker trusts what its leader passed; the leader already applied revocation.
            Some(s) if s.epoch == backend.epoch || in_parallel_worker() => {
                Some(Rc::new(Session::new(
                    Claims::from_trusted_json(s.claims_json).map_err(Raise::from)?,
                    None,
                )))
            }
            _ => None,
        };
        backend.verified_generation = generation;
    }
    Ok(backend.verified.clone())
}

fn utf8<'a>(bytes: Option<&'a [u8]>, name: &str) -> Result<Option<&'a str>, Raise> {
    bytes
        .map(|b| {
            std::str::from_utf8(b).map_err(|_| {
                Raise::new(
                    crate::errors::INVALID_PARAMETER_VALUE,
                    format!("{name} is not valid UTF-8"),
                )
            })
        })
        .transpose()
}

/// PostgREST's claims: `request.jwt.claims`, and the legacy `request.jwt.claim.sub`. Per call
/// this compares a generation (the settings are ours) or the settings' bytes (another library
/// defines them) with those the cached session was built from.
fn fallback_session(backend: &mut Backend) -> Result<Option<Rc<Session>>, Raise> {
    let (claims, legacy_sub) = if guc::REQUEST_CLAIMS_DEFINED.load(Ordering::Relaxed) {
        // Ours: unchanged since the session was built unless the assign hook ran.
        let generation = guc::REQUEST_CLAIMS_GENERATION.load(Ordering::Relaxed);
        if backend.fallback_generation == generation && backend.fallback_source.is_some() {
            return Ok(backend.fallback.clone());
        }
        backend.fallback_generation = generation;
        (
            guc::bytes_value(&guc::REQUEST_JWT_CLAIMS),
            guc::bytes_value(&guc::REQUEST_JWT_CLAIM_SUB),
        )
    } else {
        (
            backend.request_claims.value(c"request.jwt.claims"),
            backend.request_claim_sub.value(c"request.jwt.claim.sub"),
        )
    };
    let unchanged = matches!(&backend.fallback_source,
        Some((c, s)) if c.as_slice() == claims.unwrap_or(b"") && s.as_deref() == legacy_sub);
    if !unchanged {
        let (claims_text, sub_text) = (
            utf8(claims, "request.jwt.claims")?,
            utf8(legacy_sub, "request.jwt.claim.sub")?,
        );
        backend.fallback = match (claims_text, sub_text) {
            (None, None) => None,
            (c, s) => {
                let claims = match c {
                    Some(json) => Claims::from_trusted_json(json).map_err(|e| {
                        Raise::new(
                            crate::errors::INVALID_PARAMETER_VALUE,
                            format!("request.jwt.claims: {}", e.message),
                        )
                    })?,
                    None => Claims::from_map(Default::default()),
                };
                Some(Rc::new(Session::new(claims, s.map(String::from))))
            }
        };
        backend.fallback_source = Some((
            claims.unwrap_or(b"").to_vec(),
            legacy_sub.map(<[u8]>::to_vec),
        ));
    }
    Ok(backend.fallback.clone())
}

/// The claims the connection logged in with (PostgreSQL 18 OAuth), read once per change.
fn login_session(backend: &mut Backend) -> Result<Option<Rc<Session>>, Raise> {
    let generation = guc::LOGIN_GENERATION.load(Ordering::Relaxed);
    if backend.login_generation != generation {
        backend.login = match guc::login_session_value() {
            Some(json) => Some(Rc::new(Session::new(
                Claims::from_trusted_json(json).map_err(Raise::from)?,
                None,
            ))),
            None => None,
        };
        backend.login_generation = generation;
    }
    Ok(backend.login.clone())
}

#[cfg(feature = "pg18")]
/// Makes an OAuth login's verified claims the connection's login session (see `current`).
pub fn start_login(claims_json: &str) {
    guc::set_login_session(claims_json);
    audit("OAuth login verified");
}

/// The session the SQL API answers from: the verified one while a key is configured, else
/// PostgREST's claims (when trusted), else none. A connection that logged in with OAuth
/// answers from its login whenever no other verified session is in force, and never from
/// PostgREST's claims.
pub fn current() -> Result<Option<Rc<Session>>, Raise> {
    guc::check_startup_overrides()?;
    sync_token_setting();
    BACKEND.with_borrow_mut(|b| {
        if let Some(e) = &b.token_setting_error {
            return Err(e.clone());
        }
        let config = config(b);
        let login = login_session(b)?;
        if config.mode.verified || login.is_some() {
            if let Err(e) = &config.keys {
                return Err(e.clone().into());
            }
            Ok(verified_session(b)?.or(login))
        } else if config.mode.reads_request_claims {
            fallback_session(b)
        } else {
            Ok(None)
        }
    })
}

fn audit(message: &str) {
    if guc::AUDIT_LOG.get() {
        pgrx::log!("pg_rls_auth: {message}");
    }
}

/// Verifies `token` and makes its claims the session (transaction-local with `local`). The
/// token becomes `pg_session_jwt.jwt` too, as in pg_session_jwt, so the two never disagree.
pub fn init(token: &str, local: bool) -> Result<(), Raise> {
    guc::check_startup_overrides()?;
    BACKEND.with_borrow_mut(|b| b.token_setting_error = None);
    start(token, local, true)
}

/// Verifies `token` and stores its session, or revokes the session.
fn start(token: &str, local: bool, set_token_setting: bool) -> Result<(), Raise> {
    let verified = match BACKEND.with_borrow_mut(|b| verify_cached(b, token)) {
        // The worker may fetch the key the token names (a rotation): wait for it, then once more.
        Err(e) if e.unknown_key && crate::managed_keys::refresh_for_unknown_kid() => {
            BACKEND.with_borrow_mut(|b| verify_cached(b, token))
        }
        other => other,
    };
    let outcome = verified.and_then(|claims| {
        match revocation::refuses(&TokenIdentity::of(&claims), revocation::freshness())? {
            true => Err(revocation::revoked()),
            false => Ok(claims),
        }
    });
    match outcome {
        Ok(claims) => {
            let epoch = BACKEND.with_borrow(|b| b.epoch);
            audit(&format!(
                "token verified (sub {:?})",
                claims.subject().unwrap_or_default()
            ));
            let fingerprint = TokenFingerprint::of(token);
            guc::set_session(
                &StoredSession::format(epoch, &fingerprint, &claims.to_json()),
                local,
            );
            if set_token_setting {
                guc::set_token_setting(token, local);
            }
            Ok(())
        }
        Err(e) => {
            audit(&format!("token rejected: {}", e.message));
            // A failed init leaves no session, even after this transaction rolls back.
            BACKEND.with_borrow_mut(|b| {
                b.epoch += 1;
                b.verified_generation = 0;
            });
            Err(e)
        }
    }
}

/// Acts on a change of `pg_session_jwt.jwt` (pg_session_jwt's way to hand a session to a
/// background worker: `SET pg_session_jwt.jwt = '<token>'`). The token is verified before any
/// claim is answered: the session becomes its claims, or, when it does not verify, there is
/// none and every claim read raises its error, as a failed init would have, until the setting
/// changes again. Empty ends the session. A session already made from this very token (a
/// rollback brings both back together) is left alone. Only the leader acts: workers inherit.
fn sync_token_setting() {
    let generation = guc::TOKEN_SETTING_GENERATION.load(Ordering::Relaxed);
    let changed = BACKEND.with_borrow_mut(|b| {
        let changed = b.token_setting_generation != generation;
        b.token_setting_generation = generation;
        changed
    });
    // SAFETY: main thread; IsInParallelMode only reads the transaction state and cannot
    // raise. No RefCell borrow is live here.
    if !changed || in_parallel_worker() || unsafe { pg_sys::IsInParallelMode() } {
        return;
    }
    let token = match guc::string_value(&guc::NEON_SESSION_JWT, "pg_session_jwt.jwt") {
        Ok(token) => token,
        Err(e) => {
            BACKEND.with_borrow_mut(|b| b.token_setting_error = Some(e.into()));
            return;
        }
    };
    BACKEND.with_borrow_mut(|b| b.token_setting_error = None);
    let Some(token) = token else {
        if stored().is_some() {
            guc::set_session("", false);
        }
        return;
    };
    if stored().is_some_and(|s| s.fingerprint == TokenFingerprint::of(token).as_str()) {
        return;
    }
    if let Err(e) = start(token, false, false) {
        BACKEND.with_borrow_mut(|b| b.token_setting_error = Some(e));
    }
}

fn verify_cached(b: &mut Backend, token: &str) -> Result<Claims, Raise> {
    let mut config = config(b);
    // A replaced secret file takes effect at the next verification, without a reload.
    if config
        .secret_file
        .as_ref()
        .is_some_and(secret_file::Stamp::changed)
    {
        b.config = None;
        config = self::config(b);
    }
    let keys = config.keys.as_ref().map_err(|e| Raise::from(e.clone()))?;
    if !config.mode.has_keys {
        return Err(key_config::no_key().into());
    }
    if keys.is_empty() && config.managed_version.is_some() {
        return Err(crate::managed_keys::nothing_fetched_yet().into());
    }
    let now = now_secs();
    let (claims, origin) = match b.tokens.get(token) {
        Some((claims, origin)) => {
            claims.check_times(&config.policy.for_origin(*origin), now)?;
            (claims.clone(), *origin)
        }
        None => {
            let verified = verify_token(token, keys, &config.policy, now)?;
            b.tokens
                .insert(token, (verified.claims.clone(), verified.key_origin));
            (verified.claims, verified.key_origin)
        }
    };
    if origin == KeyOrigin::TrustedProxy {
        b.replay
            .admit(config.mode.replay_rule(), token, claims.jti_integer())?;
    }
    Ok(claims)
}

/// Ends the session (transactionally, like SET), and the token setting with it.
pub fn end() {
    guc::set_session("", false);
    guc::set_token_setting("", false);
}

/// Before a statement starts, runs or launches parallel workers: acts on a changed
/// `pg_session_jwt.jwt`, ends a session whose token was revoked (at executor start only: see
/// `hooks`), and clears a session revoked by a failed init or a revocation from the setting,
/// so parallel workers never receive it.
pub fn before_statement(check_revocation: bool) -> Result<(), Raise> {
    // SAFETY: main thread; IsInParallelMode only reads the transaction state and cannot
    // raise.
    let parallel = unsafe { pg_sys::IsInParallelMode() };
    // Our own statements, run as the owner of an internal table, leave the session alone.
    if in_parallel_worker() || parallel || crate::internal_tables::acting_as_owner() {
        return Ok(());
    }
    sync_token_setting();
    if check_revocation {
        end_if_revoked()?;
    }
    let stale =
        BACKEND.with_borrow(|b| b.epoch > 1 && stored().is_some_and(|s| s.epoch != b.epoch));
    if stale {
        guc::set_session("", false);
    }
    Ok(())
}

/// Ends the verified session when a revocation now refuses its token. Checked once per
/// session and revocation epoch (or statement, where there is no epoch: see `revocation`).
fn end_if_revoked() -> Result<(), Raise> {
    let generation = guc::SESSION_GENERATION.load(Ordering::Relaxed);
    let login_generation = guc::LOGIN_GENERATION.load(Ordering::Relaxed);
    // A stored session that does not parse has nothing to revoke: its readers raise the error.
    let (session, is_login) = BACKEND.with_borrow_mut(|b| {
        let login = login_session(b).ok().flatten();
        let verified = if config(b).mode.verified || login.is_some() {
            verified_session(b).ok().flatten()
        } else {
            None
        };
        match verified {
            Some(s) => (Some(s), false),
            None => (login.clone(), login.is_some()),
        }
    });
    let Some(session) = session else {
        return Ok(());
    };
    let freshness = revocation::freshness();
    let key = (generation, login_generation, freshness);
    if BACKEND.with_borrow(|b| b.revocation_checked == Some(key)) {
        return Ok(());
    }
    // The login is the connection's identity: it cannot end without the connection, nor go on
    // unchecked.
    let revoked = match revocation::refuses(&session.token_identity(), freshness) {
        Err(e) if is_login => return Err(e.fatal()),
        other => other?,
    };
    if revoked && is_login {
        return Err(revocation::revoked().fatal());
    }
    BACKEND.with_borrow_mut(|b| {
        b.revocation_checked = Some(key);
        if revoked {
            // As after a failed init: the stored session is stale from now on, even if a
            // rollback brings the setting back.
            b.epoch += 1;
            b.verified_generation = 0;
        }
    });
    if revoked {
        audit(&format!(
            "session ended: its token was revoked (sub {:?})",
            session.user_id.as_deref().unwrap_or_default()
        ));
    }
    Ok(())
}
