//! Readiness probes written by hand (HTTP GET, one DNS query over UDP), so that
//! checking a server needs neither curl nor dig on a bare machine.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

/// Status code of `GET path` on 127.0.0.1:port, or `None` if the server does
/// not answer HTTP yet.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
    stream.set_read_timeout(Some(TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(TIMEOUT)).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0_u8; 64];
    let mut len = 0;
    while len < head.len() {
        match stream.read(&mut head[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if head[..len].contains(&b'\n') {
            break;
        }
    }
    parse_status_line(&head[..len])
}

/// Extracts the status code from the start of an HTTP/1.x response.
pub fn parse_status_line(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// DNS record types the probe asks for.
pub const TYPE_A: u16 = 1;

/// What a DNS server said, reduced to what readiness checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// Response code: 0 `NOERROR`, 3 `NXDOMAIN`, ...
    pub rcode: u8,
    /// IPv4 addresses in the answer section.
    pub a: Vec<Ipv4Addr>,
}

/// Builds a recursive query for `name`/`qtype` with transaction `id`.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut msg = Vec::with_capacity(32 + name.len());
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&0x0100_u16.to_be_bytes()); // RD
    msg.extend_from_slice(&1_u16.to_be_bytes()); // QDCOUNT
    msg.extend_from_slice(&[0; 6]); // AN, NS, AR counts
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        // Labels are at most 63 bytes; ours are short constants, truncation would only corrupt a probe.
        let len = u8::try_from(label.len()).unwrap_or(63).min(63);
        msg.push(len);
        msg.extend_from_slice(&label.as_bytes()[..usize::from(len)]);
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1_u16.to_be_bytes()); // IN
    msg
}

fn read_u16(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// Skips a (possibly compressed) domain name; returns the offset after it.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

/// Parses a response to the query with transaction `id`.
pub fn decode_response(id: u16, msg: &[u8]) -> Option<DnsAnswer> {
    if read_u16(msg, 0)? != id {
        return None;
    }
    let flags = read_u16(msg, 2)?;
    if flags & 0x8000 == 0 {
        return None; // not a response
    }
    let rcode = u8::try_from(flags & 0x000F).ok()?;
    let qdcount = read_u16(msg, 4)?;
    let ancount = read_u16(msg, 6)?;
    let mut at = 12;
    for _ in 0..qdcount {
        at = skip_name(msg, at)? + 4;
    }
    let mut a = Vec::new();
    for _ in 0..ancount {
        at = skip_name(msg, at)?;
        let rtype = read_u16(msg, at)?;
        let rdlen = usize::from(read_u16(msg, at + 8)?);
        let rdata = msg.get(at + 10..at + 10 + rdlen)?;
        if rtype == TYPE_A && rdlen == 4 {
            a.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        at += 10 + rdlen;
    }
    Some(DnsAnswer { rcode, a })
}

/// Sends one UDP query to 127.0.0.1:port and waits briefly for the answer.
pub fn dns_query(port: u16, name: &str, qtype: u16) -> Option<DnsAnswer> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    // Transaction id: low bits of our port, good enough to pair a probe with its answer.
    let id = socket.local_addr().ok()?.port() ^ 0x5a5a;
    socket
        .send_to(&encode_query(id, name, qtype), (Ipv4Addr::LOCALHOST, port))
        .ok()?;
    let mut buf = [0_u8; 1500];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    decode_response(id, &buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_parsing() {
        let check = |input: &[u8], expect: Option<u16>| {
            assert_eq!(parse_status_line(input), expect, "{input:?}");
        };
        check(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", Some(200));
        check(b"HTTP/1.0 503 Service Unavailable\r\n", Some(503));
        check(b"SSH-2.0-OpenSSH\r\n", None);
        check(b"", None);
        check(b"HTTP/1.1 abc\r\n", None);
    }

    #[test]
    fn query_encoding_matches_wire_format() {
        let q = encode_query(0x1234, "a.bc.", TYPE_A);
        assert_eq!(
            q,
            vec![
                0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 1, 0,
                1
            ]
        );
    }

    fn response(id: u16, rcode: u8, answers: &[[u8; 4]]) -> Vec<u8> {
        let mut msg = encode_query(id, "x.test", TYPE_A);
        msg[2] = 0x81;
        msg[3] = 0x80 | rcode;
        msg[7] = u8::try_from(answers.len()).unwrap_or(0);
        for ip in answers {
            msg.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            msg.extend_from_slice(ip);
        }
        msg
    }

    #[test]
    fn response_decoding() {
        let ok = decode_response(7, &response(7, 0, &[[192, 0, 2, 1], [192, 0, 2, 9]]));
        assert_eq!(
            ok,
            Some(DnsAnswer {
                rcode: 0,
                a: vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 9)]
            })
        );
        let nx = decode_response(7, &response(7, 3, &[]));
        assert_eq!(
            nx,
            Some(DnsAnswer {
                rcode: 3,
                a: vec![]
            })
        );
        // Wrong id, a query instead of a response, and a truncated message are all rejected.
        assert_eq!(decode_response(8, &response(7, 0, &[])), None);
        assert_eq!(decode_response(7, &encode_query(7, "x.test", TYPE_A)), None);
        let mut cut = response(7, 0, &[[192, 0, 2, 1]]);
        cut.truncate(cut.len() - 2);
        assert_eq!(decode_response(7, &cut), None);
    }
}
