//! Bytes per tracked key in the in-memory backend at 1,000,000 keys, proof that they are
//! given back once their window is over, and the memory a key cap holds a flood to.
//!
//! ```text
//! cargo run --release --example memory_per_key [KEYS (1000000)] [fixed|sliding|gcra]
//! ```
//!
//! Two figures: the bytes the backend asked the allocator for (a counting allocator), and
//! the growth of the process's resident memory (which adds the allocator's own overhead).
//! The sliding window and GCRA keep the window before whole (a key's state carries over),
//! so their keys are given back a window later.

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use ringlimit::policy::Algorithm;
use ringlimit::{ManualClock, MemoryBackend, Policy};

/// The system allocator, counting the bytes in use.
struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let keys: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |n| n.parse().expect("KEYS is a number"));
    let clock = ManualClock::new(Duration::from_secs(1_800_000_000));
    let algorithm = match std::env::args().nth(2).as_deref() {
        None | Some("fixed") => Algorithm::FixedWindow,
        Some("sliding") => Algorithm::SlidingWindow,
        Some("gcra") => Algorithm::Gcra,
        Some(other) => panic!("{other:?}: the algorithm is fixed, sliding or gcra"),
    };
    println!("algorithm:               {algorithm:?}");
    let policy = Policy::per_window(NonZeroU32::new(100).unwrap(), Duration::from_secs(60))
        .with_algorithm(algorithm);
    let backend = MemoryBackend::builder(policy)
        .max_keys(usize::MAX)
        .clock(clock.clone())
        .build();
    // Keys are built on the fly, so only the backend's copies stay allocated.
    let key = |i: usize| format!("user-{i:07}");
    let key_bytes: usize = (0..keys).map(|i| key(i).len()).sum();

    let (heap_before, rss_before) = (IN_USE.load(Ordering::Relaxed), resident_bytes());
    for i in 0..keys {
        backend.decide(&key(i), NonZeroU32::MIN);
    }
    let heap = (IN_USE.load(Ordering::Relaxed) - heap_before) as f64;
    println!("tracked keys:            {}", backend.tracked_keys());
    println!(
        "key bytes (average):     {:.1}",
        key_bytes as f64 / keys as f64
    );
    println!(
        "heap per key:            {:.1} bytes, {:.1} beyond the key's own bytes",
        heap / keys as f64,
        (heap - key_bytes as f64) / keys as f64
    );
    if let (Some(before), Some(after)) = (rss_before, resident_bytes()) {
        let rss = after.saturating_sub(before) as f64;
        println!(
            "resident per key:        {:.1} bytes, {:.1} beyond the key's own bytes",
            rss / keys as f64,
            (rss - key_bytes as f64) / keys as f64
        );
    }

    // A new window (two, for the algorithms that keep the one before): the requests that
    // follow drop the old counters, with no cleanup call.
    let windows = if algorithm == Algorithm::FixedWindow {
        1
    } else {
        2
    };
    for _ in 1..windows {
        clock.advance(Duration::from_secs(60));
        backend.decide("next-0", NonZeroU32::MIN);
    }
    clock.advance(Duration::from_secs(60));
    for i in 0..keys / 8 {
        backend.decide(&format!("next-{}", i % 1_000), NonZeroU32::MIN);
    }
    let left = IN_USE.load(Ordering::Relaxed) - heap_before;
    println!(
        "after the window ends and {} requests of 1000 new keys: {} keys tracked, {:.1} KiB held",
        keys / 8,
        backend.tracked_keys(),
        left as f64 / 1024.0
    );
    drop(backend);

    // Under a cap of a tenth of the keys: a flood of all of them, against the cap's worth.
    let cap = keys / 10;
    let held = |sent: usize| {
        let before = IN_USE.load(Ordering::Relaxed);
        let capped = MemoryBackend::builder(policy).max_keys(cap).build();
        for i in 0..sent {
            capped.decide(&key(i), NonZeroU32::MIN);
        }
        let held = IN_USE.load(Ordering::Relaxed) - before;
        (held as f64, capped.tracked_keys(), capped.evicted_keys())
    };
    let (alone, _, _) = held(cap);
    let (flooded, tracked, evicted) = held(keys);
    println!(
        "cap of {cap} keys: {:.1} MiB for {cap} keys; a flood of {keys} keys holds {:.1} MiB \
         ({:.2} of it; {tracked} tracked, {evicted} evicted); {:.1} bytes per key beyond the key",
        alone / 1048576.0,
        flooded / 1048576.0,
        flooded / alone,
        (alone - (0..cap).map(|i| key(i).len()).sum::<usize>() as f64) / cap as f64,
    );
}
