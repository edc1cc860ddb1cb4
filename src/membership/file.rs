//! Members read from a file: again on `SIGHUP` (on Unix), and whenever its contents
//! change, looked at every few seconds.

use std::path::PathBuf;
use std::time::Duration;

use super::{parse_members, MembershipSource};

/// How often a [`MembersFile`] is looked at by default.
pub const DEFAULT_FILE_INTERVAL: Duration = Duration::from_secs(2);

/// A file of members (one `host:port` a line, see [`parse_members`]), read at once, then
/// again on `SIGHUP` (on Unix) and every [`interval`](Self::interval). A list is yielded
/// only when it differs from the last one read; a file that cannot be read is reported
/// once, until it can again.
#[derive(Debug)]
pub struct MembersFile {
    path: PathBuf,
    interval: Duration,
    last: Option<Result<Vec<String>, String>>,
    #[cfg(unix)]
    hangups: Option<tokio::signal::unix::Signal>,
}

impl MembersFile {
    /// The members in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            interval: DEFAULT_FILE_INTERVAL,
            last: None,
            #[cfg(unix)]
            hangups: None,
        }
    }

    /// Looks at the file every `interval` (default [`DEFAULT_FILE_INTERVAL`]), besides on
    /// `SIGHUP`.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    fn read(&self) -> Result<Vec<String>, String> {
        std::fs::read_to_string(&self.path)
            .map(|text| parse_members(&text))
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))
    }

    /// Until `SIGHUP` or the interval, whichever comes first.
    async fn wait(&mut self) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if self.hangups.is_none() {
                self.hangups = signal(SignalKind::hangup()).ok();
            }
            if let Some(hangups) = &mut self.hangups {
                tokio::select! {
                    _ = hangups.recv() => {}
                    () = tokio::time::sleep(self.interval) => {}
                }
                return;
            }
        }
        tokio::time::sleep(self.interval).await;
    }
}

impl MembershipSource for MembersFile {
    async fn next_members(&mut self) -> Option<Result<Vec<String>, String>> {
        loop {
            if self.last.is_some() {
                self.wait().await;
            }
            let read = self.read();
            if self.last.as_ref() != Some(&read) {
                self.last = Some(read.clone());
                return Some(read);
            }
        }
    }
}
