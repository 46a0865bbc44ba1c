//! The memory store's table: a fixed array of slots with linear probing, one per partition of
//! shared memory. It never grows; when it is full it evicts first a key whose state grants
//! nothing (fully replenished), else the key closest to replenished (the least restrictive).
//! Keys are identified by a 128-bit SipHash under a per-cluster random secret, so no client
//! can make two keys collide or aim at one partition.

use crate::gcra::{decide, Decision, Limit, State};
use siphasher::sip128::{Hasher128, SipHasher24};
use std::hash::Hasher;

/// A key's identity: SipHash-2-4 (128-bit) of (bucket, key) under the cluster secret.
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
        let hash = h.finish128();
        Self([hash.h1, hash.h2])
    }

    /// Which of `n` partitions holds this key.
    pub fn partition(&self, n: usize) -> usize {
        (self.0[1] % n as u64) as usize
    }

    fn home(&self, len: usize) -> usize {
        (self.0[0] % len as u64) as usize
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
    _pad: u32,
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

/// One partition: its slots and its count of used slots. The caller holds its lock.
pub struct SlotTable<'a> {
    slots: &'a mut [Slot],
    used: &'a mut u32,
}

impl<'a> SlotTable<'a> {
    pub fn new(slots: &'a mut [Slot], used: &'a mut u32) -> Self {
        assert!(!slots.is_empty());
        Self { slots, used }
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
                }
                Outcome {
                    decision,
                    evicted: false,
                }
            }
            Err(_) => {
                let mut state = State::default();
                let decision = decide(&mut state, limit, now_ns, consume);
                let mut evicted = false;
                if consume && decision.allowed {
                    if self.used() >= max_used(self.slots.len()) {
                        let victim = self.victim(now_ns);
                        self.remove_at(victim);
                        evicted = true;
                    }
                    let i = self.find(id).expect_err("absent key");
                    self.slots[i] = Slot {
                        id,
                        ..Default::default()
                    };
                    self.slots[i].set_state(state);
                    *self.used += 1;
                }
                Outcome { decision, evicted }
            }
        }
    }

    /// Forgets a key; true when it was stored.
    pub fn remove(&mut self, id: KeyId) -> bool {
        match self.find(id) {
            Ok(i) => {
                self.remove_at(i);
                true
            }
            Err(_) => false,
        }
    }

    fn victim(&self, now_ns: i128) -> usize {
        let mut best = (usize::MAX, i128::MAX);
        for (i, slot) in self.slots.iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            let state = slot.state();
            if state.is_replenished(now_ns) {
                return i;
            }
            let tat = state.tat_ns();
            if tat < best.1 {
                best = (i, tat);
            }
        }
        best.0
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
    fn evicts_replenished_keys_first_then_the_least_restrictive() {
        let mut slots = vec![Slot::default(); slots_for_capacity(4)];
        let mut used = 0;
        let mut t = SlotTable::new(&mut slots, &mut used);
        let limit = Limit::new(1, 100).unwrap();
        let id = |k: &str| KeyId::new(&SECRET, "b", k);
        let cap = max_used(t.slots.len());
        // Fill: key i used at time i seconds (later keys are more restrictive at time `cap`).
        for i in 0..cap {
            t.decide(id(&i.to_string()), limit, i as i128 * NANOS_PER_SEC, true);
        }
        assert_eq!(t.used(), cap);
        let now = cap as i128 * NANOS_PER_SEC;
        let out = t.decide(id("new"), limit, now, true);
        assert!(out.evicted);
        assert_eq!(t.used(), cap);
        // Key "0" was the least restrictive (its one write is the oldest) and is gone.
        assert!(t.find(id("0")).is_err());
        assert!(t.find(id("new")).is_ok());
        // A key replenished by now goes before any other, even a less restrictive one.
        let short = Limit::new(1, 1).unwrap();
        assert!(t.remove(id("2")));
        t.decide(id("short"), short, now, true);
        let later = now + 2 * NANOS_PER_SEC;
        assert!(t.decide(id("newer"), limit, later, true).evicted);
        assert!(t.find(id("short")).is_err());
        assert!(t.find(id("1")).is_ok());
    }

    proptest! {
        /// Without eviction pressure the table behaves exactly like a map of states.
        #[test]
        fn matches_a_map_of_states(ops in proptest::collection::vec((0u8..40, any::<bool>(), 0i128..500_000_000), 1..400)) {
            let mut slots = vec![Slot::default(); slots_for_capacity(64)];
            let mut used = 0;
            let mut t = SlotTable::new(&mut slots, &mut used);
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
    }
}
