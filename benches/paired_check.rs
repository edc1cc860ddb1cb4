//! The in-memory check against governor's keyed limiter, measured in pairs: each round
//! times ringlimit and then governor (in alternating order) on the same keys and threads,
//! so both see the same machine. On a shared machine, where the two-thread figures of
//! `memory_check` can move by 2× from one minute to the next, the per-round ratio is the
//! figure to trust.
//!
//! `cargo bench --bench paired_check` (ROUNDS=N to change the 31 rounds)

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{governor_limiter, key_sets, ringlimit_backend, timed};

/// Checks per timed run, per case.
const CHECKS: u64 = 2_000_000;

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(31);
    println!("{rounds} rounds of {CHECKS} checks per limiter and case; ns per check, and ringlimit / governor per round");
    for (name, keys) in &key_sets() {
        for threads in [1, 2] {
            let backend = ringlimit_backend();
            let governor = governor_limiter();
            for key in keys.iter() {
                backend.decide(key, 1);
                let _ = governor.check_key(key);
            }
            let ns = |took: Duration| took.as_nanos() as f64 / CHECKS as f64;
            let run_ringlimit = || {
                let backend = backend.clone();
                ns(timed(threads, CHECKS, keys, move |key| {
                    black_box(backend.decide(key, 1));
                }))
            };
            let run_governor = || {
                let governor = governor.clone();
                ns(timed(threads, CHECKS, keys, move |key| {
                    let _ = black_box(governor.check_key(key));
                }))
            };
            let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                let (r, g) = if round % 2 == 0 {
                    let r = run_ringlimit();
                    (r, run_governor())
                } else {
                    let g = run_governor();
                    (run_ringlimit(), g)
                };
                ours.push(r);
                theirs.push(g);
                ratios.push(r / g);
            }
            let faster = ratios.iter().filter(|&&q| q < 1.0).count();
            println!(
                "{name}/{threads} thread(s): ringlimit {}  governor {}  ratio {} (ringlimit faster in {faster} of {rounds})",
                quartiles(&mut ours),
                quartiles(&mut theirs),
                quartiles(&mut ratios),
            );
        }
    }
}

/// "median [p25 p75]" of `values`.
fn quartiles(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!("{:.2} [{:.2} {:.2}]", at(0.5), at(0.25), at(0.75))
}
