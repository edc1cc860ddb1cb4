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

/// The longest answer head read, a `100 Continue` before it included (a ringlimit
/// owner's is about 100 bytes).
pub(super) const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Header lines read in a head at most.
const MAX_HEADERS: usize = 32;

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `POST /check` to `member` with `body`, marked as forwarded and carrying
/// `authorization` if given: the whole request, written in one go. An error if `member`
/// cannot be a `host` header.
pub(super) fn batch_request(
    member: &str,
    authorization: Option<&HeaderValue>,
    body: &[u8],
) -> Result<Vec<u8>, BoxError> {
    // What `HeaderValue` accepts: no control characters but tab.
    if !member
        .bytes()
        .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
    {
        return Err(format!("{member:?} is not a valid host header").into());
    }
    let mut request = Vec::with_capacity(160 + member.len() + body.len());
    for part in [&b"POST "[..], CHECK_PATH.as_bytes(), b" HTTP/1.1\r\nhost: "] {
        request.extend_from_slice(part);
    }
    request.extend_from_slice(member.as_bytes());
    for part in [&b"\r\n"[..], FORWARDED.as_str().as_bytes(), b": 1\r\n"] {
        request.extend_from_slice(part);
    }
    if let Some(authorization) = authorization {
        request.extend_from_slice(b"authorization: ");
        request.extend_from_slice(authorization.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"content-type: text/plain\r\ncontent-length: ");
    request.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    request.extend_from_slice(b"\r\n\r\n");
    request.extend_from_slice(body);
    Ok(request)
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

/// The head at the start of `bytes`; `None` while it is incomplete.
pub(super) fn head(bytes: &[u8]) -> Result<Option<Head>, BoxError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes)? {
        httparse::Status::Complete(len) if len <= MAX_HEAD_BYTES => len,
        httparse::Status::Partial if bytes.len() < MAX_HEAD_BYTES => return Ok(None),
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
        keep_alive &= length.is_none() && chunked;
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

/// The body at the start of `bytes` in chunked coding, and the bytes it took (trailers
/// included); `None` while it is incomplete. More than `max` bytes of body is an error.
pub(super) fn chunked(bytes: &[u8], max: usize) -> Result<Option<(Vec<u8>, usize)>, BoxError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&bytes[at..]) {
            Ok(httparse::Status::Complete(sized)) => sized,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("invalid chunk size".into()),
        };
        at += size_len;
        if size == 0 {
            break;
        }
        if size > (max - body.len()) as u64 {
            return Err(format!("answer body longer than {max} bytes").into());
        }
        let end = at + size as usize;
        match bytes.get(end..end + 2) {
            None => return Ok(None),
            Some(b"\r\n") => {}
            Some(_) => return Err("chunk not ended by CRLF".into()),
        }
        body.extend_from_slice(&bytes[at..end]);
        at = end + 2;
    }
    // Trailer fields (read past, not used), then a blank line.
    loop {
        match bytes[at..].windows(2).position(|pair| pair == b"\r\n") {
            Some(0) => return Ok(Some((body, at + 2))),
            Some(line) => at += line + 2,
            None => return Ok(None),
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
