//! Any sequence of checks, limits, removals and clock steps on a small memory-store partition
//! (so it is full most of the time): never a panic, never more used slots than it holds, and
//! never laxer than exact GCRA per key: eviction gives no budget back.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pg_rls_auth_core::gcra::{decide, Limit, State, NANOS_PER_SEC};
use pg_rls_auth_core::slot_table::{max_used, slots_for_capacity, KeyId, Slot, SlotTable};
use std::collections::HashMap;

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    cells: u8,
    ops: Vec<(u8, u32, bool)>,
}

fuzz_target!(|input: Input| {
    let capacity = usize::from(input.capacity % 32) + 1;
    let mut slots = vec![Slot::default(); slots_for_capacity(capacity)];
    let mut cells = vec![0i64; usize::from(input.cells % 16) + 1];
    let mut used = 0;
    let mut table = SlotTable::new(&mut slots, &mut cells, &mut used);
    let mut exact: HashMap<u8, State> = HashMap::new();
    let mut now = 1_700_000_000 * NANOS_PER_SEC;
    for (key, step_ms, remove) in input.ops.into_iter().take(2000) {
        now += i128::from(step_ms % 10_000_000) * 1_000_000;
        let id = KeyId::new(&[3; 16], "b", &key.to_string());
        // One limit per key, as a policy has.
        let limit = Limit::new(i32::from(key % 5) + 1, i32::from(key % 9) * 7 + 1).unwrap();
        if remove && key % 11 == 0 {
            table.remove(id);
            exact.remove(&key);
            continue;
        }
        if table.decide(id, limit, now, true).decision.allowed {
            let state = exact.entry(key).or_default();
            assert!(decide(state, limit, now, true).allowed, "laxer than exact GCRA");
        }
        assert!(table.used() <= max_used(slots_for_capacity(capacity)));
    }
});
