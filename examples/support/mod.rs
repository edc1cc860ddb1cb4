//! What the examples share: argument parsing helpers and the shutdown signal.
#![allow(dead_code)]

use std::future::Future;
use std::process::ExitCode;
use std::str::FromStr;

/// Runs `run` on the parsed options; on a parse error prints it and `usage` (exit 2), on a
/// run error prints it (exit 1). An empty parse error is a request for help.
pub async fn main_with<O, F>(
    program: &str,
    usage: &str,
    parsed: Result<O, String>,
    run: impl FnOnce(O) -> F,
) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    let options = match parsed {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("{program}: {message}");
            }
            eprintln!("{usage}");
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

/// Parses `text` as the value of option `name`, with a message naming both on failure.
pub fn parse<T: FromStr>(name: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name}: {text:?} is not a valid value"))
}

/// The next argument, as the value of option `name`.
pub fn value(args: &mut impl Iterator<Item = String>, name: &str) -> Result<String, String> {
    args.next().ok_or_else(|| format!("{name} needs a value"))
}

/// Prints the library's log events (a circuit that opens, the key cap reached) to
/// standard error, at `RUST_LOG`'s level (`error`, `warn`, `info`, `debug`, `trace`;
/// default `info`).
pub fn init_logging() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|level| level.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
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
