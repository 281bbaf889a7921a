//! Shared value types of the HTTP witness protocol: the bearer token and the lease name.

use crate::error::{Error, Result};
use std::fmt;

/// The shared secret a controller presents to the HTTP witness.
///
/// A newtype so that it can never reach a log line by accident: `Debug` prints a
/// placeholder and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Checks the token against RFC 6750's `b64token` grammar, so that it always fits in
    /// an `Authorization` header and a mistyped secret fails at start, not on first use.
    pub fn new(token: impl Into<String>) -> Result<Self> {
        let token = token.into();
        if token.is_empty() {
            return Err(Error::InvalidToken { reason: "empty" });
        }
        let body = token.trim_end_matches('=');
        if body.is_empty() {
            return Err(Error::InvalidToken {
                reason: "only padding",
            });
        }
        if !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        {
            return Err(Error::InvalidToken {
                reason: "characters outside RFC 6750 b64token",
            });
        }
        Ok(Self(token))
    }

    /// The secret itself, for building the header or comparing; crate-private so that
    /// callers cannot print it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// The name of one lease at an HTTP witness: one URL path segment.
///
/// Restricted to `[A-Za-z0-9._-]` so that it never needs percent-encoding and can never
/// walk to another resource (`..`, `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseName(String);

impl LeaseName {
    /// Longest accepted name, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates a lease name.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(Self(name))
        } else {
            Err(Error::InvalidLeaseName { name })
        }
    }

    /// The name as it appears in the URL.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_grammar() {
        let check = |t: &str, ok: bool| assert_eq!(BearerToken::new(t).is_ok(), ok, "{t:?}");
        check("abc-DEF_0.9~+/==", true);
        check("s3cr3t", true);
        check("", false);
        check("==", false);
        check("has space", false);
        check("new\nline", false);
        check("quote\"", false);
        check("a=b", false);
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = BearerToken::new("hunter2").expect("valid token");
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn lease_names() {
        let check = |n: &str, ok: bool| assert_eq!(LeaseName::new(n).is_ok(), ok, "{n:?}");
        check("failover", true);
        check("eu-us.prod_1", true);
        check("", false);
        check(".", false);
        check("..", false);
        check("a/b", false);
        check("a%2Fb", false);
        check("ümlaut", false);
        check(&"x".repeat(128), true);
        check(&"x".repeat(129), false);
    }
}
