//! Any sequence of limits and clock steps (backwards too): the GCRA never panics and never
//! admits more than the burst plus what the elapsed time refills.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pg_rls_auth_core::gcra::{decide, Limit, State, NANOS_PER_SEC};

#[derive(Arbitrary, Debug)]
struct Input {
    max_writes: i32,
    window_seconds: i32,
    steps: Vec<(i64, bool)>,
}

fuzz_target!(|input: Input| {
    let Ok(limit) = Limit::new(input.max_writes, input.window_seconds) else {
        assert!(input.max_writes <= 0 || input.window_seconds <= 0);
        return;
    };
    let (max, window) = (i128::from(input.max_writes), i128::from(input.window_seconds) * NANOS_PER_SEC);
    let mut state = State::default();
    let start = 1_700_000_000 * NANOS_PER_SEC;
    let (mut now, mut earliest, mut latest, mut admitted) = (start, start, start, 0i128);
    for (step, consume) in input.steps.into_iter().take(1000) {
        now += i128::from(step % 1_000_000_000_000);
        earliest = earliest.min(now);
        latest = latest.max(now);
        let d = decide(&mut state, limit, now, consume);
        assert!(i128::from(d.remaining) <= max);
        if consume && d.allowed {
            admitted += 1;
            assert!(admitted <= max + (latest - earliest) * max / window);
        }
    }
});
