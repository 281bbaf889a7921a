//! The JWKS document relying parties fetch to verify JWTs: the public key of every
//! transit key version that still verifies (version >= `min_decryption_version`), so
//! that during a signing-key rotation's overlap tokens signed with the old and the new
//! key both verify, and after retirement the old key disappears from the set.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Standard base64 (as transit returns Ed25519 public keys) to the unpadded base64url
/// that JWK `x` members use (RFC 7517 appendix C, RFC 8037).
fn base64url(standard: &str) -> String {
    standard
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect()
}

/// The `kid` of one key version; relying parties pick the key by it, so it must be
/// stable for the life of the version.
#[must_use]
pub fn kid(key: &str, version: u64) -> String {
    format!("{key}-v{version}")
}

/// Renders the JWKS of Ed25519 key `key`: one OKP key per version in `public_keys`
/// (version -> standard base64 public key, as transit lists them) at or above
/// `min_version`, newest first. Versions without a public key (symmetric keys) are left
/// out. Pure: the publisher serves whatever this returns.
#[must_use]
pub fn render(key: &str, public_keys: &BTreeMap<u64, String>, min_version: u64) -> Value {
    let keys: Vec<Value> = public_keys
        .range(min_version..)
        .rev()
        .filter(|(_, pk)| !pk.is_empty())
        .map(|(v, pk)| {
            json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": kid(key, *v),
                "x": base64url(pk),
            })
        })
        .collect();
    json!({ "keys": keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kids(doc: &Value) -> Vec<String> {
        doc["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn only_versions_that_still_verify_are_published_newest_first() {
        let pks = BTreeMap::from([
            (1, "AAAA+/8=".to_owned()),
            (2, "BBBB".to_owned()),
            (3, "CCCC".to_owned()),
        ]);
        assert_eq!(kids(&render("jwt", &pks, 2)), ["jwt-v3", "jwt-v2"]);
        assert_eq!(kids(&render("jwt", &pks, 1)).len(), 3);
        assert!(kids(&render("jwt", &pks, 4)).is_empty());
        let all = render("jwt", &pks, 1);
        assert_eq!(all["keys"][2]["x"], "AAAA-_8", "base64url without padding");
        assert_eq!(all["keys"][0]["kty"], "OKP");
        assert_eq!(all["keys"][0]["crv"], "Ed25519");
    }

    #[test]
    fn symmetric_versions_without_public_keys_are_left_out() {
        let pks = BTreeMap::from([(1, String::new()), (2, "QQ==".to_owned())]);
        assert_eq!(kids(&render("k", &pks, 0)), ["k-v2"]);
    }
}
