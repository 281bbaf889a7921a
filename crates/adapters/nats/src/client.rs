//! A minimal NATS client over one tokio TCP connection: the handshake (`INFO`,
//! `CONNECT`, `PING`/`PONG`) and request/reply through a one-shot inbox subscription.
//! That is all the JetStream API needs; the full SDK (`async-nats`) would bring a
//! second TLS and runtime stack for two request subjects.
//!
//! Every read is bounded: a control line by [`MAX_CONTROL_LINE`], a payload by the
//! server's `max_payload`, every call by the configured timeout. A connection whose call
//! timed out is not used again, since a late reply would still be in flight.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::NatsError;
use crate::proto::{self, Auth, MAX_CONTROL_LINE, Op, ServerInfo};

/// Where the NATS server is and how to log in.
///
/// `Debug` redacts the token and the password.
#[derive(Clone)]
pub struct NatsConfig {
    /// `host:port` or `nats://host:port` (plain TCP; TLS is not supported).
    pub address: String,
    /// Token authentication (`authorization { token }`).
    pub token: Option<String>,
    /// User for user/password authentication.
    pub user: Option<String>,
    /// Password for user/password authentication. Never logged.
    pub password: Option<String>,
    /// Limit for connecting and for each request: JetStream answers in milliseconds when
    /// it has a leader and not at all when it has none.
    pub timeout: Duration,
    /// The JetStream API prefix, `$JS.API` unless a JetStream domain or an account
    /// import moves it (`$JS.<domain>.API`).
    pub api_prefix: String,
}

impl NatsConfig {
    /// Settings without credentials, a 5 s timeout and the default API prefix.
    #[must_use]
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            token: None,
            user: None,
            password: None,
            timeout: Duration::from_secs(5),
            api_prefix: "$JS.API".to_owned(),
        }
    }

    /// `host:port` from the address.
    fn host_port(&self) -> Result<&str, NatsError> {
        let a = self.address.trim();
        let hp = a.strip_prefix("nats://").unwrap_or(a);
        let ok = !hp.contains("://")
            && !hp.contains('/')
            && hp
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if ok {
            Ok(hp)
        } else {
            Err(NatsError::InvalidAddress(self.address.clone()))
        }
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("NatsConfig")
            .field("address", &self.address)
            .field("token", &redact(&self.token))
            .field("user", &self.user)
            .field("password", &redact(&self.password))
            .field("timeout", &self.timeout)
            .field("api_prefix", &self.api_prefix)
            .finish()
    }
}

/// One connection to one NATS server.
pub struct NatsClient {
    address: String,
    stream: TcpStream,
    buf: Vec<u8>,
    info: ServerInfo,
    inbox: String,
    next_sid: u64,
    timeout: Duration,
    broken: bool,
}

impl fmt::Debug for NatsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsClient")
            .field("address", &self.address)
            .field("server", &self.info.server_name)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// One frame read: a control line, and for `MSG` its payload.
struct Frame {
    op: Op,
    payload: Vec<u8>,
}

impl NatsClient {
    /// Connects and logs in; answers once the server confirmed the login (`PONG`).
    pub async fn connect(config: &NatsConfig) -> Result<Self, NatsError> {
        let address = config.host_port()?.to_owned();
        let timeout = config.timeout;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(&address))
            .await
            .map_err(|_| NatsError::Timeout {
                what: format!("connect to {address}"),
                timeout_ms: timeout.as_millis(),
            })?
            .map_err(|source| NatsError::Io {
                address: address.clone(),
                source,
            })?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut client = Self {
            inbox: format!("_INBOX.sre{}x{nanos}", std::process::id()),
            address,
            stream,
            buf: Vec::new(),
            info: ServerInfo {
                server_id: String::new(),
                server_name: String::new(),
                version: String::new(),
                max_payload: 0,
                tls_required: false,
                auth_required: false,
                jetstream: false,
            },
            next_sid: 0,
            timeout,
            broken: false,
        };
        let r = tokio::time::timeout(timeout, client.handshake(config)).await;
        let what = format!("handshake with {}", client.address);
        client.settle(r, &what)?;
        Ok(client)
    }

    async fn handshake(&mut self, config: &NatsConfig) -> Result<(), NatsError> {
        // Before INFO there is no max_payload yet: a line bound is all there is.
        match self.read_frame().await?.op {
            Op::Info(info) => self.info = *info,
            other => {
                return Err(NatsError::Protocol(format!(
                    "expected INFO first, got {other:?}"
                )));
            }
        }
        if self.info.tls_required {
            return Err(NatsError::TlsRequired(self.address.clone()));
        }
        let auth = Auth {
            token: config.token.as_deref(),
            user: config.user.as_deref(),
            pass: config.password.as_deref(),
        };
        self.write(&proto::encode_connect(auth)).await?;
        loop {
            match self.read_frame().await?.op {
                Op::Pong => return Ok(()),
                Op::Ping => self.write(b"PONG\r\n").await?,
                Op::Err(m) => return Err(NatsError::Server(m)),
                Op::Info(info) => self.info = *info,
                Op::Ok | Op::Msg { .. } => {}
            }
        }
    }

    /// What the server said about itself (version, limits, JetStream).
    #[must_use]
    pub fn server_info(&self) -> &ServerInfo {
        &self.info
    }

    /// Sends `payload` to `subject` and waits for the one reply.
    pub async fn request(&mut self, subject: &str, payload: &[u8]) -> Result<Vec<u8>, NatsError> {
        proto::check_subject(subject)?;
        if payload.len() > self.info.max_payload {
            return Err(NatsError::TooLarge {
                size: payload.len(),
                max: self.info.max_payload,
            });
        }
        self.usable()?;
        let r = tokio::time::timeout(self.timeout, self.request_inner(subject, payload)).await;
        self.settle(r, &format!("request to {subject}"))
    }

    async fn request_inner(&mut self, subject: &str, payload: &[u8]) -> Result<Vec<u8>, NatsError> {
        self.next_sid += 1;
        let sid = self.next_sid;
        let inbox = format!("{}.{sid}", self.inbox);
        self.write(&proto::encode_request(subject, &inbox, sid, payload))
            .await?;
        loop {
            let frame = self.read_frame().await?;
            match frame.op {
                Op::Msg { sid: got, .. } if got == sid => return Ok(frame.payload),
                Op::Ping => self.write(b"PONG\r\n").await?,
                Op::Err(m) => return Err(NatsError::Server(m)),
                Op::Info(info) => self.info = *info,
                Op::Msg { .. } | Op::Pong | Op::Ok => {}
            }
        }
    }

    fn usable(&self) -> Result<(), NatsError> {
        if self.broken {
            return Err(NatsError::Protocol(format!(
                "connection to {} is unusable after an earlier failure",
                self.address
            )));
        }
        Ok(())
    }

    /// The result of a step run under the timeout; a step cut off leaves the stream
    /// mid-frame (a late reply may still come), so the connection is marked broken.
    fn settle<T>(
        &mut self,
        r: Result<Result<T, NatsError>, tokio::time::error::Elapsed>,
        what: &str,
    ) -> Result<T, NatsError> {
        r.unwrap_or_else(|_| {
            self.broken = true;
            Err(NatsError::Timeout {
                what: what.to_owned(),
                timeout_ms: self.timeout.as_millis(),
            })
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), NatsError> {
        let r = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        }
        .await;
        r.map_err(|source| {
            self.broken = true;
            NatsError::Io {
                address: self.address.clone(),
                source,
            }
        })
    }

    /// Reads more bytes into the buffer; end of stream is an error (the server hung up).
    async fn fill(&mut self) -> Result<(), NatsError> {
        self.buf.reserve(16 * 1024);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => {
                self.broken = true;
                Err(NatsError::Io {
                    address: self.address.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ),
                })
            }
            Ok(_) => Ok(()),
            Err(source) => {
                self.broken = true;
                Err(NatsError::Io {
                    address: self.address.clone(),
                    source,
                })
            }
        }
    }

    async fn read_frame(&mut self) -> Result<Frame, NatsError> {
        let line_end = loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            if self.buf.len() > MAX_CONTROL_LINE {
                self.broken = true;
                return Err(NatsError::Protocol(format!(
                    "control line longer than {MAX_CONTROL_LINE} bytes"
                )));
            }
            self.fill().await?;
        };
        let op = proto::parse_line(&self.buf[..line_end]).inspect_err(|_| self.broken = true)?;
        self.buf.drain(..line_end + 2);
        let Op::Msg { len, .. } = &op else {
            return Ok(Frame {
                op,
                payload: Vec::new(),
            });
        };
        let len = *len;
        // max_payload is 0 only before INFO, when no MSG can legally arrive.
        if len > self.info.max_payload {
            self.broken = true;
            return Err(NatsError::TooLarge {
                size: len,
                max: self.info.max_payload,
            });
        }
        while self.buf.len() < len + 2 {
            self.fill().await?;
        }
        if &self.buf[len..len + 2] != b"\r\n" {
            self.broken = true;
            return Err(NatsError::Protocol("payload not followed by CRLF".into()));
        }
        let payload = self.buf[..len].to_vec();
        self.buf.drain(..len + 2);
        Ok(Frame { op, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_port_with_an_optional_nats_scheme() {
        for ok in ["127.0.0.1:4222", "nats://nats.svc:4222", "[::1]:4222"] {
            assert!(NatsConfig::new(ok).host_port().is_ok(), "{ok}");
        }
        for bad in [
            "tls://nats:4222",
            "nats",
            "nats://nats:x",
            "http://h:1/p",
            ":4222",
        ] {
            assert!(NatsConfig::new(bad).host_port().is_err(), "{bad}");
        }
        assert_eq!(
            NatsConfig::new("nats://n:4222").host_port().ok(),
            Some("n:4222")
        );
    }

    #[test]
    fn debug_redacts_credentials() {
        let mut c = NatsConfig::new("n:4222");
        c.token = Some("very-secret-token".into());
        c.password = Some("hunter2".into());
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("very-secret") && !dbg.contains("hunter2"),
            "{dbg}"
        );
    }
}
