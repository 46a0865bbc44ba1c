//! The generic cell rate algorithm (GCRA), as in redis-cell: a limit of `max_writes` per
//! `window` admits a burst of `max_writes`, then one write every `window / max_writes`; a key
//! idle for a whole window is full again. The state is one timestamp per key, the theoretical
//! arrival time (TAT).
//!
//! Arithmetic is exact: the TAT is kept in units of 1/max_writes nanoseconds, so the emission
//! interval `window / max_writes` is the integer `window_ns`. `scale` records which
//! `max_writes` those units belong to; a key checked with another limit is converted, rounding
//! towards fewer writes.

use crate::error::{AuthError, Result};

pub const NANOS_PER_SEC: i128 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    max_writes: i128,
    window_ns: i128,
}

impl Limit {
    pub fn new(max_writes: i32, window_seconds: i32) -> Result<Self> {
        if max_writes <= 0 {
            return Err(AuthError::invalid_argument(format!(
                "max_writes must be positive, not {max_writes}"
            )));
        }
        if window_seconds <= 0 {
            return Err(AuthError::invalid_argument(format!(
                "window_seconds must be positive, not {window_seconds}"
            )));
        }
        Ok(Self {
            max_writes: i128::from(max_writes),
            window_ns: i128::from(window_seconds) * NANOS_PER_SEC,
        })
    }

    pub fn max_writes(&self) -> u32 {
        self.max_writes as u32
    }

    pub fn window_seconds(&self) -> i64 {
        (self.window_ns / NANOS_PER_SEC) as i64
    }
}

/// The per-key state. `State::default()` is a key never seen (or fully replenished).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    /// Theoretical arrival time in units of 1/`scale` ns since the Unix epoch.
    pub tat: i128,
    /// The `max_writes` whose units `tat` is in; 0 for a fresh key.
    pub scale: u32,
}

impl State {
    /// The TAT in nanoseconds, rounded up (later is more restrictive).
    pub fn tat_ns(&self) -> i128 {
        if self.scale == 0 {
            i128::MIN
        } else {
            div_ceil(self.tat, i128::from(self.scale))
        }
    }

    /// True when forgetting this state grants nothing: the key is back to a full burst.
    pub fn is_replenished(&self, now_ns: i128) -> bool {
        self.tat_ns() <= now_ns
    }

    /// The state of a key whose TAT is known only to be no later than `tat_ns` (all the memory
    /// store's overflow cells keep of an evicted key): never more generous than the key's own,
    /// and capped where `limit` counts as fully spent at `now_ns`, so its steady rate still
    /// flows.
    pub fn no_earlier_than(tat_ns: i128, limit: Limit, now_ns: i128) -> State {
        if tat_ns <= now_ns {
            return State::default();
        }
        let tat_ns = tat_ns.min(now_ns + limit.window_ns);
        State {
            tat: tat_ns * limit.max_writes,
            scale: limit.max_writes as u32,
        }
    }

    fn tat_in(&self, max_writes: i128) -> i128 {
        match self.scale {
            0 => i128::MIN,
            s if i128::from(s) == max_writes => self.tat,
            s => div_ceil(self.tat.saturating_mul(max_writes), i128::from(s)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Writes still admitted right now (after this one, when it consumed).
    pub remaining: u32,
    /// Nanoseconds until the next write is admitted; 0 when one is admitted now.
    pub retry_after_ns: i128,
    /// Nanoseconds until the key is back to a full burst.
    pub reset_after_ns: i128,
}

/// ⌊a / b⌋ for b > 0. Realistic limits keep both within 64 bits, where division is several
/// times cheaper than the 128-bit kind.
fn div_floor(a: i128, b: i128) -> i128 {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => i128::from(a / b),
        _ => a.div_euclid(b),
    }
}

/// ⌈a / b⌉ for b > 0.
fn div_ceil(a: i128, b: i128) -> i128 {
    let q = div_floor(a, b);
    if q * b == a {
        q
    } else {
        q + 1
    }
}

/// Decides one write at `now_ns`. With `consume`, an admitted write updates `state`; a
/// rejected one never does. A clock that goes backwards only makes the key stricter.
pub fn decide(state: &mut State, limit: Limit, now_ns: i128, consume: bool) -> Decision {
    let Limit {
        max_writes,
        window_ns,
    } = limit;
    let burst = window_ns * max_writes;
    let now = now_ns * max_writes;
    let tat = state.tat_in(max_writes).max(now);
    // Writes admitted at `now`: how much of the burst the TAT has not used up.
    let available = div_floor(now + burst - tat, window_ns).clamp(0, max_writes);
    if available == 0 {
        let allow_at = tat + window_ns - burst;
        return Decision {
            allowed: false,
            remaining: 0,
            retry_after_ns: div_ceil(allow_at - now, max_writes),
            reset_after_ns: div_ceil(tat - now, max_writes),
        };
    }
    let (remaining, tat) = if consume {
        let new_tat = tat + window_ns;
        *state = State {
            tat: new_tat,
            scale: max_writes as u32,
        };
        (available - 1, new_tat)
    } else {
        (available, tat)
    };
    let retry_after_ns = if remaining > 0 {
        0
    } else {
        div_ceil(tat + window_ns - burst - now, max_writes)
    };
    Decision {
        allowed: true,
        remaining: remaining as u32,
        retry_after_ns,
        reset_after_ns: div_ceil(tat - now, max_writes),
    }
}

/// One consuming `decide` as a single SQL upsert can perform it (the table store's first check
/// of a key in a transaction), for a stored state already in this limit's units (`scale` equal
/// to `max_writes`): a write is admitted iff the stored TAT is at most `threshold`, and then the
/// new TAT is `max(stored, now) + window`. A key with no row gets `fresh_tat`. States in other
/// units are left to `decide`. `matches_decide` below proves both rules equal `decide`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpsertStep {
    /// The TAT of a key never seen after one admitted write.
    pub fresh_tat: i128,
    /// `now` in the limit's units.
    pub now: i128,
    /// The emission interval in the limit's units.
    pub window: i128,
    /// The latest stored TAT that still admits a write.
    pub threshold: i128,
    /// The units (`max_writes`) the rule applies to.
    pub scale: u32,
}

impl UpsertStep {
    pub fn new(limit: Limit, now_ns: i128) -> Self {
        let now = now_ns * limit.max_writes;
        let burst = limit.window_ns * limit.max_writes;
        Self {
            fresh_tat: now + limit.window_ns,
            now,
            window: limit.window_ns,
            // available > 0  <=>  now + burst - max(tat, now) >= window  <=>  tat <= this
            // (now + window <= now + burst always holds, as max_writes >= 1).
            threshold: now + burst - limit.window_ns,
            scale: limit.max_writes as u32,
        }
    }

    /// The new TAT of a stored TAT in this step's units, or None when the write is refused:
    /// exactly what the SQL statement computes.
    pub fn apply(&self, stored_tat: i128) -> Option<i128> {
        (stored_tat <= self.threshold).then(|| stored_tat.max(self.now) + self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: i128 = NANOS_PER_SEC;

    fn run(limit: Limit, times: &[i128]) -> Vec<bool> {
        let mut s = State::default();
        times
            .iter()
            .map(|t| decide(&mut s, limit, *t, true).allowed)
            .collect()
    }

    #[test]
    fn fresh_key_gets_the_burst_then_one_per_interval() {
        let l = Limit::new(3, 3).unwrap();
        let t0 = 1_700_000_000 * SEC;
        assert_eq!(run(l, &[t0, t0, t0, t0]), [true, true, true, false]);
        let mut s = State::default();
        for _ in 0..3 {
            decide(&mut s, l, t0, true);
        }
        let d = decide(&mut s, l, t0, true);
        assert_eq!(
            (d.allowed, d.retry_after_ns, d.reset_after_ns),
            (false, SEC, 3 * SEC)
        );
        assert!(!decide(&mut s, l, t0 + SEC - 1, true).allowed);
        assert!(decide(&mut s, l, t0 + SEC, true).allowed);
        assert!(!decide(&mut s, l, t0 + SEC, true).allowed);
    }

    #[test]
    fn idle_for_a_window_is_full_again() {
        let l = Limit::new(100, 3600).unwrap();
        let mut s = State::default();
        for _ in 0..100 {
            assert!(decide(&mut s, l, 0, true).allowed);
        }
        assert!(!decide(&mut s, l, 0, true).allowed);
        assert!(s.is_replenished(3600 * SEC));
        let d = decide(&mut s, l, 3600 * SEC, false);
        assert_eq!(d.remaining, 100);
    }

    #[test]
    fn no_boundary_burst() {
        // A fixed hourly window would admit 2x the limit around the hour; GCRA admits the limit:
        // the budget spent just before the hour is not refilled just after it.
        let l = Limit::new(10, 3600).unwrap();
        let mut s = State::default();
        let before = 3599 * SEC;
        let after = 3601 * SEC;
        let admitted = (0..20)
            .filter(|_| decide(&mut s, l, before, true).allowed)
            .count()
            + (0..20)
                .filter(|_| decide(&mut s, l, after, true).allowed)
                .count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn status_does_not_consume() {
        let l = Limit::new(2, 10).unwrap();
        let mut s = State::default();
        for _ in 0..5 {
            let d = decide(&mut s, l, 0, false);
            assert_eq!((d.allowed, d.remaining), (true, 2));
        }
        assert_eq!(s, State::default());
    }

    #[test]
    fn bad_arguments() {
        assert!(Limit::new(0, 1).is_err());
        assert!(Limit::new(1, 0).is_err());
        assert!(Limit::new(-5, 10).is_err());
        assert_eq!(
            Limit::new(1, -1).unwrap_err().kind,
            crate::ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn extreme_limits() {
        let ten_years = 10 * 365 * 86_400;
        let now = 4_000_000_000 * SEC; // year 2096
        for (max, window) in [(1, 1), (1, ten_years), (i32::MAX, 1), (i32::MAX, ten_years)] {
            let l = Limit::new(max, window).unwrap();
            let mut s = State::default();
            let d = decide(&mut s, l, now, true);
            assert!(d.allowed);
            assert_eq!(d.remaining, max as u32 - 1);
            let mut s2 = s;
            decide(&mut s2, l, now - 1_000 * SEC, true);
            decide(&mut s2, l, i128::from(i64::MAX), false);
        }
        // max 1: the second write waits the whole window.
        let l = Limit::new(1, ten_years).unwrap();
        let mut s = State::default();
        decide(&mut s, l, now, true);
        let d = decide(&mut s, l, now, true);
        assert_eq!(d.retry_after_ns, i128::from(ten_years) * SEC);
    }

    #[test]
    fn changing_the_limit_rounds_towards_fewer_writes() {
        let mut s = State::default();
        let a = Limit::new(3, 1).unwrap();
        decide(&mut s, a, 0, true);
        let b = Limit::new(7, 1).unwrap();
        let d = decide(&mut s, b, 0, false);
        // One third of a second used: of 7 per second, 7 - ceil(7/3) = 4 remain.
        assert_eq!(d.remaining, 4);
    }

    /// The plain model: a token bucket in exact integer units of 1/window_ns token.
    struct Bucket {
        tokens: i128,
        last: i128,
        started: bool,
    }

    impl Bucket {
        fn take(&mut self, max: i128, window_ns: i128, now: i128) -> bool {
            let cap = max * window_ns;
            if !self.started {
                (self.tokens, self.last, self.started) = (cap, now, true);
            }
            if now > self.last {
                self.tokens = (self.tokens + (now - self.last) * max).min(cap);
                self.last = now;
            }
            if self.tokens >= window_ns {
                self.tokens -= window_ns;
                true
            } else {
                false
            }
        }
    }

    proptest! {
        #[test]
        fn matches_the_token_bucket_model(
            max in 1i32..50,
            window in 1i32..120,
            steps in proptest::collection::vec((0i128..3_000_000_000, any::<bool>()), 1..200),
        ) {
            let l = Limit::new(max, window).unwrap();
            let mut s = State::default();
            let mut model = Bucket { tokens: 0, last: 0, started: false };
            let mut now = 1_700_000_000 * SEC;
            for (dt, consume) in steps {
                now += dt;
                if consume {
                    let d = decide(&mut s, l, now, true);
                    prop_assert_eq!(d.allowed, model.take(i128::from(max), i128::from(window) * SEC, now));
                } else {
                    let before = s;
                    decide(&mut s, l, now, false);
                    prop_assert_eq!(before, s);
                }
            }
        }

        #[test]
        fn the_upsert_step_matches_decide(
            max in 1i32..i32::MAX,
            window in 1i32..(10 * 365 * 86_400),
            now_ns in 0i128..(4_000_000_000 * SEC),
            offset in -(20 * 365 * 86_400 * SEC)..(20 * 365 * 86_400 * SEC),
        ) {
            let l = Limit::new(max, window).unwrap();
            let step = UpsertStep::new(l, now_ns);
            // A key never seen.
            let mut fresh = State::default();
            prop_assert!(decide(&mut fresh, l, now_ns, true).allowed);
            prop_assert_eq!(fresh, State { tat: step.fresh_tat, scale: step.scale });
            // A stored state in the limit's units, anywhere around now.
            let stored = State { tat: (now_ns + offset) * i128::from(max) + offset % i128::from(max), scale: max as u32 };
            let mut by_decide = stored;
            let d = decide(&mut by_decide, l, now_ns, true);
            match step.apply(stored.tat) {
                Some(tat) => {
                    prop_assert!(d.allowed);
                    prop_assert_eq!(by_decide, State { tat, scale: step.scale });
                }
                None => {
                    prop_assert!(!d.allowed);
                    prop_assert_eq!(by_decide, stored);
                }
            }
        }

        #[test]
        fn a_clock_going_backwards_never_grants_extra(
            max in 1i32..i32::MAX,
            window in 1i32..(10 * 365 * 86_400),
            steps in proptest::collection::vec(-5_000_000_000i128..5_000_000_000, 1..300),
        ) {
            let l = Limit::new(max, window).unwrap();
            let mut s = State::default();
            let start = 1_700_000_000 * SEC;
            let (mut now, mut earliest, mut latest, mut admitted) = (start, i128::MAX, start, 0i128);
            for dt in steps {
                now += dt;
                earliest = earliest.min(now);
                latest = latest.max(now);
                if decide(&mut s, l, now, true).allowed {
                    admitted += 1;
                }
                // Never more than the burst plus what the time actually elapsed refills.
                let bound = i128::from(max) + (latest - earliest) * i128::from(max) / (i128::from(window) * SEC);
                prop_assert!(admitted <= bound, "admitted {} > bound {}", admitted, bound);
            }
        }
    }
}
