//! The HTTP/1.1 a batch travels in, as bytes: the request written whole, and the owner's
//! answer read off the connection's bytes (its head, then its body however it is framed),
//! every part bounded. No I/O: `kept_connections` moves the bytes.
//!
//! Why not hyper's client: a batch is one small request and one small answer on a
//! connection of its own, and hyper's client connection cost the forwarding node about
//! 17,200 instructions a batch, six times what writing the checks and reading their
//! answers took (BENCHMARKS.md, "A batch's own HTTP/1.1"). The owner's side is still any
//! HTTP/1.1 server.

#[cfg(test)]
mod tests;

use http::{HeaderValue, StatusCode};

use crate::protocol::{CHECK_PATH, FORWARDED};

/// The longest answer head read, with the interim (`1xx`) heads before it (a ringlimit
/// owner's is about 100 bytes).
pub(super) const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Header lines read in a head at most.
const MAX_HEADERS: usize = 32;

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The fixed part of every batch request to one peer, checked and written once: `POST
/// /check` to `member`, marked as forwarded, carrying `authorization` if given (the same
/// fields the pooled client's `PeerClient::forwarded` sets), up to the body's length.
#[derive(Clone, Debug)]
pub(super) struct BatchHead {
    start: Box<[u8]>,
}

impl BatchHead {
    /// An error if `member` cannot be a `host` header.
    pub(super) fn new(member: &str, authorization: Option<&HeaderValue>) -> Result<Self, BoxError> {
        // What `HeaderValue` accepts: no control characters but tab.
        if !member
            .bytes()
            .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
        {
            return Err(format!("{member:?} is not a valid host header").into());
        }
        let mut start = Vec::new();
        start.extend_from_slice(b"POST ");
        start.extend_from_slice(CHECK_PATH.as_bytes());
        start.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        start.extend_from_slice(member.as_bytes());
        start.extend_from_slice(b"\r\n");
        start.extend_from_slice(FORWARDED.as_str().as_bytes());
        start.extend_from_slice(b": 1\r\n");
        if let Some(authorization) = authorization {
            start.extend_from_slice(b"authorization: ");
            start.extend_from_slice(authorization.as_bytes());
            start.extend_from_slice(b"\r\n");
        }
        start.extend_from_slice(b"content-type: text/plain\r\ncontent-length: ");
        Ok(Self {
            start: start.into(),
        })
    }

    /// The whole request carrying `body`, to be written in one go.
    pub(super) fn request(&self, body: &[u8]) -> Vec<u8> {
        let mut request = Vec::with_capacity(self.start.len() + 24 + body.len());
        request.extend_from_slice(&self.start);
        request.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);
        request
    }
}

/// An answer's head.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) status: StatusCode,
    /// How its body is delimited.
    pub(super) body: Framing,
    /// The connection may carry another request once this answer is read.
    pub(super) keep_alive: bool,
    /// Its bytes, the blank line that ends it included.
    pub(super) len: usize,
}

/// How an answer's body is delimited.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(super) enum Framing {
    /// `content-length` bytes (none for `1xx`, `204` and `304`).
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Everything until the peer closes the connection.
    UntilClose,
}

/// The head at the start of `bytes`, of at most `max` bytes; `None` while it is
/// incomplete.
pub(super) fn head(bytes: &[u8], max: usize) -> Result<Option<Head>, BoxError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes)? {
        httparse::Status::Complete(len) if len <= max => len,
        httparse::Status::Partial if bytes.len() < max => return Ok(None),
        _ => return Err(format!("answer head longer than {MAX_HEAD_BYTES} bytes").into()),
    };
    let status = StatusCode::from_u16(response.code.unwrap_or_default())?;
    let (mut length, mut coded, mut chunked) = (None, false, false);
    let (mut close, mut keep_alive) = (false, false);
    for header in response.headers.iter() {
        let (name, value) = (header.name, header.value);
        if name.eq_ignore_ascii_case("content-length") {
            let n = content_length(value).ok_or("invalid content-length")?;
            if length.is_some_and(|earlier| earlier != n) {
                return Err("conflicting content-lengths".into());
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding of the last field decides (RFC 9112, 6.3).
            coded = true;
            chunked = tokens(value)
                .last()
                .is_some_and(|last| last.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    // HTTP/1.1 keeps the connection unless told to close it; HTTP/1.0 only when told.
    let mut keep_alive = !close && (response.version == Some(1) || keep_alive);
    let body = if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Length(0)
    } else if coded {
        // A length beside a coding is a smuggling attempt or a broken server: read this
        // answer by its coding, and never reuse the connection.
        // HTTP/1.0 has no codings: the framing is faulty, and the connection not kept
        // either (RFC 9112, 6.1).
        keep_alive &= length.is_none() && chunked && response.version == Some(1);
        match chunked {
            true => Framing::Chunked,
            false => Framing::UntilClose,
        }
    } else if let Some(length) = length {
        Framing::Length(length)
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        body,
        keep_alive,
        len,
    }))
}

/// A chunked body being read: what is decoded so far, resumed after each read (a body
/// trickled in small reads is not decoded again from its start each time).
#[derive(Debug, Default)]
pub(super) struct ChunkedBody {
    body: Vec<u8>,
    /// Where the next chunk (or, once `last` is seen, the next trailer line) starts.
    at: usize,
    last: bool,
}

impl ChunkedBody {
    /// Reads on through `bytes` (the body's bytes so far, from its start): the body and
    /// the bytes it took (trailers included) once it is complete, `None` until then. More
    /// than `max` bytes of body is an error.
    pub(super) fn read(
        &mut self,
        bytes: &[u8],
        max: usize,
    ) -> Result<Option<(Vec<u8>, usize)>, BoxError> {
        while !self.last {
            let rest = &bytes[self.at..];
            // At least one hex digit (httparse would read an empty size as 0).
            match rest.first() {
                None => return Ok(None),
                Some(digit) if digit.is_ascii_hexdigit() => {}
                Some(_) => return Err("invalid chunk size".into()),
            }
            let (size_len, size) = match httparse::parse_chunk_size(rest) {
                Ok(httparse::Status::Complete(sized)) => sized,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err("invalid chunk size".into()),
            };
            if size == 0 {
                self.at += size_len;
                self.last = true;
                break;
            }
            let room = max - self.body.len();
            let size = match usize::try_from(size) {
                Ok(size) if size <= room => size,
                _ => return Err(format!("answer body longer than {max} bytes").into()),
            };
            let data = &rest[size_len..];
            match data.get(size..size + 2) {
                None => return Ok(None),
                Some(b"\r\n") => {}
                Some(_) => return Err("chunk not ended by CRLF".into()),
            }
            self.body.extend_from_slice(&data[..size]);
            self.at += size_len + size + 2;
        }
        // Trailer fields (read past, not used), then a blank line.
        loop {
            match bytes[self.at..].windows(2).position(|pair| pair == b"\r\n") {
                Some(0) => return Ok(Some((std::mem::take(&mut self.body), self.at + 2))),
                Some(line) => self.at += line + 2,
                None => return Ok(None),
            }
        }
    }
}

/// A `content-length` value: digits only (a list of equal values, as some proxies send,
/// is read as one).
fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for token in value.split(|&b| b == b',') {
        let digits = trim(token);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
        if length.is_some_and(|earlier| earlier != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// The comma-separated tokens of a field value, trimmed, empty ones left out.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}
