//! Reading a body that comes from outside (a batch from a peer, a peer's answer) into one
//! contiguous buffer, with a byte cap on the memory it takes.
//!
//! Why not `Limited::collect`: it keeps every frame as it came, and each frame is a slice
//! of the connection's read buffer, which it keeps alive. A body sent one byte at a time
//! then pins a few KiB of buffer per byte received. Here every frame after the first is
//! copied out and dropped at once, so a body holds the bytes it has sent (in one buffer
//! that grows by doubling) and at most one read buffer, never more than the cap.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// It is longer than the cap (said so up front, or found while reading).
    TooLarge,
    /// The connection failed or the sender gave up mid-body.
    Broken(Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge => f.write_str("body over its size limit"),
            Self::Broken(error) => write!(f, "body unreadable: {error}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// The whole of `body`, at most `max` bytes. A body that arrives as one frame is kept as
/// that frame, without a copy; later frames are copied into one buffer and dropped.
pub(crate) async fn read_body<B>(body: B, max: usize) -> Result<Bytes, BodyError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if body.size_hint().lower() > max as u64 {
        return Err(BodyError::TooLarge);
    }
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| BodyError::Broken(error.into()))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers carry nothing we read
        };
        let held = first.as_ref().map_or(0, Bytes::len) + joined.len();
        if held + data.remaining() > max {
            return Err(BodyError::TooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data.copy_to_bytes(data.remaining())),
            earlier => {
                if let Some(earlier) = earlier {
                    joined.reserve(earlier.len() + data.remaining());
                    joined.put(earlier);
                }
                joined.put(data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::Full;
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body that arrives in the given frames, with no size hint.
    struct Frames(VecDeque<&'static str>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            let next = self.0.pop_front();
            Poll::Ready(next.map(|part| Ok(Frame::data(Bytes::from_static(part.as_bytes())))))
        }
    }

    fn frames(parts: &[&'static str]) -> Frames {
        Frames(parts.iter().copied().collect())
    }

    #[tokio::test]
    async fn reads_one_frame_or_many_up_to_the_cap() {
        assert_eq!(
            read_body(Full::new(Bytes::from("abc")), 3).await.unwrap(),
            "abc"
        );
        assert_eq!(
            read_body(frames(&["a", "bc", "", "d"]), 4).await.unwrap(),
            "abcd"
        );
        assert_eq!(read_body(frames(&[]), 4).await.unwrap(), "");
        for too_large in [
            read_body(Full::new(Bytes::from("abcd")), 3).await,
            read_body(frames(&["ab", "c", "d"]), 3).await,
        ] {
            assert!(matches!(too_large, Err(BodyError::TooLarge)));
        }
    }
}
