//! The in-memory check (as the layer makes it: the backend's own set) against governor's keyed limiter, measured in pairs: each round
//! times ringlimit and then governor (in alternating order) on the same keys and threads,
//! so both see the same machine. On a shared machine, where the two-thread figures of
//! `memory_check` can move by 2× from one minute to the next, the per-round ratio is the
//! figure to trust.
//!
//! Cases: one hot key and 100k keys, every key already known (the steady state); and
//! 200k keys each seen for the first time (fresh limiters each round: the insert path).
//!
//! `cargo bench --bench paired_check` (ROUNDS=N to change the 31 rounds)

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use common::{governor_limiter, key_sets, ringlimit_backend, timed, warmed};

/// Checks per timed run over known keys.
const CHECKS: u64 = 2_000_000;
/// Keys of the first-seen case (one check each).
const NEW_KEYS: usize = 200_000;

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(31);
    println!(
        "{rounds} rounds; ns per check (median [p25 p75]), and ringlimit / governor per round"
    );
    for (name, keys) in &key_sets() {
        for threads in [1, 2] {
            let (backend, governor) = warmed(keys);
            let ours = || {
                let backend = backend.clone();
                let own = ringlimit::Backend::policies(&*backend).clone();
                timed(threads, CHECKS, keys, move |key| {
                    black_box(backend.decide_all(key, &own).unwrap());
                })
            };
            let theirs = || {
                let governor = governor.clone();
                timed(threads, CHECKS, keys, move |key| {
                    let _ = black_box(governor.check_key(key));
                })
            };
            pair(&format!("{name}/{threads}"), rounds, CHECKS, ours, theirs);
        }
    }
    let fresh = Arc::new(
        (0..NEW_KEYS)
            .map(|i| format!("new-user-{i}"))
            .collect::<Vec<_>>(),
    );
    for threads in [1, 2] {
        let checks = NEW_KEYS as u64;
        let ours = || {
            let backend = ringlimit_backend();
            let own = ringlimit::Backend::policies(&*backend).clone();
            timed(threads, checks, &fresh, move |key| {
                black_box(backend.decide_all(key, &own).unwrap());
            })
        };
        let theirs = || {
            let governor = governor_limiter();
            timed(threads, checks, &fresh, move |key| {
                let _ = black_box(governor.check_key(key));
            })
        };
        pair(
            &format!("{NEW_KEYS}_new_keys/{threads}"),
            rounds,
            checks,
            ours,
            theirs,
        );
    }
}

/// Times `ours` and `theirs` (each `checks` checks) in `rounds` alternating pairs and
/// prints the figures of case `name`.
fn pair(
    name: &str,
    rounds: usize,
    checks: u64,
    ours: impl Fn() -> Duration,
    theirs: impl Fn() -> Duration,
) {
    let ns = |took: Duration| took.as_nanos() as f64 / checks as f64;
    let (mut us, mut them, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (r, g) = if round % 2 == 0 {
            let r = ns(ours());
            (r, ns(theirs()))
        } else {
            let g = ns(theirs());
            (ns(ours()), g)
        };
        us.push(r);
        them.push(g);
        ratios.push(r / g);
    }
    let faster = ratios.iter().filter(|&&q| q < 1.0).count();
    println!(
        "{name} thread(s): ringlimit {}  governor {}  ratio {} (ringlimit faster in {faster} of {rounds})",
        quartiles(&mut us),
        quartiles(&mut them),
        quartiles(&mut ratios),
    );
}

/// "median [p25 p75]" of `values`.
fn quartiles(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!("{:.2} [{:.2} {:.2}]", at(0.5), at(0.25), at(0.75))
}
