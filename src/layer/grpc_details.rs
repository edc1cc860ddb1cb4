//! The `grpc-status-details-bin` of a rejection: a `google.rpc.Status` with a
//! `google.rpc.RetryInfo` in its details, the form in which gRPC clients read a retry
//! delay. Encoded by hand (a few fields of protobuf, then unpadded base64, as gRPC sends
//! binary headers) so the crate needs no protobuf library.

use std::time::Duration;

const RETRY_INFO: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status { code, message, details: [Any(RetryInfo { retry_delay })] }`,
/// base64-encoded without padding.
pub(super) fn status_details(code: u8, message: &str, retry_delay: Option<Duration>) -> String {
    let mut status = Vec::with_capacity(96);
    varint_field(&mut status, 1, u64::from(code));
    bytes_field(&mut status, 2, message.as_bytes());
    if let Some(delay) = retry_delay {
        let mut duration = Vec::with_capacity(16);
        varint_field(&mut duration, 1, delay.as_secs());
        if delay.subsec_nanos() > 0 {
            varint_field(&mut duration, 2, u64::from(delay.subsec_nanos()));
        }
        let mut retry_info = Vec::with_capacity(20);
        bytes_field(&mut retry_info, 1, &duration);
        let mut any = Vec::with_capacity(64);
        bytes_field(&mut any, 1, RETRY_INFO.as_bytes());
        bytes_field(&mut any, 2, &retry_info);
        bytes_field(&mut status, 3, &any);
    }
    base64_unpadded(&status)
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A varint field (wire type 0); zero is left out, as proto3 does.
fn varint_field(out: &mut Vec<u8>, field: u8, value: u64) {
    if value != 0 {
        out.push(field << 3);
        varint(out, value);
    }
}

/// A length-delimited field (wire type 2).
fn bytes_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push((field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn base64_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_without_padding() {
        assert_eq!(base64_unpadded(b""), "");
        assert_eq!(base64_unpadded(b"f"), "Zg");
        assert_eq!(base64_unpadded(b"fo"), "Zm8");
        assert_eq!(base64_unpadded(b"foo"), "Zm9v");
        assert_eq!(base64_unpadded(b"foob"), "Zm9vYg");
        assert_eq!(base64_unpadded(&[0xfb, 0xff]), "+/8");
    }

    #[test]
    fn a_status_with_its_retry_delay_is_the_protobuf_clients_read() {
        // Status { code: 8, message: "x", details: [Any { type_url, value: RetryInfo {
        // retry_delay: Duration { seconds: 300, nanos: 0 } } }] }
        let mut expected = vec![0x08, 8, 0x12, 1, b'x', 0x1a];
        let duration = [0x08, 0xac, 0x02];
        let retry_info = [&[0x0a, duration.len() as u8][..], &duration].concat();
        let any = [
            &[0x0a, RETRY_INFO.len() as u8][..],
            RETRY_INFO.as_bytes(),
            &[0x12, retry_info.len() as u8],
            &retry_info,
        ]
        .concat();
        expected.push(any.len() as u8);
        expected.extend_from_slice(&any);
        let encoded = status_details(8, "x", Some(Duration::from_secs(300)));
        assert_eq!(encoded, base64_unpadded(&expected));
        assert_eq!(
            status_details(14, "", None),
            base64_unpadded(&[0x08, 14, 0x12, 0])
        );
    }
}
