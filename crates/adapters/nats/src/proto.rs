//! The NATS client protocol's text framing, without IO: parsing the server's control
//! lines (`INFO`, `MSG`, `PING`, `PONG`, `+OK`, `-ERR`) and encoding ours (`CONNECT`,
//! `SUB`, `UNSUB`, `PUB`). Kept pure so that every odd line a server can send is a unit
//! test, not a network test.

use serde::Deserialize;
use serde_json::json;

use crate::error::NatsError;

/// The longest control line accepted: a server never sends more than a few hundred
/// bytes outside `INFO`, and an unbounded line would let a broken peer grow our buffer.
pub(crate) const MAX_CONTROL_LINE: usize = 64 * 1024;

/// The server's `INFO`: what it is and the limits it enforces.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerInfo {
    /// The server's unique id.
    #[serde(default)]
    pub server_id: String,
    /// The configured `server_name`.
    #[serde(default)]
    pub server_name: String,
    /// The server version, e.g. `2.9.10`.
    #[serde(default)]
    pub version: String,
    /// The largest payload the server accepts (and sends); bounds our reads and writes.
    #[serde(default = "default_max_payload")]
    pub max_payload: usize,
    /// The server wants TLS, which this client does not speak.
    #[serde(default)]
    pub tls_required: bool,
    /// The server wants credentials in `CONNECT`.
    #[serde(default)]
    pub auth_required: bool,
    /// JetStream is enabled on this server.
    #[serde(default)]
    pub jetstream: bool,
}

const fn default_max_payload() -> usize {
    1024 * 1024
}

/// One control line from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Info(Box<ServerInfo>),
    Msg {
        subject: String,
        sid: u64,
        reply: Option<String>,
        len: usize,
    },
    Ping,
    Pong,
    Ok,
    Err(String),
}

fn protocol(line: &str) -> NatsError {
    NatsError::Protocol(format!("unexpected line {:?}", truncate(line, 120)))
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Parses one control line (without its `\r\n`).
pub(crate) fn parse_line(line: &[u8]) -> Result<Op, NatsError> {
    let line = std::str::from_utf8(line)
        .map_err(|_| NatsError::Protocol("control line is not UTF-8".into()))?;
    let (verb, rest) = line
        .split_once([' ', '\t'])
        .map_or((line, ""), |(v, r)| (v, r.trim()));
    match verb.to_ascii_uppercase().as_str() {
        "INFO" => serde_json::from_str::<ServerInfo>(rest)
            .map(|i| Op::Info(Box::new(i)))
            .map_err(|e| NatsError::Protocol(format!("INFO is not valid JSON: {e}"))),
        "MSG" => parse_msg(rest).ok_or_else(|| protocol(line)),
        "PING" => Ok(Op::Ping),
        "PONG" => Ok(Op::Pong),
        "+OK" => Ok(Op::Ok),
        "-ERR" => Ok(Op::Err(rest.trim_matches('\'').to_owned())),
        _ => Err(protocol(line)),
    }
}

/// `MSG <subject> <sid> [reply-to] <#bytes>`
fn parse_msg(args: &str) -> Option<Op> {
    let parts: Vec<&str> = args.split_ascii_whitespace().collect();
    let (subject, sid, reply, len) = match parts.as_slice() {
        [s, sid, len] => (*s, *sid, None, *len),
        [s, sid, reply, len] => (*s, *sid, Some((*reply).to_owned()), *len),
        _ => return None,
    };
    Some(Op::Msg {
        subject: subject.to_owned(),
        sid: sid.parse().ok()?,
        reply,
        len: len.parse().ok()?,
    })
}

/// Credentials sent in `CONNECT`.
#[derive(Clone, Copy, Default)]
pub(crate) struct Auth<'a> {
    pub token: Option<&'a str>,
    pub user: Option<&'a str>,
    pub pass: Option<&'a str>,
}

/// `CONNECT {...}\r\nPING\r\n`: without echo of our own messages, without headers (this
/// client never sends any), non-verbose (no `+OK` per line); the `PING` makes the server
/// answer `PONG` once it accepted the connection, or `-ERR` when it did not.
pub(crate) fn encode_connect(auth: Auth<'_>) -> Vec<u8> {
    let mut c = json!({
        "verbose": false,
        "pedantic": false,
        "tls_required": false,
        "headers": false,
        "echo": false,
        "protocol": 1,
        "lang": "rust-sre",
        "version": env!("CARGO_PKG_VERSION"),
        "name": "sre-adapter-nats",
    });
    if let Some(t) = auth.token {
        c["auth_token"] = json!(t);
    }
    if let Some(u) = auth.user {
        c["user"] = json!(u);
    }
    if let Some(p) = auth.pass {
        c["pass"] = json!(p);
    }
    format!("CONNECT {c}\r\nPING\r\n").into_bytes()
}

/// `SUB <subject> <sid>` and `UNSUB <sid> 1` (the server drops it after one reply), then
/// `PUB <subject> <reply> <len>` with the payload: one request in one write.
pub(crate) fn encode_request(subject: &str, inbox: &str, sid: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "SUB {inbox} {sid}\r\nUNSUB {sid} 1\r\nPUB {subject} {inbox} {}\r\n",
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

/// A subject we send: non-empty, printable ASCII, no whitespace (which would split the
/// protocol line), no empty token.
pub(crate) fn check_subject(subject: &str) -> Result<(), NatsError> {
    let ok = !subject.is_empty()
        && subject.bytes().all(|b| b.is_ascii_graphic())
        && subject.split('.').all(|t| !t.is_empty());
    if ok {
        Ok(())
    } else {
        Err(NatsError::InvalidName(subject.to_owned()))
    }
}

/// A stream or consumer name, which becomes one subject token of a JetStream API
/// subject: no `.`, `*`, `>` or whitespace.
pub(crate) fn check_name(name: &str) -> Result<(), NatsError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'));
    if ok {
        Ok(())
    } else {
        Err(NatsError::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_parse_by_verb_case_insensitively() {
        let info = parse_line(
            br#"INFO {"server_id":"X","server_name":"n1","version":"2.9.10","max_payload":1048576,"jetstream":true}"#,
        )
        .expect("info");
        let Op::Info(i) = info else {
            panic!("{info:?}")
        };
        assert_eq!(
            (i.server_name.as_str(), i.max_payload, i.jetstream),
            ("n1", 1_048_576, true)
        );
        assert!(!i.tls_required);
        assert_eq!(parse_line(b"PING").expect("ping"), Op::Ping);
        assert_eq!(parse_line(b"pong").expect("pong"), Op::Pong);
        assert_eq!(parse_line(b"+OK").expect("ok"), Op::Ok);
        assert_eq!(
            parse_line(b"-ERR 'Authorization Violation'").expect("err"),
            Op::Err("Authorization Violation".into())
        );
        assert_eq!(
            parse_line(b"MSG _INBOX.a.1 1 42").expect("msg"),
            Op::Msg {
                subject: "_INBOX.a.1".into(),
                sid: 1,
                reply: None,
                len: 42
            }
        );
        assert_eq!(
            parse_line(b"MSG foo  7 reply.to 0").expect("msg with reply"),
            Op::Msg {
                subject: "foo".into(),
                sid: 7,
                reply: Some("reply.to".into()),
                len: 0
            }
        );
    }

    #[test]
    fn odd_lines_are_protocol_errors_not_guesses() {
        for bad in [
            &b"MSG foo"[..],
            b"MSG foo x 3",
            b"MSG foo 1 -3",
            b"MSG a b c d e",
            b"HMSG foo 1 10 20",
            b"INFO {not json",
            b"HELLO",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(parse_line(bad), Err(NatsError::Protocol(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn requests_subscribe_unsubscribe_after_one_and_publish_with_the_length() {
        let got = encode_request("$JS.API.STREAM.INFO.S", "_INBOX.x.3", 3, b"{}");
        assert_eq!(
            got,
            b"SUB _INBOX.x.3 3\r\nUNSUB 3 1\r\nPUB $JS.API.STREAM.INFO.S _INBOX.x.3 2\r\n{}\r\n"
        );
        let connect = String::from_utf8(encode_connect(Auth {
            token: Some("t\"ok"),
            ..Auth::default()
        }))
        .expect("utf8");
        assert!(connect.starts_with("CONNECT {") && connect.ends_with("}\r\nPING\r\n"));
        assert!(connect.contains(r#""auth_token":"t\"ok""#), "{connect}");
        assert!(connect.contains(r#""verbose":false"#) && connect.contains(r#""protocol":1"#));
    }

    #[test]
    fn names_that_would_break_a_subject_are_refused() {
        assert!(check_name("ORDERS").is_ok() && check_name("billing-v2_1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a\r\nPUB x 1", "ä"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_subject("orders.new").is_ok());
        for bad in ["", "a..b", "a b", ".a", "a\n"] {
            assert!(check_subject(bad).is_err(), "{bad:?}");
        }
    }
}
