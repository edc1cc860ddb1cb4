//! What the examples share: argument parsing helpers and the shutdown signal.
#![allow(dead_code)]

pub mod ops;

use std::future::Future;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Duration;

/// Runs `run` on the options, once checked: a check that fails is printed with a pointer
/// to `--help` (exit 2), a run that fails is printed (exit 1). Parsing itself is clap's:
/// `--help` prints to standard output and exits 0, a bad argument exits 2.
pub async fn main_with<O, F>(
    program: &str,
    checked: Result<O, String>,
    run: impl FnOnce(O) -> F,
) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    let options = match checked {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{program}: {message}\n\nFor more information, try '--help'.");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{program}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The policy options the examples share.
#[derive(clap::Args, Debug)]
pub struct PolicyArgs {
    /// Requests per user per window, for the policy named `default`
    #[arg(long, value_name = "N", default_value_t = NonZeroU32::new(5).unwrap())]
    pub limit: NonZeroU32,
    /// Window length: 500ms, 60s, 1m, 1h, or plain seconds
    #[arg(long, value_name = "LENGTH", default_value = "60s", value_parser = parse_window)]
    pub window: Duration,
    /// A named policy instead, repeatable (every request is checked against all of
    /// them, all or nothing): NAME:LIMIT/WINDOW[:ALGORITHM], the algorithm fixed
    /// (default), sliding or gcra; e.g. burst:10/1s:gcra
    #[arg(long = "policy", value_name = "SPEC", value_parser = parse_policy,
          conflicts_with_all = ["limit", "window"])]
    pub policies: Vec<ringlimit::Policy>,
    /// Put policy NAME in shadow mode: counted and reported, never rejecting a client
    #[arg(long, value_name = "NAME")]
    pub shadow: Vec<String>,
}

impl PolicyArgs {
    /// The policies these options say: every `--policy`, checked together, or `default`
    /// of `--limit` per `--window`; each named by `--shadow` in shadow mode.
    pub fn policies(&self) -> Result<ringlimit::PolicySet, String> {
        let policies = match self.policies.as_slice() {
            [] => vec![ringlimit::Policy::per_window(self.limit, self.window)],
            given => given.to_vec(),
        };
        if let Some(unknown) = self.shadow.iter().find(|shadow| {
            !policies
                .iter()
                .any(|p| p.name().as_str() == shadow.as_str())
        }) {
            return Err(format!("--shadow {unknown}: no such policy"));
        }
        let policies = policies.into_iter().map(|policy| {
            let shadow = self
                .shadow
                .iter()
                .any(|s| s.as_str() == policy.name().as_str());
            policy.with_shadow(shadow)
        });
        ringlimit::PolicySet::new(policies).map_err(|error| error.to_string())
    }
}

/// `policies` for a start-up line: `name: limit per window (algorithm)`, each.
pub fn describe(policies: &ringlimit::PolicySet) -> String {
    let each: Vec<String> = policies
        .iter()
        .map(|p| {
            let shadow = if p.shadow() { ", shadow" } else { "" };
            format!(
                "{}: {} per {:?} ({:?}{shadow})",
                p.name(),
                p.limit(),
                p.window(),
                p.algorithm()
            )
        })
        .collect();
    each.join("; ")
}

/// A policy: `NAME:LIMIT/WINDOW[:ALGORITHM]`.
pub fn parse_policy(text: &str) -> Result<ringlimit::Policy, String> {
    use ringlimit::policy::{Algorithm, PolicyName};
    let usage = || format!("{text:?} is not NAME:LIMIT/WINDOW[:ALGORITHM], e.g. burst:10/1s:gcra");
    // From the right: a name may hold `:` itself (`tier:free:100/1h:gcra`).
    let (rest, last) = text.rsplit_once(':').ok_or_else(usage)?;
    let (name, rate, algorithm) = match last {
        "fixed" => (rest, None, Algorithm::FixedWindow),
        "sliding" => (rest, None, Algorithm::SlidingWindow),
        "gcra" => (rest, None, Algorithm::Gcra),
        rate if rate.contains('/') => (rest, Some(rate), Algorithm::FixedWindow),
        other => {
            return Err(format!(
                "{other:?}: the algorithm is fixed, sliding or gcra"
            ))
        }
    };
    let (name, rate) = match rate {
        Some(rate) => (name, rate),
        None => {
            let (name, rate) = name.rsplit_once(':').ok_or_else(usage)?;
            (name, rate)
        }
    };
    let name = PolicyName::new(name).map_err(|e| format!("{name:?}: {e}"))?;
    let (limit, window) = rate.split_once('/').ok_or_else(usage)?;
    let limit: NonZeroU32 = limit
        .parse()
        .map_err(|_| format!("{limit:?}: the limit is a whole number from 1"))?;
    let window = parse_window(window)?;
    if !algorithm.supports(limit.get(), window) {
        return Err(format!(
            "{algorithm:?} cannot enforce {limit} per {window:?} exactly (see Algorithm::supports)"
        ));
    }
    Ok(ringlimit::Policy::per_window(limit, window)
        .with_name(name)
        .with_algorithm(algorithm))
}

/// A window length: `500ms`, `60s`, `1m`, `1h`, or plain seconds; at least 1 ms.
pub fn parse_window(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a length such as 500ms, 60s, 1m or 1h"))?;
    let window = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(format!("{text:?}: the unit is ms, s, m or h")),
    };
    if window < Duration::from_millis(1) || window.as_millis() > u128::from(u64::MAX) {
        return Err("a window is at least 1 ms and at most u64::MAX ms".into());
    }
    Ok(window)
}

/// Prints the library's log events (a circuit that opens, the key cap reached) to
/// standard error, filtered by `RUST_LOG` (e.g. `warn`, `ringlimit=debug`, `off`; default
/// `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
