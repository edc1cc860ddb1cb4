//! One DNS question to a given server over UDP, for the addresses of a name (A, then
//! AAAA records): what [`DnsMembers::server`](super::DnsMembers::server) asks instead of
//! the system's resolver (a cluster's own DNS server, or one a test starts). An answer
//! comes from outside, so it is bounded: one datagram of at most 1,232 bytes, read within
//! a timeout, from the server asked, answering the question asked; every length in it
//! is checked before it is used, and a bad answer is an error, never a panic.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

/// The largest answer read (the size EDNS recommends; without EDNS a server sends 512
/// bytes at most).
const MAX_ANSWER: usize = 1232;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// The addresses `name` has at `server` (A and AAAA records, or those of one family:
/// `Some(true)` for IPv4), each question answered within `timeout`. A name the server
/// does not know has none.
pub(super) async fn addresses(
    server: SocketAddr,
    name: &str,
    family: Option<bool>,
    timeout: Duration,
) -> io::Result<Vec<IpAddr>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    let mut found = Vec::new();
    let kinds = match family {
        Some(true) => &[TYPE_A][..],
        Some(false) => &[TYPE_AAAA][..],
        None => &[TYPE_A, TYPE_AAAA][..],
    };
    for (i, &kind) in kinds.iter().enumerate() {
        let id = question_id(i);
        socket.send(&question(id, name, kind)?).await?;
        let mut answer = [0; MAX_ANSWER];
        let read = tokio::time::timeout(timeout, socket.recv(&mut answer))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no DNS answer in time"))??;
        found.extend(read_answer(&answer[..read], id, kind)?);
    }
    Ok(found)
}

/// An id for question `i` that an earlier answer would not match.
fn question_id(i: usize) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    (nanos as u16).wrapping_add(i as u16)
}

/// The question for `name`'s records of `kind`, recursion desired.
fn question(id: u16, name: &str, kind: u16) -> io::Result<Vec<u8>> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{why}: {name:?}"));
    let mut out = Vec::with_capacity(18 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("not a DNS name"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() > 12 + 255 {
        return Err(bad("DNS name too long"));
    }
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    Ok(out)
}

/// The addresses of `kind` an answer to question `id` holds.
fn read_answer(answer: &[u8], id: u16, kind: u16) -> io::Result<Vec<IpAddr>> {
    let bad =
        |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("bad DNS answer: {why}"));
    let mut reader = Reader {
        bytes: answer,
        at: 0,
    };
    let header = reader.take(12).ok_or_else(|| bad("short"))?;
    let number = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    if number(0) != id || header[2] & 0x80 == 0 {
        return Err(bad("not the answer to the question asked"));
    }
    match header[3] & 0x0f {
        0 => {}
        3 => return Ok(Vec::new()), // no such name
        code => return Err(bad(&format!("server failure (code {code})"))),
    }
    for _ in 0..number(4) {
        reader.skip_name().ok_or_else(|| bad("question"))?;
        reader.take(4).ok_or_else(|| bad("question"))?;
    }
    let mut found = Vec::new();
    for _ in 0..number(6) {
        reader.skip_name().ok_or_else(|| bad("record name"))?;
        let fixed = reader.take(10).ok_or_else(|| bad("record"))?;
        let record_kind = u16::from_be_bytes([fixed[0], fixed[1]]);
        let length = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = reader.take(length).ok_or_else(|| bad("record data"))?;
        match (record_kind, data.len()) {
            (TYPE_A, 4) if kind == TYPE_A => {
                found.push(IpAddr::from(<[u8; 4]>::try_from(data).unwrap_or_default()));
            }
            (TYPE_AAAA, 16) if kind == TYPE_AAAA => {
                found.push(IpAddr::from(<[u8; 16]>::try_from(data).unwrap_or_default()));
            }
            _ => {} // a CNAME on the way, or another kind: not an address
        }
    }
    Ok(found)
}

/// Reads an answer front to back, never past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(taken)
    }

    /// Skips a name: labels up to an empty one, or up to a pointer (2 bytes).
    fn skip_name(&mut self) -> Option<()> {
        for _ in 0..128 {
            let length = *self.take(1)?.first()?;
            match length {
                0 => return Some(()),
                l if l & 0xc0 == 0xc0 => return self.take(1).map(drop),
                l if l & 0xc0 == 0 => {
                    self.take(usize::from(l))?;
                }
                _ => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to question `id` for `name`, with these records (kind, data), each
    /// naming the question's name by a pointer.
    fn answer(id: u16, name: &str, records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = question(id, name, TYPE_A).unwrap();
        out[2] = 0x81;
        out[3] = 0x80;
        out[7] = records.len() as u8;
        for (kind, data) in records {
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn addresses_are_read_and_other_records_skipped() {
        let cname: &[u8] = &[3, b'f', b'o', b'o', 0];
        let records = [
            (5, cname),
            (TYPE_A, &[127, 0, 0, 2][..]),
            (TYPE_A, &[127, 0, 0, 3][..]),
        ];
        let read = read_answer(&answer(7, "m.test", &records), 7, TYPE_A).unwrap();
        let expected: Vec<IpAddr> = vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into()];
        assert_eq!(read, expected);
    }

    #[test]
    fn answers_that_are_not_to_the_question_or_cut_short_are_refused() {
        let good = answer(7, "m.test", &[(TYPE_A, &[127, 0, 0, 2])]);
        assert!(read_answer(&good, 8, TYPE_A).is_err(), "another id");
        for end in 0..good.len() {
            assert!(
                read_answer(&good[..end], 7, TYPE_A).is_err(),
                "cut at {end}"
            );
        }
        let mut looping = good.clone();
        looping[12] = 0x40; // a label length no name has
        assert!(read_answer(&looping, 7, TYPE_A).is_err());
    }

    #[test]
    fn names_are_checked_before_they_are_asked() {
        assert!(question(1, "a..b", TYPE_A).is_err());
        assert!(question(1, &"x".repeat(64), TYPE_A).is_err());
        assert!(question(1, &["a"; 200].join("."), TYPE_A).is_err());
        assert!(question(1, "members.default.svc.cluster.local.", TYPE_A).is_ok());
    }
}
