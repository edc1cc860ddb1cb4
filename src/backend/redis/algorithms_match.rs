//! The Lua twin of the algorithms (`algorithms.lua`, for the Redis backend) against the
//! crate's own, on a real `redis-server`: the same verdict and the same state for every
//! step of many schedules, edge values included.

use super::test_server::{available, RedisServer};
use crate::algorithm::{Algorithm, Rate, State, Verdict};

/// Runs one algorithm step in Lua, with the state and the time given.
const PROBE: &str = r"
local algorithm = algorithms[tonumber(ARGV[1])]
local n = {}
for i = 2, #ARGV do
  n[i - 1] = tonumber(ARGV[i])
end
local allowed, remaining, reset, retry, state = algorithm(n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8])
if state == nil then
  state = {0, 0, 0, 0}
end
return {allowed, remaining, reset, retry, state[1], state[2], state[3], state[4]}
";

fn encode(state: Option<State>) -> [u64; 4] {
    match state {
        None => [0; 4],
        Some(State::Fixed { window, used }) => [1, window, used.into(), 0],
        Some(State::Sliding {
            window,
            current,
            previous,
        }) => [2, window, current.into(), previous.into()],
        Some(State::Gcra { at_ms, level }) => [3, at_ms, level, 0],
    }
}

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test]
#[cfg_attr(ringlimit_no_redis_server, ignore = "redis-server is not installed")]
async fn the_lua_algorithms_decide_as_the_rust_ones() {
    if !available("the_lua_algorithms_decide_as_the_rust_ones") {
        return;
    }
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let script = redis::Script::new(&format!("{}\n{PROBE}", include_str!("algorithms.lua")));

    let algorithms = [
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
        Algorithm::Gcra,
    ];
    // Small numbers, and the largest each algorithm takes.
    let rates = [
        Rate {
            limit: 5,
            window_ms: 1_000,
        },
        Rate {
            limit: 7,
            window_ms: 60_000,
        },
        Rate {
            limit: 1,
            window_ms: 1,
        },
        Rate {
            limit: 3,
            window_ms: 10,
        },
        Rate {
            limit: u32::MAX,
            window_ms: 1 << 32,
        },
        Rate {
            limit: 1 << 21,
            window_ms: 1 << 32,
        },
        // Odd, and as near 2^53 as GCRA takes: no sum may round in Lua.
        Rate {
            limit: (1 << 21) + 1,
            window_ms: 4_294_965_247,
        },
    ];
    let mut numbers = Numbers(0x9e37_79b9_7f4a_7c15);
    let mut steps = 0;
    for algorithm in algorithms {
        for rate in rates.into_iter().filter(|&rate| algorithm.admits(rate)) {
            let mut state = None;
            let mut now = 1_800_000_000_000 + numbers.below(rate.window_ms);
            for _ in 0..120 {
                now += match numbers.below(4) {
                    0 => 0,
                    1 => numbers.below(rate.window_ms.min(50) + 1),
                    2 => numbers.below(rate.window_ms + 1),
                    _ => numbers.below(3 * rate.window_ms + 1),
                };
                let cost = match numbers.below(5) {
                    0 => rate.limit,
                    1 => rate.limit.saturating_add(1),
                    _ => 1 + numbers.below(u64::from(rate.limit.min(4))) as u32,
                };
                // Now and then the clock goes back (a failover to a server behind).
                let now = match numbers.below(10) {
                    0 => now.saturating_sub(numbers.below(2 * rate.window_ms)),
                    _ => now,
                };
                let (verdict, next) = algorithm.check(rate, state, now, cost);
                let [kind, a, b, c] = encode(state);
                let id = algorithms.iter().position(|&x| x == algorithm).unwrap() + 1;
                let lua: Vec<i64> = script
                    .prepare_invoke()
                    .arg(id)
                    .arg(rate.window_ms)
                    .arg(rate.limit)
                    .arg(kind)
                    .arg(a)
                    .arg(b)
                    .arg(c)
                    .arg(now)
                    .arg(cost)
                    .invoke_async(&mut connection)
                    .await
                    .unwrap();
                let expected = {
                    let Verdict {
                        allowed,
                        remaining,
                        reset_ms,
                        retry_ms,
                    } = verdict;
                    let retry = retry_ms.map_or(-1, |r| r as i64);
                    let [kind, a, b, c] = encode(next);
                    let head = [i64::from(allowed), remaining.into(), reset_ms as i64, retry];
                    [head, [kind as i64, a as i64, b as i64, c as i64]].concat()
                };
                assert_eq!(
                    lua, expected,
                    "{algorithm:?} {rate:?} from {state:?} at {now} costing {cost}"
                );
                state = next.or(state);
                steps += 1;
            }
        }
    }
    assert!(steps >= 1_500, "{steps} steps compared");
}
