//! `sre failover status|approve|promote|demote`: talks to a failover-controller's
//! control endpoint (`/v1`, bearer token). `sre` stays lean (it is what `sre drill`
//! compiles), so this is a tiny std-only HTTP/1.1 client for `http://host:port`: reach a
//! TLS-only or in-cluster controller through `kubectl port-forward` or a sidecar.

use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `sre failover`.
#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// The controller's listen address, e.g. `http://127.0.0.1:9090` (port-forwarded).
    #[arg(long, env = "SRE_FAILOVER_ENDPOINT")]
    endpoint: String,
    /// File holding the control token (the controller's `control.token_file`).
    #[arg(long, env = "SRE_FAILOVER_TOKEN_FILE")]
    token_file: PathBuf,
    /// Your name, recorded with the approval or command (default: $USER).
    #[arg(long = "as", env = "USER", default_value = "")]
    who: String,
    #[command(subcommand)]
    command: FailoverCommand,
}

/// What to ask the controller.
#[derive(Debug, Subcommand)]
enum FailoverCommand {
    /// Role, lease, quorum answers and the pending approval.
    Status,
    /// Approve a promotion plan (semi-automatic mode; not the controller itself).
    Approve {
        /// The plan id from `status` or the controller's log.
        plan_id: String,
    },
    /// Promote this region (manual mode; the safety rules still apply).
    Promote,
    /// Step down: fence, withdraw the layers, release the lease.
    Demote,
}

/// One request; returns the status code and body.
fn call(
    endpoint: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_owned());
    let host = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| bad("endpoint must be http://host:port (TLS: use kubectl port-forward)"))?
        .trim_end_matches('/');
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    // One write of the whole request: `write!` on a socket sends each piece separately.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    s.take(1 << 20).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("malformed response"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("malformed status line"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        code,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_owned()
        },
    ))
}

/// Joins a chunked body (sizes in hex, each chunk followed by CRLF).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Runs the subcommand: 0 on 2xx, 64 bad flags or token file, 69 unreachable, 1 refused.
pub fn run(args: &FailoverArgs) -> ExitCode {
    let token = match std::fs::read_to_string(&args.token_file) {
        Ok(t) => t.trim().to_owned(),
        Err(e) => {
            eprintln!("--token-file {}: {e}", args.token_file.display());
            return ExitCode::from(64);
        }
    };
    let who = serde_json::Value::from(args.who.as_str());
    let (method, path, body) = match &args.command {
        FailoverCommand::Status => ("GET", "/v1/status".to_owned(), String::new()),
        FailoverCommand::Approve { plan_id } => (
            "POST",
            format!("/v1/approvals/{plan_id}"),
            format!(r#"{{"approver":{who}}}"#),
        ),
        FailoverCommand::Promote => (
            "POST",
            "/v1/commands/promote".into(),
            format!(r#"{{"by":{who}}}"#),
        ),
        FailoverCommand::Demote => (
            "POST",
            "/v1/commands/demote".into(),
            format!(r#"{{"by":{who}}}"#),
        ),
    };
    match call(&args.endpoint, method, &path, &token, &body) {
        Ok((code, body)) => {
            let pretty = serde_json::from_str::<serde_json::Value>(&body)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or(body);
            println!("{pretty}");
            if (200..300).contains(&code) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("{e}");
            ExitCode::from(64)
        }
        Err(e) => {
            eprintln!("{}: {e}", args.endpoint);
            ExitCode::from(69)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one request with `reply`, returning what it received.
    fn serve_once(reply: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let h = std::thread::spawn(move || {
            let Ok((mut s, _)) = l.accept() else {
                return String::new();
            };
            // Read the whole request (headers + Content-Length body) before replying:
            // closing with unread bytes would reset the connection under the client.
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req);
                let complete = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    body.len() >= len
                });
                if n == 0 || complete {
                    break;
                }
            }
            let _ = s.write_all(reply.as_bytes());
            String::from_utf8_lossy(&req).into_owned()
        });
        (format!("http://{addr}"), h)
    }

    #[test]
    fn sends_method_path_token_and_body_and_reads_the_reply() {
        let (url, h) =
            serve_once("HTTP/1.1 202 Accepted\r\ncontent-length: 13\r\n\r\n{\"ok\":\"yes\"}\n");
        let (code, body) = call(
            &url,
            "POST",
            "/v1/commands/promote",
            "tok",
            r#"{"by":"ana"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((code, body.trim()), (202, r#"{"ok":"yes"}"#));
        let got = h.join().unwrap_or_default();
        assert!(
            got.starts_with("POST /v1/commands/promote HTTP/1.1\r\n"),
            "{got}"
        );
        assert!(got.contains("Authorization: Bearer tok\r\n"), "{got}");
        assert!(
            got.contains("Content-Length: 12\r\n") && got.ends_with(r#"{"by":"ana"}"#),
            "{got}"
        );
    }

    #[test]
    fn chunked_replies_and_bad_endpoints() {
        let (url, h) = serve_once(
            "HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        );
        let r = call(&url, "GET", "/v1/status", "x", "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r, (401, r#"{"a":1}"#.to_owned()));
        let _ = h.join();
        let e = call("https://x:1", "GET", "/", "t", "")
            .err()
            .map(|e| e.kind());
        assert_eq!(e, Some(std::io::ErrorKind::InvalidInput));
    }
}
