//! Rules of a backend's session that need no server: the replay rule for tokens a trusted
//! proxy's key verified, and the stored form of a session (what parallel workers inherit).

use crate::error::{AuthError, Result};
use sha2::{Digest, Sha256};

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
