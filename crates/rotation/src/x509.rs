//! The validity window of an X.509 certificate, read from PEM.
//!
//! The observe-only classes (SPIRE SVIDs, cert-manager certificates) are rotated by
//! another system; what tells whether that system is working is the certificate it last
//! wrote: its `notBefore` (the age: a healthy SPIRE re-issues at half the lifetime) and
//! its `notAfter` (the alert). Only those two fields and the serial number are needed, so
//! this is a small DER walker over the first certificate of a PEM file (the leaf, as
//! SPIRE's `svid.pem` and cert-manager's `tls.crt` put it) rather than a full X.509
//! parser: nothing here checks a signature or trusts the contents, it only reads dates.
//!
//! Every malformed input is a typed [`X509Error`] naming what was wrong; nothing panics
//! (a property test feeds random and truncated bytes).

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use thiserror::Error;

/// What a certificate says about its own lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertValidity {
    /// Start of validity (the issue time, for every issuer we know).
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// The serial number in lower-case hex: changes on every re-issue, so a log line
    /// shows whether the renewer replaced the certificate.
    pub serial_hex: String,
}

/// Why a PEM document did not yield a validity window.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum X509Error {
    /// No `-----BEGIN CERTIFICATE-----` block (an empty or half-written file, a key).
    #[error("no PEM CERTIFICATE block")]
    NoCertificate,
    /// The block has no END line: the file is cut short.
    #[error("PEM CERTIFICATE block is not terminated")]
    Unterminated,
    /// The block's body is not base64.
    #[error("PEM body is not base64: {0}")]
    Base64(String),
    /// The DER does not have the shape of a certificate.
    #[error("malformed certificate DER: {0}")]
    Der(&'static str),
    /// A validity time is not a valid `UTCTime` / `GeneralizedTime`.
    #[error("malformed certificate time {0:?}")]
    Time(String),
}

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The validity window of the first certificate in `pem`.
pub fn parse_pem(pem: &[u8]) -> Result<CertValidity, X509Error> {
    let text = String::from_utf8_lossy(pem);
    let start = text.find(BEGIN).ok_or(X509Error::NoCertificate)? + BEGIN.len();
    let len = text[start..].find(END).ok_or(X509Error::Unterminated)?;
    let body: String = text[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| X509Error::Base64(e.to_string()))?;
    parse_der(&der)
}

/// The validity window of one DER-encoded certificate.
pub fn parse_der(der: &[u8]) -> Result<CertValidity, X509Error> {
    let mut outer = Reader(der);
    let cert = outer.expect(SEQUENCE, "Certificate is not a SEQUENCE")?;
    let mut cert = Reader(cert);
    let tbs = cert.expect(SEQUENCE, "tbsCertificate is not a SEQUENCE")?;
    let mut tbs = Reader(tbs);
    if tbs.peek() == Some(VERSION_TAG) {
        tbs.next()?;
    }
    let serial = tbs.expect(INTEGER, "serialNumber is not an INTEGER")?;
    tbs.expect(SEQUENCE, "signature is not a SEQUENCE")?;
    tbs.expect(SEQUENCE, "issuer is not a SEQUENCE")?;
    let validity = tbs.expect(SEQUENCE, "validity is not a SEQUENCE")?;
    let mut validity = Reader(validity);
    let not_before = time(validity.next()?)?;
    let not_after = time(validity.next()?)?;
    if not_after < not_before {
        return Err(X509Error::Der("notAfter is before notBefore"));
    }
    Ok(CertValidity {
        not_before,
        not_after,
        serial_hex: hex::encode(serial),
    })
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION_TAG: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// A cursor over consecutive DER TLVs.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next TLV as (tag, contents).
    fn next(&mut self) -> Result<(u8, &'a [u8]), X509Error> {
        let (&tag, rest) = self.0.split_first().ok_or(X509Error::Der("truncated"))?;
        let (&first, rest) = rest.split_first().ok_or(X509Error::Der("truncated"))?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(X509Error::Der("bad length"));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err(X509Error::Der("truncated"));
        }
        let (contents, rest) = rest.split_at(len);
        self.0 = rest;
        Ok((tag, contents))
    }

    fn expect(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], X509Error> {
        match self.next()? {
            (t, contents) if t == tag => Ok(contents),
            _ => Err(X509Error::Der(what)),
        }
    }
}

/// `UTCTime` (`YYMMDDHHMMSSZ`, years 1950-2049 as RFC 5280 says) or `GeneralizedTime`
/// (`YYYYMMDDHHMMSSZ`); RFC 5280 requires UTC and whole seconds for both.
fn time((tag, raw): (u8, &[u8])) -> Result<DateTime<Utc>, X509Error> {
    let text = std::str::from_utf8(raw).map_err(|_| X509Error::Time(format!("{raw:?}")))?;
    let bad = || X509Error::Time(text.to_owned());
    let digits = text.strip_suffix('Z').ok_or_else(bad)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: i32 = digits[..2].parse().map_err(|_| bad())?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().map_err(|_| bad())?, &digits[4..]),
        (UTC_TIME | GENERALIZED_TIME, _) => return Err(bad()),
        _ => {
            return Err(X509Error::Der(
                "validity time is not UTCTime/GeneralizedTime",
            ));
        }
    };
    let n = |i: usize| rest[i..i + 2].parse::<u32>().map_err(|_| bad());
    let (month, day, hour, minute, second) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_opt(hour, minute, second))
        .map(|t| t.and_utc())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A real certificate made by `openssl req -x509 -newkey ed25519 -days 30 -subj
    /// /CN=sre-test -addext subjectAltName=URI:spiffe://...` (an SVID-like leaf;
    /// `UTCTime` validity).
    const OPENSSL_ED25519: &str = "-----BEGIN CERTIFICATE-----
MIIBfDCCAS6gAwIBAgIUR6DYlRDy2kp4lKMHcktVdGU0AHQwBQYDK2VwMBMxETAP
BgNVBAMMCHNyZS10ZXN0MB4XDTI2MTIwNjAzNDMwOFoXDTI3MDEwNTAzNDMwOFow
EzERMA8GA1UEAwwIc3JlLXRlc3QwKjAFBgMrZXADIQCxVzwnIHiBZWjpotH73W3T
zoRkTyp4PCwA3+AE81dViKOBkzCBkDAdBgNVHQ4EFgQU6SBxATCR/Yr5zw2w1Rx6
i7txaxAwHwYDVR0jBBgwFoAU6SBxATCR/Yr5zw2w1Rx6i7txaxAwDwYDVR0TAQH/
BAUwAwEB/zA9BgNVHREENjA0hjJzcGlmZmU6Ly9leGFtcGxlLm9yZy9ucy9jYXRh
bHlzdC1zeXN0ZW0vc2EvY29uc29sZTAFBgMrZXADQQBBvTJK364q/1QE5QZDTuTA
dpzpdJojBfoxyhYHb6gZmFX1JLmw/1b75zU/BqqIi1noOqSQsJv1rz7zGFHjnVoL
-----END CERTIFICATE-----
";

    /// `openssl req -x509 -newkey ed25519 -days 20000`: `notAfter` past 2049 is a
    /// `GeneralizedTime`.
    const OPENSSL_LONG: &str = "-----BEGIN CERTIFICATE-----
MIIBPDCB76ADAgECAhQWWYW+08JFQ86Qxy6O86pzJfDiQjAFBgMrZXAwEzERMA8G
A1UEAwwIc3JlLWxvbmcwIBcNMjYxMjA2MDM0MzEwWhgPMjA4MTA5MDgwMzQzMTBa
MBMxETAPBgNVBAMMCHNyZS1sb25nMCowBQYDK2VwAyEAYiEGHQHiMWWssl59Qfc8
YUusmA1JbO1H4pXPD+IxftujUzBRMB0GA1UdDgQWBBQNcwvApAoNo9GLz32Tyg/T
HguO/jAfBgNVHSMEGDAWgBQNcwvApAoNo9GLz32Tyg/THguO/jAPBgNVHRMBAf8E
BTADAQH/MAUGAytlcANBALCqet4wMLbBa7JEBAB30vn8i9sPJOjU7YlHxWzhKxwX
Gl0cDsUYomHdQQggR5ln/JxYEq7yJWN3eZ7GPBB2dAI=
-----END CERTIFICATE-----
";

    #[test]
    fn reads_the_validity_of_a_real_certificate() {
        let v = parse_pem(OPENSSL_ED25519.as_bytes()).expect("parses");
        assert_eq!(v.not_before.to_rfc3339(), "2026-12-06T03:43:08+00:00");
        assert_eq!(v.not_after.to_rfc3339(), "2027-01-05T03:43:08+00:00");
        assert_eq!(v.serial_hex, "47a0d89510f2da4a7894a307724b557465340074");
        let long = parse_pem(OPENSSL_LONG.as_bytes()).expect("parses");
        assert_eq!(long.not_before.to_rfc3339(), "2026-12-06T03:43:10+00:00");
        assert_eq!(long.not_after.to_rfc3339(), "2081-09-08T03:43:10+00:00");
        assert_eq!(long.serial_hex, "165985bed3c24543ce90c72e8ef3aa7325f0e242");
        // A bundle (leaf first, then the chain) reads the leaf.
        let bundle = format!("{OPENSSL_ED25519}{OPENSSL_LONG}");
        assert_eq!(parse_pem(bundle.as_bytes()), Ok(v));
    }

    #[test]
    fn bad_pem_is_a_typed_error() {
        assert_eq!(parse_pem(b""), Err(X509Error::NoCertificate));
        assert_eq!(
            parse_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(X509Error::NoCertificate)
        );
        let half = &OPENSSL_ED25519[..OPENSSL_ED25519.len() / 2];
        assert_eq!(parse_pem(half.as_bytes()), Err(X509Error::Unterminated));
        assert!(matches!(
            parse_pem(format!("{BEGIN}\n!!!!\n{END}\n").as_bytes()),
            Err(X509Error::Base64(_))
        ));
        // Valid base64 of something that is not a certificate.
        assert!(matches!(
            parse_pem(format!("{BEGIN}\naGVsbG8=\n{END}\n").as_bytes()),
            Err(X509Error::Der(_))
        ));
    }

    #[test]
    fn both_time_encodings_and_their_bounds() {
        let t = |tag, s: &str| time((tag, s.as_bytes())).map(|t| t.to_rfc3339());
        assert_eq!(
            t(UTC_TIME, "491231235959Z"),
            Ok("2049-12-31T23:59:59+00:00".into())
        );
        assert_eq!(
            t(UTC_TIME, "500101000000Z"),
            Ok("1950-01-01T00:00:00+00:00".into())
        );
        assert_eq!(
            t(GENERALIZED_TIME, "20500101000000Z"),
            Ok("2050-01-01T00:00:00+00:00".into())
        );
        for bad in [
            "491231235959",
            "4912312359Z",
            "491331000000Z",
            "49123124000aZ",
        ] {
            assert!(matches!(t(UTC_TIME, bad), Err(X509Error::Time(_))), "{bad}");
        }
        assert!(matches!(t(0x04, "491231235959Z"), Err(X509Error::Der(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_der(&bytes);
            let _ = parse_pem(&bytes);
        }

        #[test]
        fn every_truncation_of_a_real_certificate_is_an_error(cut in 0usize..384) {
            let der = base64::engine::general_purpose::STANDARD
                .decode(
                    OPENSSL_ED25519
                        .lines()
                        .filter(|l| !l.starts_with("-----"))
                        .collect::<String>(),
                )
                .expect("fixture is base64");
            prop_assume!(cut < der.len());
            prop_assert!(parse_der(&der[..cut]).is_err());
        }
    }
}
