//! Rules of a backend's session that need no server: where claims come from (the mode the
//! settings select), the cache of verified tokens, the replay rule for tokens a trusted proxy's
//! key verified, and the stored form of a session (what parallel workers inherit).

use crate::error::{AuthError, Result};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;

/// What the settings say about keys and claims, read from their presence before anything is
/// parsed: a key that is present but unreadable must fail closed, never count as "no key".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeySources {
    /// `pg_rls_auth.jwks`, `.jwt_secret` or `.jwt_secret_file` is set.
    pub configured: bool,
    /// `pg_rls_auth.trusted_proxy`.
    pub trusted_proxy: bool,
    /// A key arrived in the startup packet (`pg_rls_auth.session_jwk`, `pg_session_jwt.jwk`).
    pub proxy_key_sent: bool,
    /// `pg_rls_auth.trust_request_claims`.
    pub trust_request_claims: bool,
    /// `trust_request_claims` was set somewhere rather than left at its built-in default.
    pub trust_request_claims_explicit: bool,
}

/// Where a backend's claims come from, decided once per configuration change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionMode {
    /// Claims come only from verified tokens; `request.jwt.claims` is never read.
    pub verified: bool,
    /// Some key could verify a token (a configured one, or one the proxy sent).
    pub has_keys: bool,
    /// pg_session_jwt's configuration: its rules for the proxy's tokens and its conventions.
    pub pg_session_jwt: bool,
    /// Claims come from PostgREST's `request.jwt.claims` (the fallback).
    pub reads_request_claims: bool,
}

impl KeySources {
    pub fn mode(self) -> SessionMode {
        // pg_session_jwt's behaviour is asked for explicitly, never reached by defaults.
        let pg_session_jwt =
            self.trusted_proxy && self.trust_request_claims && self.trust_request_claims_explicit;
        let proxy_key = self.trusted_proxy && self.proxy_key_sent;
        // Trusted-proxy mode counts as configured before the proxy sends a key, unless
        // pg_session_jwt's behaviour (request.jwt.claims without a proxy key) was asked for.
        let verified = self.configured || (self.trusted_proxy && (proxy_key || !pg_session_jwt));
        SessionMode {
            verified,
            has_keys: self.configured || proxy_key,
            pg_session_jwt,
            reads_request_claims: !verified && self.trust_request_claims,
        }
    }
}

impl SessionMode {
    /// Replay protection for tokens a trusted proxy's key verified.
    pub fn replay_rule(&self) -> ReplayRule {
        if self.pg_session_jwt {
            ReplayRule::PgSessionJwt
        } else {
            ReplayRule::Strict
        }
    }
}

/// Tokens whose signature already verified in this backend, most recent first, with what
/// verifying them gave: re-init with one of them skips the signature (never the time checks).
#[derive(Debug, Clone)]
pub struct TokenCache<T> {
    entries: VecDeque<(String, T)>,
}

impl<T> Default for TokenCache<T> {
    fn default() -> Self {
        Self {
            entries: VecDeque::with_capacity(Self::CAPACITY),
        }
    }
}

impl<T> TokenCache<T> {
    pub const CAPACITY: usize = 16;

    pub fn get(&self, token: &str) -> Option<&T> {
        self.entries
            .iter()
            .find(|(t, _)| t == token)
            .map(|(_, v)| v)
    }

    /// Remembers a token that just verified, forgetting the oldest beyond CAPACITY.
    pub fn insert(&mut self, token: &str, value: T) {
        if self.entries.len() == Self::CAPACITY {
            self.entries.pop_back();
        }
        self.entries.push_front((token.to_string(), value));
    }

    /// Forgets every token (the keys or checks changed).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// How tokens verified by a trusted proxy's key are protected against replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRule {
    /// pg_rls_auth's own: an integer `jti` strictly greater than the last one accepted in this
    /// backend, the very same token included.
    Strict,
    /// pg_session_jwt's: the same, except that the last accepted token may be presented again
    /// (re-init with the current token is idempotent) and the count starts at 0, so the first
    /// `jti` must be at least 1.
    PgSessionJwt,
}

/// The last proxy-verified token this backend accepted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayGuard {
    last: Option<(i64, TokenFingerprint)>,
}

impl ReplayGuard {
    /// Admits `token` with claim `jti` under `rule`, remembering it; refuses a replay.
    pub fn admit(&mut self, rule: ReplayRule, token: &str, jti: Option<i64>) -> Result<()> {
        let fingerprint = TokenFingerprint::of(token);
        if rule == ReplayRule::PgSessionJwt
            && self.last.as_ref().is_some_and(|(_, f)| *f == fingerprint)
        {
            return Ok(());
        }
        let jti = jti.ok_or_else(|| {
            AuthError::invalid_token("tokens verified by the proxy's key need an integer jti claim")
        })?;
        let floor = match (rule, &self.last) {
            (_, Some((last, _))) => Some(*last),
            (ReplayRule::PgSessionJwt, None) => Some(0),
            (ReplayRule::Strict, None) => None,
        };
        if floor.is_some_and(|floor| jti <= floor) {
            return Err(AuthError::invalid_token(
                "the token's jti is not greater than the previous one's (replayed token)",
            ));
        }
        self.last = Some((jti, fingerprint));
        Ok(())
    }
}

/// A token's identity without the token: the first 16 bytes of its SHA-256, as hex. Sessions
/// record which token they came from, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenFingerprint(String);

impl TokenFingerprint {
    pub fn of(token: &str) -> Self {
        let digest = Sha256::digest(token.as_bytes());
        Self(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A session as stored in the setting `pg_rls_auth.session`: `<epoch>:<fingerprint>:<claims>`.
/// The epoch lets the leader revoke a session that a rollback brought back; the fingerprint
/// names the token it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession<'a> {
    pub epoch: u64,
    pub fingerprint: &'a str,
    pub claims_json: &'a str,
}

impl<'a> StoredSession<'a> {
    pub fn format(epoch: u64, fingerprint: &TokenFingerprint, claims_json: &str) -> String {
        format!("{epoch}:{}:{claims_json}", fingerprint.as_str())
    }

    /// Parses a stored session; None for anything else (the empty value, a malformed one).
    pub fn parse(value: &'a str) -> Option<Self> {
        let (epoch, rest) = value.split_once(':')?;
        let (fingerprint, claims_json) = rest.split_once(':')?;
        Some(Self {
            epoch: epoch.parse().ok()?,
            fingerprint,
            claims_json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_key_sources() -> impl Iterator<Item = KeySources> {
        (0..32u8).map(|b| KeySources {
            configured: b & 1 != 0,
            trusted_proxy: b & 2 != 0,
            proxy_key_sent: b & 4 != 0,
            trust_request_claims: b & 8 != 0,
            trust_request_claims_explicit: b & 16 != 0,
        })
    }

    #[test]
    fn configured_keys_always_verify_and_request_claims_are_never_read_then() {
        for k in all_key_sources() {
            let m = k.mode();
            if k.configured {
                assert!(m.verified && m.has_keys && !m.reads_request_claims, "{k:?}");
            }
            assert!(!(m.verified && m.reads_request_claims), "{k:?}");
            if m.reads_request_claims {
                assert!(k.trust_request_claims, "{k:?}");
            }
        }
    }

    #[test]
    fn trusted_proxy_mode_reads_request_claims_only_when_pg_session_jwt_behaviour_is_explicit() {
        for k in all_key_sources().filter(|k| k.trusted_proxy && !k.configured) {
            let m = k.mode();
            let explicit = k.trust_request_claims && k.trust_request_claims_explicit;
            assert_eq!(m.pg_session_jwt, explicit, "{k:?}");
            // No key sent: a session only from request.jwt.claims, and only when asked for.
            assert_eq!(
                m.reads_request_claims,
                explicit && !k.proxy_key_sent,
                "{k:?}"
            );
            assert_eq!(m.has_keys, k.proxy_key_sent, "{k:?}");
        }
    }

    #[test]
    fn without_keys_or_proxy_the_fallback_follows_its_setting() {
        for k in all_key_sources().filter(|k| !k.trusted_proxy && !k.configured) {
            let m = k.mode();
            // A key sent without trusted-proxy mode is ignored.
            assert!(!m.verified && !m.has_keys && !m.pg_session_jwt, "{k:?}");
            assert_eq!(m.reads_request_claims, k.trust_request_claims, "{k:?}");
        }
    }

    #[test]
    fn the_token_cache_keeps_the_sixteen_most_recent() {
        let mut c = TokenCache::default();
        for i in 0..20 {
            c.insert(&format!("t{i}"), i);
        }
        assert_eq!(c.len(), TokenCache::<i32>::CAPACITY);
        assert_eq!(c.get("t3"), None);
        assert_eq!(c.get("t4"), Some(&4));
        assert_eq!(c.get("t19"), Some(&19));
        c.clear();
        assert!(c.is_empty() && c.get("t19").is_none());
    }

    #[test]
    fn strict_rule_refuses_the_same_token_and_lower_jtis() {
        let mut g = ReplayGuard::default();
        g.admit(ReplayRule::Strict, "a", Some(0)).unwrap();
        assert!(g.admit(ReplayRule::Strict, "a", Some(0)).is_err());
        assert!(g.admit(ReplayRule::Strict, "b", Some(0)).is_err());
        g.admit(ReplayRule::Strict, "c", Some(5)).unwrap();
        assert!(g.admit(ReplayRule::Strict, "d", Some(4)).is_err());
        assert!(g.admit(ReplayRule::Strict, "e", None).is_err());
    }

    #[test]
    fn pg_session_jwt_rule_starts_at_zero_and_accepts_the_current_token_again() {
        let mut g = ReplayGuard::default();
        assert!(g.admit(ReplayRule::PgSessionJwt, "a", Some(0)).is_err());
        assert!(g.admit(ReplayRule::PgSessionJwt, "a", Some(-3)).is_err());
        g.admit(ReplayRule::PgSessionJwt, "a", Some(1)).unwrap();
        g.admit(ReplayRule::PgSessionJwt, "a", Some(1)).unwrap();
        g.admit(ReplayRule::PgSessionJwt, "b", Some(2)).unwrap();
        // A, B, then A again: A is no longer the current token.
        assert!(g.admit(ReplayRule::PgSessionJwt, "a", Some(1)).is_err());
        assert!(g.admit(ReplayRule::PgSessionJwt, "c", None).is_err());
    }

    #[test]
    fn stored_sessions_round_trip_and_claims_may_hold_colons() {
        let f = TokenFingerprint::of("t");
        let text = StoredSession::format(7, &f, r#"{"a":"b:c"}"#);
        let s = StoredSession::parse(&text).unwrap();
        assert_eq!(
            (s.epoch, s.fingerprint, s.claims_json),
            (7, f.as_str(), r#"{"a":"b:c"}"#)
        );
        assert_eq!(StoredSession::parse(""), None);
        assert_eq!(StoredSession::parse("x:y:{}"), None);
    }

    proptest! {
        /// The cache answers exactly for the last CAPACITY distinct insertions, with the value
        /// inserted last for each.
        #[test]
        fn token_cache_holds_the_most_recent(tokens in proptest::collection::vec(0u8..24, 0..80)) {
            let mut c = TokenCache::default();
            for (i, t) in tokens.iter().enumerate() {
                if c.get(&t.to_string()).is_none() {
                    c.insert(&t.to_string(), i);
                }
            }
            prop_assert!(c.len() <= TokenCache::<usize>::CAPACITY);
            // The model: a bounded most-recent-first list; a token is re-inserted only once
            // evicted (the shell inserts only after a cache miss).
            let mut model: VecDeque<(u8, usize)> = VecDeque::new();
            for (i, t) in tokens.iter().enumerate() {
                if !model.iter().any(|(m, _)| m == t) {
                    if model.len() == TokenCache::<usize>::CAPACITY {
                        model.pop_back();
                    }
                    model.push_front((*t, i));
                }
            }
            for t in 0u8..24 {
                let expected = model.iter().find(|(m, _)| *m == t).map(|(_, i)| i);
                prop_assert_eq!(c.get(&t.to_string()), expected);
            }
        }

        /// Under either rule, every accepted token after the first has a jti greater than
        /// every earlier accepted one, unless it is the very token accepted last.
        #[test]
        fn accepted_jtis_increase(ops in proptest::collection::vec((0u8..4, proptest::option::of(-2i64..8), any::<bool>()), 1..60)) {
            for rule in [ReplayRule::Strict, ReplayRule::PgSessionJwt] {
                let mut g = ReplayGuard::default();
                let mut last: Option<(i64, String)> = None;
                for (t, jti, _) in &ops {
                    let token = format!("t{t}-{jti:?}");
                    if g.admit(rule, &token, *jti).is_ok() {
                        if let Some((l, lt)) = &last {
                            prop_assert!(jti.is_some_and(|j| j > *l) || (rule == ReplayRule::PgSessionJwt && *lt == token));
                        }
                        if last.as_ref().is_none_or(|(_, lt)| *lt != token) {
                            last = Some((jti.unwrap(), token));
                        }
                    }
                }
            }
        }
    }
}
