use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, Uri};
use proptest::prelude::*;

use super::super::peer_client::PeerClient;
use super::{BatchHead, BoxError, ChunkedBody, Framing, Head, MAX_HEAD_BYTES};
use crate::protocol::PeerSecret;

fn head(bytes: &[u8]) -> Result<Option<Head>, BoxError> {
    super::head(bytes, MAX_HEAD_BYTES)
}

fn parsed(text: &str) -> Head {
    head(text.as_bytes()).unwrap().expect("a whole head")
}

fn chunked(bytes: &[u8], max: usize) -> Result<Option<(Vec<u8>, usize)>, BoxError> {
    ChunkedBody::default().read(bytes, max)
}

fn batch_request(
    member: &str,
    authorization: Option<&HeaderValue>,
    body: &[u8],
) -> Result<Vec<u8>, BoxError> {
    Ok(BatchHead::new(member, authorization)?.request(body))
}

/// The fields of a request `text`, and where its body starts.
fn fields(text: &[u8]) -> (Vec<(String, String)>, usize) {
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(text).unwrap() {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => panic!("incomplete: {text:?}"),
    };
    assert_eq!((parsed.method, parsed.path), (Some("POST"), Some("/check")));
    let fields = parsed.headers.iter().map(|h| {
        let value = std::str::from_utf8(h.value).unwrap();
        (h.name.to_owned(), value.to_owned())
    });
    (fields.collect(), len)
}

#[test]
fn a_batch_request_is_one_post_to_check_that_a_server_reads_back() {
    let secret = HeaderValue::from_static("Bearer s3cret");
    let request = batch_request("127.0.0.1:7001", Some(&secret), b"P a\nP b\n").unwrap();
    let (fields, len) = fields(&request);
    let field = |name: &str| {
        let found = fields.iter().find(|(n, _)| n == name);
        found.map(|(_, value)| value.as_str())
    };
    assert_eq!(field("host"), Some("127.0.0.1:7001"));
    assert_eq!(field("x-ringlimit-forwarded"), Some("1"));
    assert_eq!(field("authorization"), Some("Bearer s3cret"));
    assert_eq!(field("content-type"), Some("text/plain"));
    assert_eq!(field("content-length"), Some("8"));
    assert_eq!(&request[len..], b"P a\nP b\n");

    let plain = batch_request("owner:1", None, b"").unwrap();
    assert!(!String::from_utf8(plain).unwrap().contains("authorization"));
}

// Two paths write forwards (the pooled client's for single checks and handoffs, this
// one for batches): they must not drift apart in the mark and the secret.
#[test]
fn a_batch_carries_every_field_a_single_forward_does() {
    let secret = PeerSecret::new("s3cret").unwrap();
    let client = PeerClient::new(Duration::from_secs(1)).with_secret(&secret);
    let uri = Ok(Uri::from_static("http://owner:1/check"));
    let single = client
        .forwarded(Method::POST, "owner:1", uri, Bytes::from_static(b"P a\n"))
        .unwrap();
    let request = batch_request("owner:1", client.authorization(), b"P a\n").unwrap();
    let (batch, _) = fields(&request);
    assert!(!single.headers().is_empty());
    for (name, value) in single.headers() {
        let value = value.to_str().unwrap();
        assert!(
            batch.iter().any(|(n, v)| n == name.as_str() && v == value),
            "{name}: {value} missing from {batch:?}"
        );
    }
}

#[test]
fn a_member_that_cannot_be_a_host_header_is_refused() {
    for member in ["a\r\nx-evil: 1", "a\nb", "a\0b"] {
        assert!(batch_request(member, None, b"P a\n").is_err(), "{member:?}");
    }
}

#[test]
fn a_head_says_its_status_framing_and_whether_the_connection_stays() {
    let owner = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\r\n";
    let expected = Head {
        status: StatusCode::OK,
        body: Framing::Length(12),
        keep_alive: true,
        len: owner.len(),
    };
    assert_eq!(parsed(owner), expected);
    let cases = [
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Framing::Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
            Framing::Length(3),
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nConnection: upgrade, Close\r\nContent-Length: 3\r\n\r\n",
            Framing::Length(3),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n",
            Framing::Length(3),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n",
            Framing::Length(3),
            true,
        ),
        ("HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose, false),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            Framing::UntilClose,
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Framing::Chunked,
            true,
        ),
        // Both: read by the coding, never kept.
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            Framing::Chunked,
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
            Framing::Length(3),
            true,
        ),
        ("HTTP/1.1 204 No Content\r\n\r\n", Framing::Length(0), true),
        ("HTTP/1.1 100 Continue\r\n\r\n", Framing::Length(0), true),
        (
            "HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\n",
            Framing::Length(9),
            true,
        ),
    ];
    for (text, body, keep_alive) in cases {
        let head = parsed(text);
        assert_eq!((head.body, head.keep_alive), (body, keep_alive), "{text:?}");
        assert_eq!(head.len, text.len(), "{text:?}");
    }
}

#[test]
fn a_head_in_part_is_waited_for_and_a_bad_one_refused() {
    let whole = "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n";
    for end in 0..whole.len() {
        assert_eq!(head(&whole.as_bytes()[..end]).unwrap(), None, "{end} bytes");
    }
    let refused = [
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
    ];
    for text in refused {
        assert!(head(text.as_bytes()).is_err(), "{text:?}");
    }
}

#[test]
fn a_head_is_bounded_in_length_and_fields() {
    let endless = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
    assert!(head(endless.as_bytes()).is_err(), "never ends");
    let long = format!(
        "HTTP/1.1 200 OK\r\nx: {}\r\n\r\n",
        "a".repeat(MAX_HEAD_BYTES)
    );
    assert!(head(long.as_bytes()).is_err(), "ends past the cap");
    let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "x: 1\r\n".repeat(40));
    assert!(head(many.as_bytes()).is_err(), "too many fields");
}

#[test]
fn a_chunked_body_reads_whole_with_its_trailers() {
    let text = b"4\r\n200 \r\n7;ext=1\r\n1 0 100\r\n0\r\nx-trailer: 1\r\n\r\nnext";
    let (body, used) = chunked(text, 64).unwrap().unwrap();
    assert_eq!(
        (body.as_slice(), used),
        (&b"200 1 0 100"[..], text.len() - 4)
    );
    assert_eq!(chunked(b"0\r\n\r\n", 64).unwrap(), Some((vec![], 5)));
}

#[test]
fn a_chunked_body_is_bounded_and_checked() {
    assert!(chunked(b"41\r\n", 64).is_err(), "a chunk past the cap");
    assert!(
        chunked(b"20\r\n", 64).unwrap().is_none(),
        "within it: waited for"
    );
    let two = format!("20\r\n{0}\r\n21\r\n{0}", "a".repeat(32));
    assert!(
        chunked(two.as_bytes(), 64).is_err(),
        "chunks past the cap together"
    );
    assert!(
        chunked(b"1\r\nab\r\n0\r\n\r\n", 64).is_err(),
        "a chunk longer than said"
    );
    assert!(chunked(b"z\r\n", 64).is_err(), "no size");
    assert!(chunked(b"\r\n\r\n", 64).is_err(), "an empty size");
    assert!(
        chunked(b";x\r\n\r\n", 64).is_err(),
        "an extension and no size"
    );
    assert!(
        chunked(b"ffffffffffffffffff\r\n", 64).is_err(),
        "a size that overflows"
    );
}

proptest! {
    // Any body, cut into any chunks, reads back whole, and only once it is all there,
    // whether read at once or resumed after every byte.
    #[test]
    fn a_chunked_body_reads_back_from_any_cut(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        cuts in proptest::collection::vec(1usize..40, 0..10),
    ) {
        let mut encoded = Vec::new();
        let mut rest = &body[..];
        for cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
            let (chunk, after) = rest.split_at((*cut).min(rest.len()));
            if !chunk.is_empty() {
                encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                encoded.extend_from_slice(chunk);
                encoded.extend_from_slice(b"\r\n");
            }
            rest = after;
        }
        encoded.extend_from_slice(b"0\r\n\r\n");
        prop_assert_eq!(chunked(&encoded, 200).unwrap(), Some((body.clone(), encoded.len())));
        // One decoder fed a byte more each time, as reads would: nothing until the end.
        let mut decoder = ChunkedBody::default();
        for end in 0..encoded.len() {
            prop_assert_eq!(decoder.read(&encoded[..end], 200).unwrap(), None);
            prop_assert_eq!(chunked(&encoded[..end], 200).unwrap(), None);
        }
        prop_assert_eq!(decoder.read(&encoded, 200).unwrap(), Some((body, encoded.len())));
    }
}
