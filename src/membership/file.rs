//! Members read from a file: again on `SIGHUP` (on Unix), and whenever its contents
//! change, looked at every few seconds.

use std::path::PathBuf;
use std::time::Duration;

use super::{parse_members, MembershipError, MembershipSource};

/// How often a [`MembersFile`] is looked at by default.
pub const DEFAULT_FILE_INTERVAL: Duration = Duration::from_secs(2);

/// The most a members file may hold: a member a line, thousands of them.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A file of members (one `host:port` a line, see [`parse_members`]), read at once, then
/// again on `SIGHUP` (on Unix) and every [`interval`](Self::interval). A list is yielded
/// only when it differs from the last one read; a file that cannot be read is reported
/// once, until it can again.
///
/// A change found by looking (not after `SIGHUP`) is applied only once two reads an
/// interval apart agree, so a file caught in the middle of being written is not taken
/// for a ring; still, replace the file whole (write another, then rename it over).
#[derive(Debug)]
pub struct MembersFile {
    path: PathBuf,
    interval: Duration,
    seen: super::Seen,
    #[cfg(unix)]
    hangups: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    listening: bool,
}

impl MembersFile {
    /// The members in the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            interval: DEFAULT_FILE_INTERVAL,
            seen: None,
            #[cfg(unix)]
            hangups: None,
            #[cfg(unix)]
            listening: false,
        }
    }

    /// Looks at the file every `interval` (default [`DEFAULT_FILE_INTERVAL`]; at least
    /// 100 ms), besides on `SIGHUP`.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(super::MIN_INTERVAL);
        self
    }

    /// The file's members, read off the runtime's threads (a slow mount stalls only the
    /// read), at most [`MAX_FILE_BYTES`].
    async fn read(&self) -> Result<Vec<String>, MembershipError> {
        let path = self.path.clone();
        let shown = self.path.display().to_string();
        let read = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut text = String::new();
            std::fs::File::open(&path)?
                .take(MAX_FILE_BYTES)
                .read_to_string(&mut text)?;
            Ok::<_, std::io::Error>(text)
        });
        match read.await {
            Ok(Ok(text)) => Ok(parse_members(&text)),
            Ok(Err(e)) => Err(MembershipError::new(format!("cannot read {shown}"), e)),
            Err(e) => Err(MembershipError::new(format!("cannot read {shown}"), e)),
        }
    }

    /// Listens for `SIGHUP` from the first call on (a failure to is logged once).
    #[cfg(unix)]
    fn listen(&mut self) {
        use tokio::signal::unix::{signal, SignalKind};
        if !self.listening {
            self.listening = true;
            match signal(SignalKind::hangup()) {
                Ok(hangups) => self.hangups = Some(hangups),
                Err(error) => tracing::warn!(
                    %error,
                    "ringlimit: cannot listen for SIGHUP; the members file is looked at every interval only"
                ),
            }
        }
    }

    /// Until `SIGHUP` (true) or the interval (false), whichever comes first.
    async fn wait(&mut self) -> bool {
        #[cfg(unix)]
        if let Some(hangups) = &mut self.hangups {
            tokio::select! {
                signalled = hangups.recv() => {
                    if signalled.is_none() {
                        self.hangups = None;
                    }
                    return signalled.is_some();
                }
                () = tokio::time::sleep(self.interval) => return false,
            }
        }
        tokio::time::sleep(self.interval).await;
        false
    }
}

impl MembershipSource for MembersFile {
    async fn next_members(&mut self) -> Option<Result<Vec<String>, MembershipError>> {
        #[cfg(unix)]
        self.listen();
        loop {
            let signalled = match self.seen.is_some() {
                true => self.wait().await,
                false => true,
            };
            let mut read = self.read().await;
            // Found by looking: taken only once a read an interval later agrees (or
            // SIGHUP says the file is ready).
            while !signalled && self.seen.as_ref() != Some(&super::as_seen(&read)) {
                if self.wait().await {
                    read = self.read().await;
                    break;
                }
                let again = self.read().await;
                if super::as_seen(&again) == super::as_seen(&read) {
                    break;
                }
                read = again;
            }
            if let Some(changed) = super::changed(&mut self.seen, read) {
                return Some(changed);
            }
        }
    }
}
