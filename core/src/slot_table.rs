//! The memory store's table: a fixed array of slots with linear probing, one per partition of
//! shared memory. It never grows. When it is full, a new key evicts one found among a bounded
//! sample of slots: a key whose state grants nothing (fully replenished) if there is one, else
//! the one least recently checked.
//!
//! Eviction never hands budget back: an evicted key's TAT is folded into two overflow cells
//! (the latest TAT of every key evicted into them), and a key not in the table starts from the
//! earlier of its two cells, never from a fresh burst. A flood of new keys can therefore make
//! other keys stricter (they lose their burst, never their steady rate) but never laxer, and
//! the cells empty themselves as time passes their TATs.
//!
//! The partition, the two cells and where a new key looks for a victim depend on the key
//! alone, not the bucket: the key is the principal (the session's `sub` under
//! `rate_limit_keys = session`), so one principal's flood of buckets, however long their
//! windows, fills only its own cells and evicts within one sample of one partition. Other
//! principals keep their burst and their steady rate.
//!
//! Keys are identified by SipHash under a per-cluster random secret (64 bits of (bucket, key)
//! and 64 of the key alone), so no client can make two keys collide or aim at one partition
//! or cell.

use crate::gcra::{decide, Decision, Limit, State};
use siphasher::sip128::{Hasher128, SipHasher24};
use std::hash::Hasher;

/// A key's identity under the cluster secret: SipHash-2-4 of (bucket, key), which picks its
/// slot, and of the key alone (its principal), which picks its partition and overflow cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct KeyId(pub [u64; 2]);

impl KeyId {
    pub fn new(secret: &[u8; 16], bucket: &str, key: &str) -> Self {
        let mut h = SipHasher24::new_with_key(secret);
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        h.write_u64(bucket.len() as u64);
        h.write(bucket.as_bytes());
        h.write(key.as_bytes());
        let mut principal = SipHasher24::new_with_key(secret);
        // No bucket is u64::MAX bytes long: this input is never one of the above.
        principal.write_u64(u64::MAX);
        principal.write(key.as_bytes());
        Self([h.finish128().h1, principal.finish128().h1])
    }

    /// Which of `n` partitions holds this key: its principal's.
    pub fn partition(&self, n: usize) -> usize {
        (self.0[1] % n as u64) as usize
    }

    fn home(&self, len: usize) -> usize {
        (self.0[0] % len as u64) as usize
    }

    /// The two overflow cells of this key's principal, from hash bits the partition does not
    /// use.
    fn cells(&self, len: usize) -> [usize; 2] {
        [
            (self.0[1].rotate_right(22) % len as u64) as usize,
            (self.0[1].rotate_right(43) % len as u64) as usize,
        ]
    }
}

/// One key's state: 40 bytes in shared memory.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct Slot {
    id: KeyId,
    tat_hi: i64,
    tat_lo: u64,
    /// `State::scale`; 0 marks an empty slot (a stored key has always consumed once).
    scale: u32,
    /// When the key was last checked, in seconds (wrapping): the eviction order.
    touched: u32,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.scale == 0
    }

    fn state(&self) -> State {
        State {
            tat: (i128::from(self.tat_hi) << 64) | i128::from(self.tat_lo),
            scale: self.scale,
        }
    }

    fn set_state(&mut self, s: State) {
        self.tat_hi = (s.tat >> 64) as i64;
        self.tat_lo = s.tat as u64;
        self.scale = s.scale;
    }
}

/// How many slots a new key looks at for a victim when the table is full: bounds the work of
/// one check under the partition lock, whatever the table's size.
pub const VICTIM_SAMPLE: usize = 32;

fn seconds(now_ns: i128) -> u32 {
    now_ns.div_euclid(crate::gcra::NANOS_PER_SEC) as u32
}

/// Slots are filled to at most 7/8 so probe sequences stay short.
pub fn slots_for_capacity(capacity: usize) -> usize {
    capacity + capacity.div_ceil(7)
}

pub fn max_used(len: usize) -> usize {
    len * 7 / 8
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub evicted: bool,
}

/// One partition: its slots, its overflow cells (a TAT in ns each, 0 when unused) and its
/// count of used slots. The caller holds its lock.
pub struct SlotTable<'a> {
    slots: &'a mut [Slot],
    cells: &'a mut [i64],
    used: &'a mut u32,
}

impl<'a> SlotTable<'a> {
    pub fn new(slots: &'a mut [Slot], cells: &'a mut [i64], used: &'a mut u32) -> Self {
        assert!(!slots.is_empty() && !cells.is_empty());
        Self { slots, cells, used }
    }

    /// Where a key not in the table starts: from its overflow cells, never from more.
    fn absent_state(&self, id: KeyId, limit: Limit, now_ns: i128) -> State {
        let [a, b] = id.cells(self.cells.len());
        let tat_ns = i128::from(self.cells[a].min(self.cells[b]));
        State::no_earlier_than(tat_ns, limit, now_ns)
    }

    /// Folds an evicted key's TAT into its overflow cells.
    fn spill(&mut self, i: usize) {
        let slot = self.slots[i];
        let tat_ns = i64::try_from(slot.state().tat_ns()).unwrap_or(i64::MAX);
        for c in slot.id.cells(self.cells.len()) {
            self.cells[c] = self.cells[c].max(tat_ns);
        }
    }

    fn find(&self, id: KeyId) -> Result<usize, usize> {
        let len = self.slots.len();
        let mut i = id.home(len);
        for _ in 0..len {
            let slot = &self.slots[i];
            if slot.is_empty() {
                return Err(i);
            }
            if slot.id == id {
                return Ok(i);
            }
            i = (i + 1) % len;
        }
        unreachable!("the table is never full: max_used leaves empty slots")
    }

    pub fn used(&self) -> usize {
        *self.used as usize
    }

    /// Decides a write for `id`; an admitted write is stored (`consume`).
    pub fn decide(&mut self, id: KeyId, limit: Limit, now_ns: i128, consume: bool) -> Outcome {
        match self.find(id) {
            Ok(i) => {
                let mut state = self.slots[i].state();
                let decision = decide(&mut state, limit, now_ns, consume);
                if consume {
                    self.slots[i].set_state(state);
                    self.slots[i].touched = seconds(now_ns);
                }
                Outcome {
                    decision,
                    evicted: false,
                }
            }
            Err(_) => {
                let restored = self.absent_state(id, limit, now_ns);
                let mut state = restored;
                let decision = decide(&mut state, limit, now_ns, consume);
                let mut evicted = false;
                // An admitted write is stored; so is a key its overflow cells held back, so
                // that from now on it has a TAT of its own and its steady rate flows.
                if consume && (decision.allowed || restored != State::default()) {
                    if self.used() >= max_used(self.slots.len()) {
                        let victim = self.victim(id, now_ns);
                        self.spill(victim);
                        self.remove_at(victim);
                        evicted = true;
                    }
                    let i = self.find(id).expect_err("absent key");
                    self.slots[i] = Slot {
                        id,
                        touched: seconds(now_ns),
                        ..Default::default()
                    };
                    self.slots[i].set_state(state);
                    *self.used += 1;
                }
                Outcome { decision, evicted }
            }
        }
    }

    /// Forgets a key; true when it was stored. Its overflow cells are left as they are: they
    /// speak for other keys too.
    pub fn remove(&mut self, id: KeyId) -> bool {
        match self.find(id) {
            Ok(i) => {
                self.remove_at(i);
                true
            }
            Err(_) => false,
        }
    }

    /// A slot to evict for `id`, among VICTIM_SAMPLE slots from a place its principal's hash
    /// picks: the first fully replenished key, else the one checked longest ago.
    fn victim(&self, id: KeyId, now_ns: i128) -> usize {
        let len = self.slots.len();
        let start = id.cells(len)[0];
        let now = seconds(now_ns);
        let mut best: Option<(usize, u32)> = None;
        for i in (0..VICTIM_SAMPLE.min(len)).map(|k| (start + k) % len) {
            let slot = &self.slots[i];
            if slot.is_empty() {
                continue;
            }
            if slot.state().is_replenished(now_ns) {
                return i;
            }
            let age = now.wrapping_sub(slot.touched);
            if best.is_none_or(|(_, a)| age > a) {
                best = Some((i, age));
            }
        }
        match best {
            Some((i, _)) => i,
            // Not reached at 7/8 load with 32 samples, but any used slot will do.
            None => (0..len)
                .map(|k| (start + k) % len)
                .find(|&i| !self.slots[i].is_empty())
                .expect("a full table has a used slot"),
        }
    }

    /// Backward-shift deletion: later entries of the probe run move up, so no tombstones.
    fn remove_at(&mut self, mut hole: usize) {
        let len = self.slots.len();
        let mut j = hole;
        loop {
            j = (j + 1) % len;
            if self.slots[j].is_empty() {
                break;
            }
            let home = self.slots[j].id.home(len);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
        }
        self.slots[hole] = Slot::default();
        *self.used -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcra::NANOS_PER_SEC;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const SECRET: [u8; 16] = [7; 16];

    #[test]
    fn slot_is_small() {
        assert_eq!(std::mem::size_of::<Slot>(), 40);
    }

    #[test]
    fn ids_depend_on_secret_bucket_and_key() {
        let a = KeyId::new(&SECRET, "default", "alice");
        assert_eq!(a, KeyId::new(&SECRET, "default", "alice"));
        assert_ne!(a, KeyId::new(&[8; 16], "default", "alice"));
        assert_ne!(a, KeyId::new(&SECRET, "posts", "alice"));
        assert_ne!(
            KeyId::new(&SECRET, "ab", "c"),
            KeyId::new(&SECRET, "a", "bc")
        );
    }

    #[test]
    fn evicts_replenished_keys_first_then_the_least_recently_checked() {
        let (mut slots, mut cells, mut used) =
            (vec![Slot::default(); slots_for_capacity(4)], vec![0; 4], 0);
        let mut t = SlotTable::new(&mut slots, &mut cells, &mut used);
        let limit = Limit::new(1, 100).unwrap();
        let id = |k: &str| KeyId::new(&SECRET, "b", k);
        let cap = max_used(t.slots.len());
        // Fill: key i checked at second i, so key "0" was checked longest ago.
        for i in 0..cap {
            t.decide(id(&i.to_string()), limit, i as i128 * NANOS_PER_SEC, true);
        }
        assert_eq!(t.used(), cap);
        let now = cap as i128 * NANOS_PER_SEC;
        let out = t.decide(id("new"), limit, now, true);
        assert!(out.evicted);
        assert_eq!(t.used(), cap);
        assert!(t.find(id("0")).is_err());
        assert!(t.find(id("new")).is_ok());
        // A key replenished by now goes before any other, even one checked longer ago.
        let short = Limit::new(1, 1).unwrap();
        assert!(t.remove(id("2")));
        t.decide(id("short"), short, now, true);
        let later = now + 2 * NANOS_PER_SEC;
        assert!(t.decide(id("newer"), limit, later, true).evicted);
        assert!(t.find(id("short")).is_err());
        assert!(t.find(id("1")).is_ok());
    }

    #[test]
    fn an_evicted_key_gets_no_budget_back() {
        let (mut slots, mut cells, mut used) =
            (vec![Slot::default(); slots_for_capacity(8)], vec![0; 8], 0);
        let mut t = SlotTable::new(&mut slots, &mut cells, &mut used);
        let user = KeyId::new(&SECRET, "b", "user");
        let limit = Limit::new(20, 3600).unwrap();
        let t0 = 1_700_000_000 * NANOS_PER_SEC;
        for _ in 0..20 {
            assert!(t.decide(user, limit, t0, true).decision.allowed);
        }
        assert!(!t.decide(user, limit, t0, true).decision.allowed);
        // A flood of keys that never replenish pushes the user out of the table...
        let forever = Limit::new(1, i32::MAX).unwrap();
        for i in 0..1000 {
            t.decide(
                KeyId::new(&SECRET, "x", &format!("flood{i}")),
                forever,
                t0 + 1,
                true,
            );
        }
        assert!(t.find(user).is_err(), "the flood evicted the user");
        // ...but the user's spent budget stays spent, and the steady rate (one write every
        // 180 s) still flows.
        let d = t.decide(user, limit, t0 + 2, true).decision;
        assert!(!d.allowed);
        assert!(
            t.decide(user, limit, t0 + 2 + 180 * NANOS_PER_SEC, true)
                .decision
                .allowed
        );
    }

    #[test]
    fn one_principals_flood_of_buckets_costs_no_one_else_anything() {
        let (mut slots, mut cells, mut used) = (
            vec![Slot::default(); slots_for_capacity(64)],
            vec![0; 256],
            0,
        );
        let mut t = SlotTable::new(&mut slots, &mut cells, &mut used);
        let limit = Limit::new(5, 60).unwrap();
        let t0 = 1_700_000_000 * NANOS_PER_SEC;
        let users: Vec<String> = (0..20).map(|i| format!("user{i}")).collect();
        for u in &users {
            assert!(
                t.decide(KeyId::new(&SECRET, "posts", u), limit, t0, true)
                    .decision
                    .allowed
            );
        }
        // mallory spends buckets whose windows never end, far more than the table holds.
        let forever = Limit::new(1, i32::MAX).unwrap();
        let flood = |t: &mut SlotTable<'_>, from: usize, now: i128| {
            for i in from..from + 5000 {
                let id = KeyId::new(&SECRET, &format!("b{i}"), "mallory");
                t.decide(id, forever, now, true);
            }
        };
        flood(&mut t, 0, t0 + 1);
        // Every other principal still has its burst in a bucket it had not used: all of it for
        // a newcomer, all but the one write it spent in another bucket for the rest (a
        // principal's evicted buckets speak for its others; never another principal's).
        let now = t0 + 2;
        for (u, burst) in users
            .iter()
            .map(|u| (u.as_str(), 4))
            .chain([("newcomer", 5)])
        {
            let id = KeyId::new(&SECRET, "comments", u);
            for n in 0..burst {
                let d = t.decide(id, limit, now, true);
                assert!(
                    d.decision.allowed,
                    "{u}: write {n} of a fresh bucket refused"
                );
            }
        }
        // A steady rate flows through a flood that goes on: one write every 12 s.
        let steady = KeyId::new(&SECRET, "posts", "user0");
        let mut now = now;
        for round in 0..5 {
            flood(&mut t, 5000 * (round + 1), now);
            now += 13 * NANOS_PER_SEC;
            for _ in 0..4 {
                t.decide(steady, limit, now, true);
            }
            now += 13 * NANOS_PER_SEC;
            assert!(
                t.decide(steady, limit, now, true).decision.allowed,
                "round {round}"
            );
        }
        // mallory's own buckets stay spent.
        let id = KeyId::new(&SECRET, "b1", "mallory");
        assert!(!t.decide(id, forever, now, true).decision.allowed);
    }

    proptest! {
        /// Without eviction pressure the table behaves exactly like a map of states.
        #[test]
        fn matches_a_map_of_states(ops in proptest::collection::vec((0u8..40, any::<bool>(), 0i128..500_000_000), 1..400)) {
            let (mut slots, mut cells, mut used) = (vec![Slot::default(); slots_for_capacity(64)], vec![0; 64], 0);
            let mut t = SlotTable::new(&mut slots, &mut cells, &mut used);
            let mut model: HashMap<u8, State> = HashMap::new();
            let limit = Limit::new(3, 1).unwrap();
            let mut now = 0;
            for (k, remove, dt) in ops {
                now += dt;
                let id = KeyId::new(&SECRET, "b", &k.to_string());
                if remove && k % 5 == 0 {
                    prop_assert_eq!(t.remove(id), model.remove(&k).is_some());
                    continue;
                }
                let mut s = model.get(&k).copied().unwrap_or_default();
                let expected = decide(&mut s, limit, now, true);
                if expected.allowed { model.insert(k, s); }
                prop_assert_eq!(t.decide(id, limit, now, true).decision, expected);
                prop_assert_eq!(t.used(), model.len());
            }
        }

        /// Under eviction pressure, with many keys and limits (one per key, as a policy has),
        /// the table is never laxer than exact per-key GCRA: every write it admits, a map of
        /// every key's true state admits too.
        #[test]
        fn never_laxer_than_exact(ops in proptest::collection::vec((0u8..60, 0i128..3_000_000_000), 1..600)) {
            let (mut slots, mut cells, mut used) = (vec![Slot::default(); slots_for_capacity(8)], vec![0; 4], 0);
            let mut t = SlotTable::new(&mut slots, &mut cells, &mut used);
            let mut exact: HashMap<u8, State> = HashMap::new();
            let mut now = 1_700_000_000 * NANOS_PER_SEC;
            for (k, dt) in ops {
                now += dt;
                let limit = Limit::new(i32::from(k % 4) + 1, i32::from(k % 7) * 5 + 1).unwrap();
                let id = KeyId::new(&SECRET, "b", &k.to_string());
                let admitted = t.decide(id, limit, now, true).decision.allowed;
                if admitted {
                    let state = exact.entry(k).or_default();
                    prop_assert!(decide(state, limit, now, true).allowed, "key {} got a write exact GCRA refuses", k);
                }
                prop_assert!(t.used() <= max_used(t.slots.len()));
            }
        }
    }
}
