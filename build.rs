//! Marks the Redis tests as ignored (reported as such, not as passed) on a machine without
//! `redis-server` on its `PATH`, unless `RINGLIMIT_REQUIRE_REDIS=1` (set by `.ci/run`)
//! asks for them to run, and fail. It sets a cfg only; the library's code does not read it.

//!
//! A `redis-server` installed after a build is seen once the build script runs again:
//! `touch build.rs`, or run with `RINGLIMIT_REQUIRE_REDIS=1`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ringlimit_no_redis_server)");
    // Only the Redis tests read it; builds without the feature do not look.
    if std::env::var_os("CARGO_FEATURE_REDIS").is_none() {
        return;
    }
    println!("cargo::rerun-if-env-changed=RINGLIMIT_REQUIRE_REDIS");
    println!("cargo::rerun-if-env-changed=PATH");
    let required = std::env::var("RINGLIMIT_REQUIRE_REDIS").is_ok_and(|v| v == "1");
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("redis-server").is_file())
    });
    if !found && !required {
        println!("cargo::rustc-cfg=ringlimit_no_redis_server");
    }
}
